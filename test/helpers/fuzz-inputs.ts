import { brotliCompressSync, constants as zlibConstants, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { DEFAULT_ALERT_SETTINGS, ALERT_DOMAINS, SUPPRESSION_REASONS } from '../../core/alerts';
import { AUDIT_CHECKS, AUDIT_VERDICTS } from '../../core/audit-reconciliation';
import { INCIDENT_STATUSES } from '../../core/incidents';
import { RUN_PHASES, RUN_STATUSES } from '../../core/phases';
import { DEFAULT_POLICY } from '../../core/policy';
import { PAUSE_REASONS } from '../../core/policy-check';

/**
 * Arbitraries for hostile HTTP requests: text from every class of code point, JSON built from it,
 * bodies in every encoding a client may claim, headers, path segments and query strings. What a
 * request may carry is bounded only by what Node's own HTTP client can send (no control
 * characters in header values or the path, headers well under the server's 16 kB limit).
 */

const char = (min: number, max: number) => fc.integer({ min, max }).map((c) => String.fromCharCode(c));

/** One UTF-16 string of one code point (or one lone surrogate), weighted toward the troublesome. */
export const codePoint: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: char(0x20, 0x7e) },
  { weight: 2, arbitrary: fc.constantFrom('\u0000', '\u0001', '\u0008', '\t', '\n', '\u000b', '\r', '\u001b', '\u001f', '\u007f') },
  { weight: 1, arbitrary: char(0x80, 0x9f) },
  { weight: 2, arbitrary: char(0xd800, 0xdbff) },
  { weight: 2, arbitrary: char(0xdc00, 0xdfff) },
  { weight: 2, arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
  {
    weight: 1,
    // Bidi controls and marks, zero-width characters, BOM, noncharacters, a combining accent, line separators.
    arbitrary: fc.constantFrom('\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069', '\u200b', '\u200d', '\ufeff', '\ufffe', '\uffff', '\u0301', '\u2028', '\u2029'),
  },
  { weight: 2, arbitrary: char(0xa0, 0xfffd) },
);

/** Words the API gives meaning to, and words that mean something elsewhere. */
const MEANINGFUL = [
  '',
  ' ',
  'sim.llm',
  'llm.chat',
  ...RUN_PHASES,
  ...RUN_STATUSES,
  ...PAUSE_REASONS,
  ...INCIDENT_STATUSES,
  ...SUPPRESSION_REASONS,
  ...ALERT_DOMAINS,
  ...AUDIT_CHECKS,
  ...AUDIT_VERDICTS,
  'LOW',
  'HIGH',
  'CRITICAL',
  'NONE',
  'TENANT_ADMIN',
  '__proto__',
  'constructor',
  'toString',
  "'; drop table runs; --",
  '%00',
  '%',
  '../..',
  'null',
  'true',
  '1e999',
  '-0',
  'NaN',
  '0x10',
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  'x'.repeat(201),
  'MjAyNi0wMS0wMVQwMDowMDowMC4wMDAwMDBafDAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMA',
];

/** Code points Postgres stores as given: every class above but NUL and lone surrogates. */
const storableCodePoint = codePoint.filter((c) => c !== '\u0000' && !/^[\ud800-\udfff]$/.test(c));

/** Text the API accepts however odd it looks: controls, bidi marks, astral characters. */
export const storableText: fc.Arbitrary<string> = fc.string({ unit: storableCodePoint, minLength: 1, maxLength: 40 });

/** Any string, from every class of code point; now and then a very long one. */
export const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: fc.string({ unit: codePoint, maxLength: 40 }) },
  { weight: 6, arbitrary: fc.constantFrom(...MEANINGFUL) },
  // Around the body limit (64 kB in tests, in UTF-8 bytes): some pass, some are 413s.
  { weight: 1, arbitrary: fc.tuple(codePoint, fc.integer({ min: 1_000, max: 70_000 })).map(([c, n]) => c.repeat(n)) },
);

export const number: fc.Arbitrary<number> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, 1, -1, 0.5, 1e6, 1e9, 2 ** 53 + 1, 1e308, -1e308, 5e-324, 1e-7),
);

const scalar: fc.Arbitrary<unknown> = fc.oneof(fc.constant(null), fc.boolean(), number, text);

