import { Writable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REDACTED, createRedactor, redactCredentials, redactSecrets, secretList, toolServerSecrets, urlSecrets } from '../../core/redaction';
import { createWebhookSink, verifyWebhookSignature } from '../../events/webhook';
import { createLogger } from '../../lib/logger';
import { configuredSecrets, providerReachableSecrets } from '../../lib/secrets';

const KEY = 'sk-test-SECRET-1234567890abcdef';

describe('the content rule: configured secrets only', () => {
  it('replaces every configured secret, as written, JSON-escaped and URL-encoded', () => {
    const quoted = 'pa"ss\\word-0123456789';
    expect(redactSecrets(`a ${KEY} b ${KEY}`, [KEY])).toBe(`a ${REDACTED} b ${REDACTED}`);
    expect(redactSecrets(JSON.stringify({ password: quoted }), [quoted])).toBe(`{"password":"${REDACTED}"}`);
    expect(redactSecrets(`?key=${encodeURIComponent('a b/c+d=0123')}`, ['a b/c+d=0123'])).toBe(`?key=${REDACTED}`);
  });

  it("leaves a model's credential-shaped text alone: it is the tenant's data", () => {
    const answer = 'An OpenAI key looks like sk-proj-EXAMPLEexampleEXAMPLE0000; send it as Authorization: Bearer abcdefgh12345678.';
    expect(redactSecrets(answer, [KEY])).toBe(answer);
  });

  it('ignores values too short to be secrets, and replaces a secret containing another whole', () => {
    expect(secretList(['short', undefined, null, '  ', 'long-enough-1', 'long-enough-1'])).toEqual(['long-enough-1']);
    expect(redactSecrets('a short word', ['short'])).toBe('a short word');
    expect(redactSecrets('prefix-12345678-suffix', ['prefix-12345678', 'prefix-12345678-suffix'])).toBe(REDACTED);
  });

  it('never leaves a configured secret in any text (property)', () => {
    const secret = fc.string({ minLength: 8, maxLength: 40 }).filter((s) => s.trim() === s);
    fc.assert(
      fc.property(secret, fc.array(fc.string({ maxLength: 30 }), { maxLength: 5 }), (s, parts) => {
        const text = parts.join(s);
        expect(redactSecrets(text, [s]).includes(s)).toBe(false);
        expect(redactCredentials(JSON.stringify({ text }), [s]).includes(JSON.stringify(s).slice(1, -1))).toBe(false);
      }),
    );
  });

  it('counts what it would replace', () => {
    const redactor = createRedactor([KEY]);
    expect(redactor.count(`${KEY} and ${KEY}`)).toBe(2);
    expect(redactor.count('nothing here')).toBe(0);
    expect(createRedactor([]).secrets('sk-abcdefghijklmnopqrstuvwxyz')).toBe('sk-abcdefghijklmnopqrstuvwxyz');
  });
});

describe('the error-text rule: configured secrets and credential shapes', () => {
  it.each([
    ['Incorrect API key provided: Bearer abc.def-ghi_jkl~mno', `Incorrect API key provided: Bearer ${REDACTED}`],
    ['{"authorization":"bearer  sk-live-0123456789abcdef"}', `{"authorization":"bearer  ${REDACTED}"}`],
    ['You passed sk-proj-AbCdEf0123456789AbCdEf.', `You passed ${REDACTED}.`],
    ['masked: sk-proj-****************************abcd', `masked: ${REDACTED}`],
    ['{"x-api-key":"0123456789abcdef"}', `{"x-api-key":"${REDACTED}"}`],
    ['GET /v1?api_key=0123456789abcdef&q=1', `GET /v1?api_key=${REDACTED}&q=1`],
    ["apiKey: 'abcdefgh1234'", `apiKey: '${REDACTED}'`],
  ])('%s', (text, redacted) => {
    expect(redactCredentials(text, [])).toBe(redacted);
  });

  it('leaves text that only looks near a credential alone', () => {
    for (const text of ['task-0123456789abcdefghij', 'sk-learn is a library', 'Bearer tokens', 'the api key is missing', 'status 401 Unauthorized']) {
      expect(redactCredentials(text, [])).toBe(text);
    }
  });
});

