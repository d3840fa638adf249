import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { expectContractResponse } from './helpers/contract';
import { governed } from './helpers/governed-cli';
import { startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * Every API key has an allowance of requests per minute on every route (issue 21): a 429 with
 * Retry-After past it, RateLimit-* headers on every answer, counted per key, and a tenant the
 * operator gives an allowance of its own (`governed tenants limit`) is held to that instead.
 */

const DEFAULT_PER_MINUTE = 5;
let stack: Stack;
let baseUrl: string;
let server: Server;
let tenant: TestTenant;

beforeAll(async () => {
  stack = await startStack();
  // An API of the stack's, but with an allowance a test can spend.
  const app = createApp({ ...stack.apiDeps, requestsPerMinute: DEFAULT_PER_MINUTE });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  tenant = await stack.createTenant({ role: 'admin' });
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await stack?.close();
});

async function listRuns(apiKey: string) {
  const response = await fetch(`${baseUrl}/api/v1/runs`, { headers: { authorization: `Bearer ${apiKey}` } });
  const body = (await response.json()) as any;
  expectContractResponse('GET', '/api/v1/runs', response.status, body);
  const header = (name: string) => response.headers.get(name);
  return { status: response.status, body, limit: header('ratelimit-limit'), remaining: header('ratelimit-remaining'), retryAfter: header('retry-after') };
}

const operator = (args: string[]) => governed(['tenants', 'limit', '--name', tenant.name, ...args], { DATABASE_URL: inject('databaseUrl') });

describe("an API key's requests per minute", () => {
  it('are counted on every answer and refused past the allowance, for that key only', async () => {
    const key = await stack.createKey(tenant.tenantId, 'viewer');
    const answers = [];
    for (let i = 0; i < DEFAULT_PER_MINUTE; i += 1) answers.push(await listRuns(key));
    expect(answers.map((a) => a.status)).toEqual(Array(DEFAULT_PER_MINUTE).fill(200));
    expect(answers.map((a) => a.remaining)).toEqual(['4', '3', '2', '1', '0']);
    expect(answers.every((a) => a.limit === String(DEFAULT_PER_MINUTE))).toBe(true);

    const refused = await listRuns(key);
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 'RATE_LIMITED', limit: 'requests_per_key', retryAfterSeconds: expect.any(Number) });
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(60);

    // Another key of the same tenant has its own allowance.
    const other = await listRuns(await stack.createKey(tenant.tenantId, 'viewer'));
    expect(other).toMatchObject({ status: 200, remaining: '4' });
  });

  it('a request without a valid key is answered 401 and spends no allowance', async () => {
    const key = await stack.createKey(tenant.tenantId, 'viewer');
    // Distinct unknown keys, fewer than the failed-lookup limits (which answer 429 of their own).
    for (let i = 0; i < DEFAULT_PER_MINUTE + 2; i += 1) {
      const response = await fetch(`${baseUrl}/api/v1/runs`, { headers: { authorization: `Bearer gr_${String(i).padStart(32, 'x')}` } });
      expect(response.status).toBe(401);
    }
    expect(await listRuns(key)).toMatchObject({ status: 200, remaining: '4' });
  });

  it("a tenant given its own allowance by the operator is held to it, and 'default' gives the deployment's back", async () => {
    const set = await operator(['--requests-per-minute', '8', '--json']);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ tenantId: tenant.tenantId, requestsPerMinute: 8 });

    const key = await stack.createKey(tenant.tenantId, 'member');
    const statuses = [];
    for (let i = 0; i < 9; i += 1) statuses.push((await listRuns(key)).status);
    expect(statuses).toEqual([...Array(8).fill(200), 429]);

    const reset = await operator(['--requests-per-minute', 'default']);
    expect(reset.code, reset.stderr).toBe(0);
    expect(await listRuns(await stack.createKey(tenant.tenantId, 'member'))).toMatchObject({ status: 200, limit: String(DEFAULT_PER_MINUTE) });
  });

  it('the operator command refuses an allowance that is not one, and an unknown tenant, with a message', async () => {
    const zero = await operator(['--requests-per-minute', '0']);
    expect(zero.code).not.toBe(0);
    expect(zero.stderr).toMatch(/a whole number from 1/);
    const unknown = await governed(['tenants', 'limit', '--name', 'no-such-tenant', '--requests-per-minute', '10'], { DATABASE_URL: inject('databaseUrl') });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no-such-tenant/);
  });
});