/** Any JSON value built from `text` (keys included) and `number`, a few levels deep. */
export const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(text, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** A scalar where the API expects one of its own, or the value it expects. */
const either = <T>(expected: fc.Arbitrary<T>) => fc.oneof({ weight: 3, arbitrary: expected }, { weight: 1, arbitrary: scalar });

/** Valid plans with odd values: the submits that get past validation, insert and start a workflow. */
const validRunBody: fc.Arbitrary<unknown> = (() => {
  const simInput = fc.record(
    { prompt: storableText, completionTokens: fc.nat(1_000_000), latencyMs: fc.nat(600_000), failAttempts: fc.nat(100), fail: fc.boolean() },
    { requiredKeys: ['prompt'] },
  );
  const chatInput = fc.record(
    {
      messages: fc.array(fc.record({ role: fc.constantFrom('system', 'user', 'assistant'), content: fc.oneof(storableText, fc.constant('')) }), { minLength: 1, maxLength: 3 }),
      model: storableText,
      maxTokens: fc.integer({ min: 1, max: 200_000 }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
    },
    { requiredKeys: ['messages'] },
  );
  const step = fc.oneof(fc.record({ skill: fc.constant('sim.llm'), input: simInput }), fc.record({ skill: fc.constant('llm.chat'), input: chatInput }));
  const budget = fc.oneof(fc.double({ min: 5e-324, max: 1_000_000, noNaN: true }), fc.constantFrom(5e-324, 1e-7, 0.01, 1_000_000));
  return fc.record({ plan: fc.array(step, { minLength: 1, maxLength: 3 }), budgetUsd: budget }, { requiredKeys: ['plan'] });
})();

/** Plans close enough to valid to get past the first checks. */
const nearlyValidRunBody: fc.Arbitrary<unknown> = (() => {
  const simInput = fc.record(
    { prompt: either(text), completionTokens: either(fc.nat(2_000)), latencyMs: either(fc.nat(1000)), failAttempts: either(fc.nat(3)), fail: either(fc.boolean()) },
    { requiredKeys: ['prompt'] },
  );
  const message = fc.record({ role: either(fc.constantFrom('system', 'user', 'assistant')), content: either(text), extra: json }, { requiredKeys: ['role', 'content'] });
  const chatInput = fc.record(
    { messages: fc.array(message, { maxLength: 3 }), model: either(text), maxTokens: either(fc.nat(1000)), temperature: either(number) },
    { requiredKeys: ['messages'] },
  );
  const step = fc.record(
    { skill: either(fc.constantFrom('sim.llm', 'llm.chat')), input: fc.oneof(simInput, chatInput, json) },
    { requiredKeys: ['skill'] },
  );
  return fc.record({ plan: fc.oneof({ weight: 4, arbitrary: fc.array(step, { maxLength: 3 }) }, json), budgetUsd: either(number), extra: json }, { requiredKeys: [] });
})();

export const runBody: fc.Arbitrary<unknown> = fc.oneof({ weight: 1, arbitrary: validRunBody }, { weight: 2, arbitrary: nearlyValidRunBody });

/** Valid policies with values at their limits. */
const validPolicyBody: fc.Arbitrary<unknown> = fc
  .record({
    enabled: fc.boolean(),
    budgetPerRunUsd: fc.double({ min: 5e-324, max: 1_000_000, noNaN: true }),
    maxSteps: fc.integer({ min: 1, max: 10_000 }),
    maxTokens: fc.integer({ min: 1, max: 1_000_000_000 }),
    allowedSkills: fc.subarray(['sim.llm', 'llm.chat'], { minLength: 1 }),
    approvalSkills: fc.subarray(['sim.llm', 'llm.chat']),
    warningThresholdPct: fc.double({ min: 1, max: 100, noNaN: true }),
    midRunChecks: fc.boolean(),
    checkIntervalSeconds: fc.double({ min: 0, max: 86_400, noNaN: true }),
    pauseSlaSeconds: fc.double({ min: 1, max: 30 * 86_400, noNaN: true }),
    pauseTimeoutBehavior: fc.constantFrom('TERMINATE', 'CONTINUE', 'ESCALATE'),
    observabilityMode: fc.constantFrom(null, 'STRICT', 'DEGRADED', 'PERMISSIVE'),
    pauseOnThreshold: fc.boolean(),
  })
  .map((p) => ({ ...p, pauseWarningSeconds: p.pauseSlaSeconds / 2 }));

/** The default policy with any of its fields swapped, dropped or joined by another. */
const nearlyValidPolicyBody: fc.Arbitrary<unknown> = fc
  .tuple(
    fc.record(Object.fromEntries(Object.entries(DEFAULT_POLICY).map(([key, value]) => [key, fc.oneof({ weight: 4, arbitrary: fc.constant(value) }, json)])), {
      requiredKeys: [],
    }),
    fc.option(fc.tuple(text, json)),
  )
  .map(([policy, extra]) => (extra ? { ...policy, [extra[0]]: extra[1] } : policy));

export const policyBody: fc.Arbitrary<unknown> = fc.oneof({ weight: 1, arbitrary: validPolicyBody }, { weight: 2, arbitrary: nearlyValidPolicyBody });

export const alertSettingsBody: fc.Arbitrary<unknown> = fc.record(
  {
    enabled: either(fc.boolean()),
    maxAlertsPerHour: either(fc.constant(DEFAULT_ALERT_SETTINGS.maxAlertsPerHour)),
    dedupWindowSeconds: either(fc.nat(86_400)),
    domainCooldowns: fc.oneof(fc.dictionary(fc.oneof(fc.constantFrom(...ALERT_DOMAINS), text), either(fc.nat(86_400)), { maxKeys: 3 }), json),
  },
  { requiredKeys: [] },
);

export const controlBody: fc.Arbitrary<unknown> = fc.record({ reason: either(fc.oneof(storableText, text)), pauseReason: either(fc.constantFrom(...PAUSE_REASONS)) }, { requiredKeys: [] });

export const incidentChangeBody: fc.Arbitrary<unknown> = fc.record({ note: either(fc.oneof(storableText, text)) }, { requiredKeys: [] });

/** JSON text JSON.stringify never writes: numbers out of a double's range, and nesting past the API's limit. */
const oddJsonText = fc.oneof(
  fc
    .tuple(fc.constantFrom('1e400', '-1e400', '1e-400', '-0', '123456789012345678901234567890', '0.1e1', '5e-324'), fc.constantFrom('budgetUsd', 'maxSteps', 'dedupWindowSeconds', 'note'))
    .map(([n, key]) => `{"plan":[{"skill":"sim.llm","input":{"prompt":"x"}}],"${key}":${n}}`),
  fc.integer({ min: 30, max: 3000 }).map((depth) => `{"plan":${'['.repeat(depth)}${']'.repeat(depth)}}`),
  fc.constantFrom('{"plan": [', '{', '[]', '"plan"', 'null', '{"a":1}{"b":2}', '{"__proto__":{"x":1}}', '\ufeff{}', '{"a":"\\ud800"}', '{"a":"\\u0000"}'),
);

export interface BodySpec {
  /** The body as text before encoding, or raw bytes. */
  content: string | number[];
  /** How the text becomes bytes (ignored for raw bytes). */
  charset: 'utf8' | 'latin1' | 'utf16le';
  /** How the bytes are compressed, and what Content-Encoding says. */
  encoding: { header?: string; apply: 'none' | 'gzip' | 'deflate' | 'br' | 'truncated-gzip' };
}

const bodyEncoding = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ apply: 'none' as const }) },
  { weight: 1, arbitrary: fc.constantFrom({ header: 'gzip', apply: 'gzip' as const }, { header: 'deflate', apply: 'deflate' as const }, { header: 'br', apply: 'br' as const }, { header: 'GZIP', apply: 'gzip' as const }) },
  {
    weight: 1,
    // Claims that do not match the bytes, encodings nobody supports, and stacked ones.
    arbitrary: fc.constantFrom(
      { header: 'gzip', apply: 'none' as const },
      { header: 'gzip', apply: 'truncated-gzip' as const },
      { header: 'deflate', apply: 'gzip' as const },
      { header: 'br', apply: 'none' as const },
      { header: 'identity', apply: 'none' as const },
      { header: 'x-bogus', apply: 'none' as const },
      { header: 'zstd', apply: 'none' as const },
      { header: 'gzip, deflate', apply: 'gzip' as const },
      { header: '', apply: 'none' as const },
    ),
  },
);