describe('the secrets a worker holds', () => {
  it('takes credential-named headers and variables of tool servers, the token of a scheme, and URL passwords', () => {
    const document = {
      web: { url: 'https://user:url-password-1@tools.example/mcp?token=query-token-12&page=2', headers: { Authorization: 'Bearer header-token-123', Accept: 'application/json', 'X-Api-Key': 'x-api-key-value' } },
      fs: { command: 'node', args: ['server.js'], env: { GITHUB_TOKEN: 'ghp_0123456789', PORT: '30000000', HOME: '/home/someone' } },
      odd: 'not a server',
    };
    expect(toolServerSecrets(document).sort()).toEqual(['Bearer header-token-123', 'ghp_0123456789', 'header-token-123', 'query-token-12', 'url-password-1', 'x-api-key-value'].sort());
    expect(toolServerSecrets(null)).toEqual([]);
    expect(urlSecrets('not a url')).toEqual([]);
  });

  it('reads them from the environment: the LLM key, the webhook and Temporal keys, TOOL_SERVERS; service passwords for logs only', () => {
    const env = {
      LLM_API_KEY: KEY,
      ALERT_WEBHOOK_SECRET: 'webhook-secret-0123456789',
      TEMPORAL_API_KEY: 'temporal-api-key-0123',
      DATABASE_URL: 'postgres://app:db-password-1@db:5432/x',
      REDIS_URL: 'redis://127.0.0.1:6379',
      TOOL_SERVERS: JSON.stringify({ web: { url: 'https://tools.example/mcp', headers: { authorization: 'Bearer tool-token-0123' } } }),
    };
    const reachable = [KEY, 'webhook-secret-0123456789', 'temporal-api-key-0123', 'tool-token-0123'];
    expect(configuredSecrets(env)).toEqual(expect.arrayContaining([...reachable, 'db-password-1']));
    // No provider knows the database's password, and a weak one is a word a reply may hold.
    expect(providerReachableSecrets(env)).toEqual(expect.arrayContaining(reachable));
    expect(providerReachableSecrets(env)).not.toContain('db-password-1');
    expect(configuredSecrets({ TOOL_SERVERS: '{not json' })).toEqual([]);
  });
});

describe('the logger', () => {
  function capture() {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    return { lines, destination };
  }

  it('redacts the secrets and credential shapes of every line: message, fields, errors and child bindings', () => {
    const { lines, destination } = capture();
    const logger = createLogger('test', 'info', { redactor: createRedactor([KEY, 'pa"ss-0123456789']), destination: destination as never });
    logger.info({ body: `echoed ${KEY}`, header: 'Bearer abcdefgh12345678' }, `provider said ${KEY}`);
    logger.child({ key: KEY }).warn({ err: new Error(`failed with pa"ss-0123456789 and sk-other-0123456789abcdefgh`) }, 'call failed');
    const text = lines.join('');
    expect(text).not.toContain('SECRET');
    expect(text).not.toContain('abcdefgh12345678');
    expect(text).not.toContain('pa\\"ss');
    expect(text).not.toContain('sk-other');
    expect(text.match(/\[REDACTED\]/g)!.length).toBeGreaterThanOrEqual(6);
    // Still one JSON object per line.
    for (const line of text.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
  });
});

describe('the alert webhook', () => {
  it('redacts the body before it is signed and sent', async () => {
    const secret = 'webhook-secret-0123456789';
    const sent: { body: string; headers: Record<string, string> }[] = [];
    const sink = createWebhookSink({
      url: 'https://hooks.example/alerts',
      secret,
      redactor: createRedactor([secret, KEY]),
      fetch: async (_url, init) => {
        sent.push({ body: String(init!.body), headers: init!.headers as Record<string, string> });
        return new Response('ok');
      },
    });
    await sink.deliver({ id: 'a1', message: `run failed: LLM endpoint answered 401: Bearer ${KEY} (secret ${secret})` });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.body).not.toContain('SECRET');
    expect(sent[0]!.body).not.toContain(secret);
    expect(JSON.parse(sent[0]!.body)).toEqual({ id: 'a1', message: `run failed: LLM endpoint answered 401: Bearer ${REDACTED} (secret ${REDACTED})` });
    expect(verifyWebhookSignature(secret, sent[0]!.headers, sent[0]!.body)).toBe(true);
  });
});
