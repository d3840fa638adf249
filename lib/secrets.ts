import { readFileSync } from 'node:fs';
import { createRedactor, toolServerSecrets, urlSecrets, type Redactor } from '../core/redaction';

/**
 * The secrets a provider or a tool server could send back, held through the environment: the LLM
 * key, the webhook's HMAC key, Temporal's API key, and the credentials of the tool servers
 * (`TOOL_SERVERS` or `TOOL_SERVERS_FILE`: credential-named headers and environment variables, URL
 * passwords and credential-named query parameters). What a model's reply and a tool's result are
 * redacted of. A document that does not parse adds nothing: the worker refuses to start with it.
 */
export function providerReachableSecrets(env: NodeJS.ProcessEnv = process.env): string[] {
  const secrets = [env.LLM_API_KEY, env.ALERT_WEBHOOK_SECRET, env.TEMPORAL_API_KEY].filter((s): s is string => typeof s === 'string');
  return [...secrets, ...toolServerSecrets(toolServersDocument(env))];
}

/**
 * Every secret the process holds through its environment: those above and the passwords in the
 * database and Redis URLs, which no provider knows but a connection error may log. Not taken out of
 * content: a weak password (`postgres`) is also a word a reply may rightly hold.
 */
export function configuredSecrets(env: NodeJS.ProcessEnv = process.env): string[] {
  return [...providerReachableSecrets(env), ...urlSecrets(env.DATABASE_URL), ...urlSecrets(env.REDIS_URL)];
}

function toolServersDocument(env: NodeJS.ProcessEnv): unknown {
  try {
    if (env.TOOL_SERVERS !== undefined) return JSON.parse(env.TOOL_SERVERS);
    if (env.TOOL_SERVERS_FILE !== undefined) return JSON.parse(readFileSync(env.TOOL_SERVERS_FILE, 'utf8'));
  } catch {
    // Not JSON, or not readable: the process that uses it refuses to start.
  }
  return null;
}

/**
 * A redactor for the environment's secrets and `extra` (a key handed over in code, as the test stack
 * does): `all` of them (logs, webhooks), or those a provider could send back (provider text).
 */
export function environmentRedactor(extra: (string | undefined)[] = [], env: NodeJS.ProcessEnv = process.env, which: 'all' | 'provider-reachable' = 'all'): Redactor {
  return createRedactor([...(which === 'all' ? configuredSecrets(env) : providerReachableSecrets(env)), ...extra]);
}