/** A body for an endpoint: mostly its own shape, else any JSON, odd JSON text, raw bytes or nothing. */
export function bodyFor(shape: fc.Arbitrary<unknown> | undefined): fc.Arbitrary<BodySpec | undefined> {
  const content: fc.Arbitrary<string | number[]> = fc.oneof(
    { weight: shape ? 5 : 0, arbitrary: (shape ?? json).map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 3, arbitrary: json.map((v) => JSON.stringify(v) ?? 'null') },
    { weight: 1, arbitrary: oddJsonText },
    { weight: 1, arbitrary: fc.array(fc.nat(255), { maxLength: 64 }) },
  );
  const charset = fc.oneof({ weight: 8, arbitrary: fc.constant('utf8' as const) }, { weight: 1, arbitrary: fc.constantFrom('latin1' as const, 'utf16le' as const) });
  return fc.option(fc.record({ content, charset, encoding: bodyEncoding }), { freq: 4 });
}

/** The bytes a BodySpec stands for. */
export function bodyBytes(spec: BodySpec): Buffer {
  const raw = typeof spec.content === 'string' ? Buffer.from(spec.content, spec.charset) : Buffer.from(spec.content);
  switch (spec.encoding.apply) {
    case 'none':
      return raw;
    case 'gzip':
      return gzipSync(raw);
    case 'deflate':
      return deflateSync(raw);
    case 'br':
      // Brotli's default quality (11) spends tens of milliseconds on a long body; any quality decodes alike.
      return brotliCompressSync(raw, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 4 } });
    case 'truncated-gzip': {
      const zipped = gzipSync(raw);
      return zipped.subarray(0, Math.max(1, zipped.length - 4));
    }
  }
}

