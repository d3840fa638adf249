import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app';
import { PROBLEMS, type ProblemCode } from '../api/problems';
import { expectContractResponse } from './helpers/contract';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * Issue 21, "answers that tell the truth": every error is a Problem Details document (RFC 9457),
 * `application/problem+json`, with a stable code; two conflicts of one route are told apart by it.
 */

let stack: Stack;
let tenant: TestTenant;
let member: string;
let viewer: string;
const servers: Server[] = [];

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
  [member, viewer] = await Promise.all([stack.createKey(tenant.tenantId, 'member'), stack.createKey(tenant.tenantId, 'viewer')]);
});
afterAll(async () => {
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
  await stack?.close();
});

type Answer = Awaited<ReturnType<Stack['request']>>;

/** The answer is the problem `code`, in full: its content type, its members, its `error` kept beside `detail`. */
function expectProblem(answer: Answer, code: ProblemCode, detail?: RegExp): void {
  const { status } = PROBLEMS[code];
  expect({ status: answer.status, body: answer.body }).toMatchObject({ status, body: { code } });
  expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json; charset=utf-8$/);
  expect(answer.body).toMatchObject({
    type: `https://governed.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title: PROBLEMS[code].title,
    status,
    detail: expect.any(String),
    error: answer.body.detail,
  });
  if (detail) expect(answer.body.detail).toMatch(detail);
}

/** A run of `tenant` in a long step: controllable, not paused. */
async function executingRun(apiKey = tenant.apiKey): Promise<string> {
  const runId = await stack.submitRun(apiKey, { plan: simPlan(3, { latencyMs: 1500 }) });
  await stack.waitForPhase(runId, ['EXECUTING']);
  return runId;
}

describe('every error is a problem (application/problem+json) with a stable code', () => {
  it('400: the body, the JSON, the Idempotency-Key, each with its own code', async () => {
    expectProblem(await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: 'not a plan' } }), 'VALIDATION_FAILED', /^invalid run: /);
    expectProblem(await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody: '{"plan": [' }), 'MALFORMED_JSON', /^malformed JSON body/);
    expectProblem(
      await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1) }, headers: { 'idempotency-key': 'has space' } }),
      'IDEMPOTENCY_KEY_INVALID',
    );
    expectProblem(await stack.request('GET', '/api/v1/runs/not-a-uuid', { apiKey: tenant.apiKey }), 'VALIDATION_FAILED', /run id must be a UUID/);
  });

  it('401 and 403: no key, a wrong key, a role that may not', async () => {
    expectProblem(await stack.request('GET', '/api/v1/runs'), 'API_KEY_MISSING');
    expectProblem(await stack.request('GET', '/api/v1/runs', { apiKey: `gr_${randomUUID().replaceAll('-', '')}` }), 'API_KEY_INVALID');
    expectProblem(await stack.request('POST', '/api/v1/runs', { apiKey: viewer, body: { plan: simPlan(1) } }), 'ROLE_NOT_ALLOWED');
    expectProblem(await stack.request('GET', '/api/v1/policies', { apiKey: member }), 'ROLE_NOT_ALLOWED', /needs admin/);
  });

  it('404: a run, an incident, a route', async () => {
    const runId = randomUUID();
    expectProblem(await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey }), 'RUN_NOT_FOUND', new RegExp(`run ${runId} not found`));
    expectProblem(await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey }), 'RUN_NOT_FOUND');
    expectProblem(await stack.request('GET', `/api/v1/incidents/${randomUUID()}`, { apiKey: tenant.apiKey }), 'INCIDENT_NOT_FOUND');
    expectProblem(await stack.request('GET', '/api/v1/no-such-thing', { apiKey: tenant.apiKey }), 'ROUTE_NOT_FOUND');
  });

  it('409: two conflicts of one route told apart by their codes, not their English', async () => {
    const finished = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    await stack.waitForPhase(finished, 'terminal');
    const running = await executingRun();
    const ended = await stack.request('POST', `/api/v1/runs/${finished}/resume`, { apiKey: tenant.apiKey });
    const notPaused = await stack.request('POST', `/api/v1/runs/${running}/resume`, { apiKey: tenant.apiKey });
    expectProblem(ended, 'RUN_ALREADY_FINISHED', /run is already COMPLETED/);
    expectProblem(notPaused, 'RUN_NOT_PAUSED', /run is not paused/);
    expect(ended.body.type).not.toBe(notPaused.body.type);
    await stack.request('POST', `/api/v1/runs/${running}/stop`, { apiKey: tenant.apiKey });
  });

  it('422: an Idempotency-Key reused with another body, naming the run it made', async () => {
    const key = `problem-${randomUUID()}`;
    const first = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1) }, headers: { 'idempotency-key': key } });
    expect(first.status).toBe(202);
    const reused = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(2) }, headers: { 'idempotency-key': key } });
    expectProblem(reused, 'IDEMPOTENCY_KEY_REUSED');
    expect(reused.body.runId).toBe(first.body.runId);
  });

  it('429: a rate limit, with its limit, retryAfterSeconds and Retry-After', async () => {
    const app = createApp({ ...stack.apiDeps, controlLimits: { windowSeconds: 30, perKey: 1, perRun: 10, coalesceSeconds: 10 } });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    servers.push(server);
    const path = `/api/v1/runs/${randomUUID()}/pause`;
    // A key of its own: the key's count is shared by every API copy (Redis), this file's other controls included.
    const apiKey = await stack.createKey(tenant.tenantId, 'admin');
    const send = async () => {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: '{}',
      });
      const answer = { status: response.status, body: (await response.json()) as any, headers: response.headers };
      expectContractResponse('POST', path, answer.status, answer.body, response.headers.get('content-type'));
      return answer;
    };
    // The first counts against the key and finds no run; the second is over the key's limit.
    expectProblem(await send(), 'RUN_NOT_FOUND');
    const limited = await send();
    expectProblem(limited, 'RATE_LIMITED', /retry in \d+ s/);
    expect(limited.body).toMatchObject({ limit: 'per_key', retryAfterSeconds: Number(limited.headers.get('retry-after')) });
  });
});
