/**
 * What must never leave the worker through text someone else wrote: the secrets it holds (the LLM
 * key, the webhook's HMAC key, Temporal's API key, tool servers' credentials) and, in error text,
 * anything shaped like a credential. Pure: the caller says which secrets it holds (see
 * `lib/secrets.ts` for the worker's).
 *
 * Two rules, for two kinds of text:
 *
 * - **Error and diagnostic text** (a provider's error body, a tool server's refusal, a model name,
 *   a log line, a webhook body): `redactCredentials` — every configured secret, and the shapes
 *   `Bearer <token>`, `sk-<key>` (OpenAI-style keys: `sk-…`, `sk-proj-…`, `sk-ant-…`) and
 *   `api_key=<value>` / `"x-api-key": "<value>"`. Such text is ours to describe a failure, never
 *   data anyone asked for, so a false positive costs nothing.
 * - **Content** (a model's reply, a tool's result): `redactSecrets` — the configured secret values
 *   only. A reply is the tenant's data: a model asked about API keys may rightly answer with an
 *   `sk-…` example, and changing it would corrupt the stored output (and its sha256) silently. A
 *   configured secret, though, can be in a reply only if the provider or a server leaked the
 *   worker's own credential, which the tenant must never see.
 *
 * A secret is matched as written, as JSON would escape it (the form it takes inside a JSON body or
 * log line) and as a URL would encode it. Values shorter than `MIN_SECRET_LENGTH` are not treated
 * as secrets: redacting a two-letter "key" from every reply would corrupt data and hide nothing.
 */

export const REDACTED = '[REDACTED]';

/** Shorter configured values are no secret worth the damage their redaction would do to text. */
export const MIN_SECRET_LENGTH = 8;

/** `Bearer <token>`: an Authorization header's credential, as providers echo it. */
const BEARER = /\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi;
/** OpenAI-style keys (`sk-…`, `sk-proj-…`, `sk-svcacct-…`, `sk-ant-…`), masked ones included; not `task-…`. */
const SK_KEY = /(?<![A-Za-z0-9])sk-[A-Za-z0-9_*-]{16,}/g;
/** `api_key=…`, `"apiKey": "…"`, `x-api-key: …`: a key named as one. */
const API_KEY_ASSIGNMENT = /\b((?:x-)?api[-_]?key["']?\s*[:=]\s*["']?)[^\s"'&,;}]{8,}/gi;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The forms a secret takes in text: as written, JSON-escaped, URL-encoded. */
function formsOf(secret: string): string[] {
  const forms = new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
  return [...forms];
}

/** The distinct secrets worth matching, longest first (a secret containing another is replaced whole). */
export function secretList(secrets: Iterable<string | null | undefined>): string[] {
  const kept = new Set<string>();
  for (const secret of secrets) {
    if (typeof secret !== 'string') continue;
    const trimmed = secret.trim();
    if (trimmed.length >= MIN_SECRET_LENGTH) kept.add(trimmed);
  }
  return [...kept].sort((a, b) => b.length - a.length);
}

function secretPattern(secrets: readonly string[]): RegExp | null {
  const forms = [...new Set(secrets.flatMap(formsOf))].sort((a, b) => b.length - a.length);
  return forms.length ? new RegExp(forms.map(escapeRegExp).join('|'), 'g') : null;
}

function redactShapes(text: string): string {
  return text
    .replace(BEARER, (_m, scheme: string) => `${scheme}${REDACTED}`)
    .replace(SK_KEY, REDACTED)
    .replace(API_KEY_ASSIGNMENT, (_m, name: string) => `${name}${REDACTED}`);
}

/** Both rules, compiled once for a set of secrets. */
export interface Redactor {
  /** Content (a model's reply, a tool's result): the configured secrets only. */
  secrets(text: string): string;
  /** Error and diagnostic text: the configured secrets and every credential shape. */
  credentials(text: string): string;
  /** How many configured secrets `text` holds (what `secrets` would replace). */
  count(text: string): number;
}

export function createRedactor(secrets: Iterable<string | null | undefined>): Redactor {
  const pattern = secretPattern(secretList(secrets));
  const replaceSecrets = (text: string) => (pattern ? text.replace(pattern, REDACTED) : text);
  return {
    secrets: replaceSecrets,
    credentials: (text) => redactShapes(replaceSecrets(text)),
    count: (text) => (pattern ? (text.match(pattern)?.length ?? 0) : 0),
  };
}

/** `text` with every configured secret replaced by `[REDACTED]`: the rule for content. */
export function redactSecrets(text: string, secrets: Iterable<string | null | undefined>): string {
  return createRedactor(secrets).secrets(text);
}

/** `text` with every configured secret and credential shape replaced: the rule for error text. */
export function redactCredentials(text: string, secrets: Iterable<string | null | undefined>): string {
  return createRedactor(secrets).credentials(text);
}

/** Header and variable names that carry a credential (`Authorization`, `X-Api-Key`, `GITHUB_TOKEN`, …). */
const CREDENTIAL_NAME = /auth|key|token|secret|passw|pwd|cookie|session|credential|signature/i;

/** A credential value and, for `<scheme> <token>` (`Bearer abc…`), the token alone. */
function credentialValues(value: unknown): string[] {
  if (typeof value !== 'string') return [];
  const scheme = /^\s*[A-Za-z][\w-]*\s+(\S+)\s*$/.exec(value);
  return scheme ? [value, scheme[1]!] : [value];
}

function namedCredentials(record: unknown): string[] {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return [];
  return Object.entries(record).flatMap(([name, value]) => (CREDENTIAL_NAME.test(name) ? credentialValues(value) : []));
}

/** The password and credential-named query parameters of a URL (`https://u:p@host/?api_key=…`). */
export function urlSecrets(url: unknown): string[] {
  if (typeof url !== 'string') return [];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [];
  }
  const found: string[] = [];
  if (parsed.password) found.push(decodeURIComponent(parsed.password));
  for (const [name, value] of parsed.searchParams) if (CREDENTIAL_NAME.test(name)) found.push(value);
  return found;
}

/**
 * The credentials in a `TOOL_SERVERS` document (parsed JSON, not validated: whatever the worker may
 * send): an HTTP server's headers and a stdio server's environment variables whose names say they
 * carry one (`Authorization`, `X-Api-Key`, `GITHUB_TOKEN`, …), and its URL's password and
 * credential-named query parameters. Other values (`Accept: application/json`, `PORT`) are not
 * secrets, and redacting them from every reply would corrupt data.
 */
export function toolServerSecrets(document: unknown): string[] {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) return [];
  return Object.values(document).flatMap((entry) => {
    if (entry === null || typeof entry !== 'object') return [];
    const server = entry as { headers?: unknown; env?: unknown; url?: unknown };
    return [...namedCredentials(server.headers), ...namedCredentials(server.env), ...urlSecrets(server.url)];
  });
}
