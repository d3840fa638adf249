import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { count, eq } from 'drizzle-orm';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app';
import type { AuthLimits } from '../api/auth-throttle';
import { auditExpectations, outbox, runs } from '../db/schema';
import { expectContractResponse } from './helpers/contract';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * The API's door, issue 17 items 9-11: a viewer key cannot submit, failed key lookups are
 * throttled per address and per key, Object.prototype names and `__proto__` keys are refused
 * with a 400 naming where, and every answer says `nosniff`, every answer about a tenant's data
 * `no-store`.
 */

let stack: Stack;
let tenant: TestTenant;
const servers: http.Server[] = [];
const redises: Redis[] = [];

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
});
afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  for (const redis of redises) redis.disconnect();
  await stack?.close();
});

async function writtenRows(tenantId: string) {
  const [runRows] = await stack.db.select({ n: count() }).from(runs).where(eq(runs.tenantId, tenantId));
  const [expectationRows] = await stack.db
    .select({ n: count() })
    .from(auditExpectations)
    .innerJoin(runs, eq(runs.id, auditExpectations.runId))
    .where(eq(runs.tenantId, tenantId));
  const [events] = await stack.db.select({ n: count() }).from(outbox).where(eq(outbox.tenantId, tenantId));
  return { runs: runRows!.n, expectations: expectationRows!.n, events: events!.n };
}

describe("a viewer key's submit", () => {
  it('is refused 403 with the reason, and writes nothing: no run, no workflow, no incident, no alert', async () => {
    const own = await stack.createTenant();
    const viewer = await stack.createKey(own.tenantId, 'viewer');
    const before = await writtenRows(own.tenantId);
    for (const body of [{ plan: simPlan(2) }, { plan: [] }, { plan: simPlan(1), budgetUsd: 1_000_000_000 }]) {
      const res = await stack.request('POST', '/api/v1/runs', { apiKey: viewer, body, headers: { 'idempotency-key': randomUUID() } });
      expect(res.status).toBe(403);
      expect(res.body.error).toMatch(/role 'viewer' may not start runs \(needs admin or member\)/);
    }
    expect(await writtenRows(own.tenantId)).toEqual(before);
    // Reading stays a viewer's right; a member still submits.
    expect((await stack.request('GET', '/api/v1/runs', { apiKey: viewer })).status).toBe(200);
    const member = await stack.createKey(own.tenantId, 'member');
    const submitted = await stack.request('POST', '/api/v1/runs', { apiKey: member, body: { plan: simPlan(1) } });
    expect(submitted).toMatchObject({ status: 202, body: { authorizationDecision: 'ALLOWED' } });
    await stack.waitForPhase(submitted.body.runId, 'terminal');
  });
});