/** A header value Node's client will send: tab, printable ASCII and Latin-1, no control characters. */
export const headerValue: fc.Arbitrary<string> = fc.string({
  unit: fc.oneof({ weight: 8, arbitrary: char(0x20, 0x7e) }, { weight: 1, arbitrary: char(0x80, 0xff) }, { weight: 1, arbitrary: fc.constant('\t') }),
  maxLength: 80,
});

export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 12, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json; charset=utf-8',
      'application/json; charset=UTF-16',
      'application/json; charset=latin1',
      'application/json; charset=bogus',
      'application/json; charset=',
      'application/vnd.api+json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/*',
      '*/*',
      '',
    ),
  },
  { weight: 1, arbitrary: headerValue },
);

/** Bytes percent-encoded one by one: any byte sequence, valid UTF-8 or not. */
const percentBytes = fc.array(fc.nat(255), { minLength: 1, maxLength: 12 }).map((bytes) => bytes.map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join(''));

/** `s` percent-encoded as UTF-8, a lone surrogate as U+FFFD (encodeURIComponent would throw). */
export function percentEncode(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
}

/** One path segment: a known value, a UUID, encoded text, raw bytes, or broken percent-encoding. */
export function segment(known: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: known.length ? 4 : 0, arbitrary: fc.constantFrom(...(known.length ? known : ['x'])) },
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 3, arbitrary: text.filter((s) => s.length < 200).map(percentEncode) },
    { weight: 2, arbitrary: percentBytes },
    { weight: 2, arbitrary: fc.constantFrom('%', '%E0%A4%A', '%ZZ', '%C0%AF', '%ED%A0%80', '%00', '%2F', '..', '.', '', '%25', '%F4%90%80%80', '%FF%FE', 'a%') },
  );
}

/** A query string: known keys and any others, with values valid, odd or broken, sometimes repeated. */
export function queryString(keys: readonly string[], values: readonly string[]): fc.Arbitrary<string> {
  const key = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...keys, 'limit', 'cursor') }, { weight: 1, arbitrary: text.filter((s) => s.length < 50).map(percentEncode) });
  const value = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...values, '1', '0', '-1', '50', '200', '201', '1e3', '1.5', 'NaN', '') },
    { weight: 3, arbitrary: text.filter((s) => s.length < 500).map(percentEncode) },
    { weight: 1, arbitrary: percentBytes },
    { weight: 1, arbitrary: fc.constantFrom('%', '%E0%A4%A', '%ZZ', '%00', 'a+b', '%2C', 'HIGH,CRITICAL', ',,,') },
  );
  const pair = fc.oneof({ weight: 6, arbitrary: fc.tuple(key, value).map(([k, v]) => `${k}=${v}`) }, { weight: 1, arbitrary: fc.constantFrom('=', '&', 'a', '==', '[]=1', 'limit[]=1', 'a[b]=c') });
  return fc.array(pair, { maxLength: 4 }).map((pairs) => (pairs.length ? `?${pairs.join('&')}` : ''));
}