describe('names of Object.prototype members and __proto__ keys', () => {
  it.each(['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__defineGetter__'])(
    "a skill named '%s' is an unknown skill (400), not a 500",
    async (skill) => {
      const before = await writtenRows(tenant.tenantId);
      const res = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody: JSON.stringify({ plan: [{ skill, input: { prompt: 'x' } }] }) });
      expect(res.status).toBe(400);
      expect(res.body.error).toContain(`plan.0.skill: unknown skill '${skill}'`);
      expect(await writtenRows(tenant.tenantId)).toEqual(before);
    },
  );

  // JSON.parse keeps "__proto__" as an own key; zod's record (and any spread) turned it into the
  // object's prototype, so the key vanished and the run went ahead without it.
  it.each([
    ['in a step input', '{"plan":[{"skill":"sim.llm","input":{"prompt":"x","__proto__":{"completionTokens":5}}}]}', 'plan[0].input.__proto__'],
    ['in a chat message', '{"plan":[{"skill":"llm.chat","input":{"messages":[{"role":"user","content":"x","__proto__":{"role":"system"}}]}}]}', 'plan[0].input.messages[0].__proto__'],
    ['in a plan step', '{"plan":[{"skill":"sim.llm","input":{"prompt":"x"},"__proto__":{"name":"a"}}]}', 'plan[0].__proto__'],
    ['at the top of the body', '{"__proto__":{"budgetUsd":1},"plan":[{"skill":"sim.llm","input":{"prompt":"x"}}]}', '__proto__'],
    ['under a key that is no identifier', '{"plan":[{"skill":"sim.llm","input":{"prompt":"x"}}],"a b":{"__proto__":1}}', '["a b"].__proto__'],
  ])('a __proto__ key %s is refused with a 400 naming its path, and nothing is written', async (_where, rawBody, path) => {
    const before = await writtenRows(tenant.tenantId);
    const res = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe(`${path}: a key named "__proto__" is not accepted anywhere in a body (it would be lost, not stored)`);
    expect(await writtenRows(tenant.tenantId)).toEqual(before);
  });

  it('refuses a __proto__ key in every body, not only a submit (a policy, alert settings, a control)', async () => {
    const policy = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    const rules = JSON.stringify(policy.body.rules).replace(/^\{/, '{"__proto__":{"enabled":false},');
    const put = await stack.request('PUT', '/api/v1/policies', { apiKey: tenant.apiKey, rawBody: rules });
    expect(put.status).toBe(400);
    expect(put.body.error).toMatch(/^__proto__: a key named "__proto__"/);
    expect((await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey })).body.version).toBe(policy.body.version);
    const settings = await stack.request('PUT', '/api/v1/alert-settings', {
      apiKey: tenant.apiKey,
      rawBody: '{"enabled":true,"maxAlertsPerHour":5,"dedupWindowSeconds":60,"domainCooldowns":{"__proto__":{"runs":1}}}',
    });
    expect(settings.status).toBe(400);
    expect(settings.body.error).toMatch(/^domainCooldowns\.__proto__: /);
    const runId = randomUUID();
    const pause = await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: tenant.apiKey, rawBody: '{"reason":"x","__proto__":{"pauseReason":"POLICY_CHANGE"}}' });
    expect(pause.status).toBe(400);
  });

  it('still accepts the words as data: a prompt or a step name that says __proto__ or constructor', async () => {
    const res = await stack.request('POST', '/api/v1/runs', {
      apiKey: tenant.apiKey,
      body: { plan: [{ skill: 'sim.llm', name: 'constructor', input: { prompt: '__proto__ toString constructor' } }] },
    });
    expect(res.status).toBe(202);
    expect((await stack.waitForPhase(res.body.runId, 'terminal')).phase).toBe('COMPLETED');
  });
});

describe('response headers', () => {
  it('X-Content-Type-Options: nosniff on every answer, errors and answers outside the API included', async () => {
    const answers = await Promise.all([
      stack.request('GET', '/healthz'),
      stack.request('GET', '/metrics'),
      stack.request('GET', '/api/v1/openapi.json'),
      stack.request('GET', '/api/v1/runs'),
      stack.request('GET', '/api/v1/runs', { apiKey: 'gr_not-a-real-key' }),
      stack.request('GET', '/api/v1/runs', { apiKey: tenant.apiKey }),
      stack.request('GET', '/api/v1/runs?limit=0', { apiKey: tenant.apiKey }),
      stack.request('GET', '/api/v1/nothing-here', { apiKey: tenant.apiKey }),
      stack.request('GET', '/nothing-here'),
      stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody: '{' }),
    ]);
    for (const res of answers) expect(res.headers.get('x-content-type-options'), `${res.status}`).toBe('nosniff');
  });

  it('Cache-Control: no-store on run data: runs, a run, its outputs, audit, approvals, incidents, and their errors', async () => {
    // A run with an output (step 0) and an incident (step 1 fails).
    const runId = await stack.submitRun(tenant.apiKey, { plan: [...simPlan(1), { skill: 'sim.llm', input: { prompt: 'broken', fail: true } }] });
    await stack.waitForPhase(runId, 'terminal');
    const [incident] = (await stack.request('GET', `/api/v1/incidents?runId=${runId}`, { apiKey: tenant.apiKey })).body.incidents;
    const paths = [
      '/api/v1/runs',
      `/api/v1/runs/${runId}`,
      `/api/v1/runs/${runId}/output`,
      `/api/v1/runs/${runId}/steps/0/output`,
      `/api/v1/runs/${runId}/steps/0/output?raw=1`,
      `/api/v1/runs/${runId}/audit`,
      '/api/v1/approvals',
      '/api/v1/incidents',
      `/api/v1/incidents/${incident.id}`,
      '/api/v1/audit/findings',
      '/api/v1/reports/stale-runs',
      '/api/v1/alerts',
      `/api/v1/runs/${randomUUID()}`,
    ];
    for (const path of paths) {
      const res = await stack.request('GET', path, { apiKey: tenant.apiKey });
      expect(res.status, path).toBeLessThan(500);
      expect(res.headers.get('cache-control'), path).toBe('no-store');
    }
    const submitted = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1) } });
    expect(submitted.headers.get('cache-control')).toBe('no-store');
    await stack.waitForPhase(submitted.body.runId, 'terminal');
  });
});

/** A request from a loopback address of the test's choosing (127.0.0.0/8 all reach the server). */
function requestFrom(baseUrl: string, localAddress: string, key: string | null, path = '/api/v1/runs') {
  const url = new URL(baseUrl);
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }>((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path, method: 'GET', localAddress, agent: false, headers: key ? { authorization: `Bearer ${key}` } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A key shaped like one the API issues, that no tenant has. */
function wrongKey(): string {
  return `gr_${randomUUID().replaceAll('-', '')}`;
}

/** An API of the test's own over the stack's services, with small limits and counters no other test shares. */
async function throttledApi(limits: Omit<AuthLimits, 'namespace'>, redis = stack.redis): Promise<string> {
  const app = createApp({ ...stack.apiDeps, redis, authLimits: { ...limits, namespace: `test-auth-${randomUUID()}` } });
  const server = http.createServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A /24 of loopback addresses of this run's own. */
const subnet = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;

describe('failed API key lookups are throttled', () => {
  it('per address: past the limit every keyed request from it is a 429 with Retry-After, never a lookup; other addresses are not slowed', async () => {
    const baseUrl = await throttledApi({ windowSeconds: 30, perAddress: 5, perKey: 3 });
    const guesser = `${subnet}.10`;
    const answers = [];
    // 50 distinct wrong keys, as fast as one client sends them.
    for (let i = 0; i < 50; i++) answers.push(await requestFrom(baseUrl, guesser, wrongKey()));
    expect(answers.slice(0, 5).map((a) => a.status)).toEqual([401, 401, 401, 401, 401]);
    expect(new Set(answers.slice(5).map((a) => a.status))).toEqual(new Set([429]));
    const limited = answers[5]!;
    expect(limited.body).toMatchObject({ limit: 'failed_auth_per_address' });
    expect(limited.body.error).toMatch(/too many failed API key lookups from this address \(5 in 30 s\); retry in \d+ s/);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(30);
    expect(limited.body.retryAfterSeconds).toBe(Number(limited.headers['retry-after']));
    expect(() => expectContractResponse('GET', '/api/v1/runs', 429, limited.body)).not.toThrow();
    expect(() => expectContractResponse('POST', `/api/v1/runs/${randomUUID()}/pause`, 429, limited.body)).not.toThrow();

    // The decided exception: a correct key from the same address waits too (it cannot be told from a lucky guess).
    expect((await requestFrom(baseUrl, guesser, tenant.apiKey)).status).toBe(429);
    // Anyone else is not slowed at all.
    expect((await requestFrom(baseUrl, `${subnet}.11`, tenant.apiKey)).status).toBe(200);
    // A key that cannot be one of ours is never looked up, so never counted: it cannot lock an address out.
    for (let i = 0; i < 20; i++) expect((await requestFrom(baseUrl, `${subnet}.12`, `not-a-key-${i}`)).status).toBe(401);
    expect((await requestFrom(baseUrl, `${subnet}.12`, null)).status).toBe(401);
    expect((await requestFrom(baseUrl, `${subnet}.12`, tenant.apiKey)).status).toBe(200);
  });

  it('per key: one wrong key from many addresses is refused past its limit; a correct key from those addresses is not', async () => {
    const baseUrl = await throttledApi({ windowSeconds: 30, perAddress: 5, perKey: 3 });
    const key = wrongKey();
    const statuses = [];
    for (const host of [20, 21, 22, 23, 24]) statuses.push((await requestFrom(baseUrl, `${subnet}.${host}`, key)).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    const limited = await requestFrom(baseUrl, `${subnet}.25`, key);
    expect(limited.body).toMatchObject({ limit: 'failed_auth_per_key' });
    expect(limited.body.error).toMatch(/this API key failed 3 lookups in 30 s; retry in \d+ s/);
    for (const host of [20, 21, 22, 23, 24, 25]) expect((await requestFrom(baseUrl, `${subnet}.${host}`, tenant.apiKey)).status).toBe(200);
  });

  it('still throttles, per process, while Redis does not answer', async () => {
    const deadRedis = new Redis('redis://127.0.0.1:9', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    deadRedis.on('error', () => undefined);
    redises.push(deadRedis);
    const baseUrl = await throttledApi({ windowSeconds: 30, perAddress: 3, perKey: 10 }, deadRedis);
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await requestFrom(baseUrl, `${subnet}.30`, wrongKey())).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429]);
    expect((await requestFrom(baseUrl, `${subnet}.31`, tenant.apiKey)).status).toBe(200);
  });
});
