import { randomUUID } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NativeConnection } from '@temporalio/worker';
import Redis from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp, type ApiDeps } from '../api/app';
import type { ControlLimits } from '../api/rate-limit';
import { startTcpProxy } from '../testing/tcp-proxy';
import { createWorker } from '../worker/create-worker';
import { expectContractResponse } from './helpers/contract';
import { governed } from './helpers/governed-cli';
import { controlEvents, storedRun, waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * Control requests are bounded and truthful (issue 17, items 1 and 5): a flood of them is refused
 * with 429 per key and per run before it becomes signals, a pause or stop the run already has is
 * answered without another signal, every control carries a request id the run acts on once, and a
 * resume whose outcome Temporal did not confirm in time is answered 202 "unknown", never 5xx.
 */

let stack: Stack;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await stack?.close();
});

/** An API like the stack's with some dependencies swapped, on a port of its own. */
async function apiWith(swap: Partial<ApiDeps>): Promise<string> {
  const app = createApp({ ...stack.apiDeps, ...swap });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A request to `baseUrl`, checked against the published contract like every stack request. */
async function call(baseUrl: string, path: string, apiKey: string, headers: Record<string, string> = {}) {
  const started = Date.now();
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
    body: '{}',
  });
  const body = (await response.json()) as any;
  expectContractResponse('POST', path, response.status, body);
  const rateLimit = { limit: response.headers.get('ratelimit-limit'), remaining: response.headers.get('ratelimit-remaining'), reset: response.headers.get('ratelimit-reset'), policy: response.headers.get('ratelimit-policy') };
  return { status: response.status, body, retryAfter: response.headers.get('retry-after'), rateLimit, ms: Date.now() - started };
}

/** How many signals named `name` the run's workflow received. */
async function signalsNamed(runId: string, name: string): Promise<number> {
  const history = await stack.client.workflow.getHandle(runId).fetchHistory();
  return (history.events ?? []).filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === name).length;
}

function expectRateLimited(res: { status: number; body: any; retryAfter: string | null }, limit: 'per_key' | 'per_run', windowSeconds: number) {
  expect(res.status).toBe(429);
  expect(res.body.limit).toBe(limit);
  expect(res.body.error).toMatch(limit === 'per_key' ? /rate limit per API key/ : /rate limit per run/);
  expect(res.body.error).toMatch(/retry in \d+ s/);
  const seconds = Number(res.retryAfter);
  expect(seconds).toBeGreaterThanOrEqual(1);
  expect(seconds).toBeLessThanOrEqual(windowSeconds);
  expect(res.body.retryAfterSeconds).toBe(seconds);
}

/** A tenant whose policy pauses every sim.llm step for approval. */
function approvalTenant() {
  return stack.createTenant({ policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 600, pauseWarningSeconds: 60 } });
}

describe('a flood of control requests', () => {
  it("is refused with 429 before it becomes signals, and the admin's stop still ends the run", async () => {
    const tenant = await stack.createTenant();
    const member = await stack.createKey(tenant.tenantId, 'member');
    const runId = await stack.submitRun(member, { plan: simPlan(3, { latencyMs: 2000 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);

    // 200 pauses as fast as the member can send them: 20 at a time.
    const answers: Awaited<ReturnType<typeof call>>[] = [];
    for (let round = 0; round < 10; round += 1) {
      answers.push(...(await Promise.all(Array.from({ length: 20 }, () => call(stack.baseUrl, `/api/v1/runs/${runId}/pause`, member)))));
    }
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    const limited = answers.filter((a) => a.status === 429);
    // 20 per key per 10 s (twice that if the flood straddles two windows).
    expect(limited.length).toBeGreaterThanOrEqual(160);
    for (const res of limited) expectRateLimited(res, 'per_key', 10);
    // Of those let through, one became the signal (two if a Redis call was slow enough for this
    // process to decide alone); the others were answered without one.
    const through = answers.filter((a) => a.status !== 429);
    expect(through.filter((a) => a.status === 202).length).toBeGreaterThanOrEqual(1);
    expect(through.filter((a) => a.status === 202).length).toBeLessThanOrEqual(2);
    for (const res of through.filter((a) => a.status === 200)) expect(['coalesced', 'already_paused']).toContain(res.body.outcome);

    await waitForPause(stack.db, runId);
    expect(await signalsNamed(runId, 'pause')).toBeLessThanOrEqual(2);

    const stop = await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey, body: { reason: 'flood over' } });
    expect(stop.status).toBe(202);
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED' });
  });

  it('is limited per key and per run: another key, or another run, is not held by it; a stop is never refused per run', async () => {
    const limits: ControlLimits = { windowSeconds: 10, perKey: 6, perRun: 4, coalesceSeconds: 10 };
    const api = await apiWith({ controlLimits: limits });
    const tenant = await stack.createTenant();
    const [a, b] = [tenant.apiKey, await stack.createKey(tenant.tenantId, 'admin')];
    // Many short steps: a stop lands before the next one.
    const [r1, r2, r3] = await Promise.all([0, 1, 2].map(() => stack.submitRun(tenant.apiKey, { plan: simPlan(30, { latencyMs: 1000 }) })));
    await Promise.all([r1, r2, r3].map((id) => stack.waitForPhase(id!, ['EXECUTING'])));
    const resume = (runId: string, key: string) => call(api, `/api/v1/runs/${runId}/resume`, key);

    // Each resume of a run that is not paused is an update the run refuses: it reaches the run.
    for (let i = 0; i < limits.perRun; i += 1) {
      const refused = await resume(r1!, a);
      expect(refused.status).toBe(409);
      // Each answer, a refusal too, says where the key stands against its limit.
      expect(refused.rateLimit).toMatchObject({ limit: '6', remaining: String(limits.perKey - 1 - i), policy: '6;w=10' });
      expect(Number(refused.rateLimit.reset)).toBeGreaterThanOrEqual(0);
    }
    expectRateLimited(await resume(r1!, a), 'per_run', 10);
    expectRateLimited(await resume(r1!, b), 'per_run', 10);
    expect((await resume(r2!, b)).status).toBe(409);

    // Key a has sent 5 controls; its 7th is over its own limit, wherever it goes.
    expect((await resume(r2!, a)).status).toBe(409);
    const overKey = await resume(r3!, a);
    expectRateLimited(overKey, 'per_key', 10);
    expect(overKey.rateLimit).toMatchObject({ limit: '6', remaining: '0' });
    expect(Number(overKey.rateLimit.reset)).toBe(Number(overKey.retryAfter));
    expect((await resume(r3!, b)).status).toBe(409);

    // r1 is over its limit, and still stops.
    const stop = await call(api, `/api/v1/runs/${r1}/stop`, b);
    expect(stop).toMatchObject({ status: 202, body: { outcome: 'signalled' } });
    for (const id of [r2!, r3!]) expect((await call(api, `/api/v1/runs/${id}/stop`, b)).status).toBe(202);
    for (const id of [r1!, r2!, r3!]) expect((await stack.waitForPhase(id, 'terminal')).status).toBe('cancelled');
  });

  it('counts the tenant-wide pause and resume against the key', async () => {
    const api = await apiWith({ controlLimits: { windowSeconds: 10, perKey: 2, perRun: 10, coalesceSeconds: 10 } });
    const tenant = await stack.createTenant();
    const post = (path: string) => call(api, path, tenant.apiKey);
    expect((await post('/api/v1/tenant/pause')).status).toBe(202);
    expect((await post('/api/v1/tenant/resume')).status).toBe(202);
    expectRateLimited(await post('/api/v1/tenant/pause'), 'per_key', 10);
  });
});

describe('repeated controls are coalesced before they become signals', () => {
  it('a pause of a paused run, or one sent moments ago, is answered without a signal; so is a second stop', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(4, { latencyMs: 1500 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const control = (action: string) => stack.request('POST', `/api/v1/runs/${runId}/${action}`, { apiKey: tenant.apiKey });

    const first = await control('pause');
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ outcome: 'signalled', requestId: expect.any(String), idempotencyKey: expect.any(String) });
    // Sent while the first is still on its way (the run pauses before its next step).
    const soon = await control('pause');
    expect(soon.status).toBe(200);
    expect(soon.body).toMatchObject({ runId, requested: 'pause', outcome: expect.stringMatching(/^(coalesced|already_paused)$/) });
    await waitForPause(stack.db, runId);
    const paused = await control('pause');
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ runId, requested: 'pause', outcome: 'already_paused', requestId: expect.any(String) });
    expect(await signalsNamed(runId, 'pause')).toBe(1);

    // Resumed, the run may be paused again at once: a real signal, not "already paused".
    expect((await control('resume')).status).toBe(200);
    const again = await control('pause');
    expect(again).toMatchObject({ status: 202, body: { outcome: 'signalled' } });
    await waitFor('the second pause', async () => (await controlEvents(stack.db, runId)).filter((e) => e.kind === 'pause' && e.accepted).length === 2);
    expect(await signalsNamed(runId, 'pause')).toBe(2);

    expect((await control('stop')).body).toMatchObject({ outcome: 'signalled' });
    const stopAgain = await control('stop');
    expect(stopAgain.status).toBe(200);
    expect(stopAgain.body).toMatchObject({ requested: 'stop', outcome: 'already_stopping' });
    await stack.waitForPhase(runId, 'terminal');
    expect(await signalsNamed(runId, 'stop')).toBe(1);
  });
});

describe('a resume retried with the same Idempotency-Key', () => {
  it('resumes once and answers the same', async () => {
    const tenant = await approvalTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2) });
    await waitForPause(stack.db, runId);
    const key = `resume-${randomUUID()}`;
    const resume = () => stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, headers: { 'idempotency-key': key } });

    const first = await resume();
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ runId, resumed: true, idempotencyKey: key, requestId: expect.stringMatching(/^api-resume-/) });
    // The run goes on to its second step, which needs approval again.
    await waitFor('the second approval pause', async () => (await controlEvents(stack.db, runId)).filter((e) => e.kind === 'pause').length === 2);
    await waitForPause(stack.db, runId);

    // The client did not hear the first answer and retries: the second pause must not be approved by it.
    const retried = await resume();
    expect(retried.status).toBe(200);
    expect(retried.body).toEqual(first.body);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await storedRun(stack.db, runId)).pauseReason).toBe('APPROVAL_REQUIRED');
    expect((await controlEvents(stack.db, runId)).filter((e) => e.kind === 'resume').map((e) => e.accepted)).toEqual([true]);

    // Another key is another decision.
    const next = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, headers: { 'idempotency-key': `resume-${randomUUID()}` } });
    expect(next.status).toBe(200);
    expect(next.body.requestId).not.toBe(first.body.requestId);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
    expect((await controlEvents(stack.db, runId)).map((e) => `${e.kind}:${e.accepted}`)).toEqual(['pause:true', 'resume:true', 'pause:true', 'resume:true']);
  });

  it('refuses an Idempotency-Key that is not 1-200 visible ASCII characters', async () => {
    const tenant = await stack.createTenant();
    const res = await stack.request('POST', `/api/v1/runs/${randomUUID()}/pause`, { apiKey: tenant.apiKey, headers: { 'idempotency-key': 'x'.repeat(201) } });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('Idempotency-Key must be 1-200 visible ASCII characters');
  });
});

describe('a resume Temporal does not confirm in time', () => {
  it('answers 202 with resumed "unknown" and how to learn the outcome, never 5xx; the same key later resumes once', async () => {
    const address = inject('temporalAddress');
    const taskQueue = `test-slow-resume-${randomUUID()}`;
    const connection = await NativeConnection.connect({ address });
    cleanups.push(() => connection.close());
    const startWorker = async () => {
      const worker = await createWorker({ connection, namespace: 'default', taskQueue, workflowBundlePath: inject('workflowBundlePath'), deps: stack.activityDeps });
      const running = worker.run();
      return async () => {
        worker.shutdown();
        await running;
      };
    };
    let stopWorker = await startWorker();
    cleanups.push(() => stopWorker());
    const deadlineMs = 2000;
    const api = await apiWith({ taskQueue, temporalDeadlineMs: deadlineMs });

    const tenant = await approvalTenant();
    const submitted = await fetch(`${api}/api/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plan: simPlan(1) }),
    });
    const { runId } = (await submitted.json()) as { runId: string };
    await waitForPause(stack.db, runId);
    // Nobody polls the run's task queue now: the update is sent, and cannot be accepted in time.
    await stopWorker();

    const key = `slow-${randomUUID()}`;
    const unknown = await call(api, `/api/v1/runs/${runId}/resume`, tenant.apiKey, { 'idempotency-key': key });
    expect(unknown.status).toBe(202);
    expect(unknown.body).toMatchObject({ runId, resumed: 'unknown', idempotencyKey: key, requestId: expect.stringMatching(/^api-resume-/) });
    expect(unknown.body.note).toContain(`GET /api/v1/runs/${runId}`);
    expect(unknown.body.note).toMatch(/same Idempotency-Key cannot resume twice/);
    expect(unknown.ms).toBeLessThan(deadlineMs + 3000);

    // The worker is back; the client retries with the same key and learns the outcome: one resume.
    stopWorker = await startWorker();
    const retried = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, headers: { 'idempotency-key': key } });
    expect(retried.status).toBeLessThan(300);
    expect(retried.body).toMatchObject({ resumed: true, requestId: unknown.body.requestId });
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
    expect((await controlEvents(stack.db, runId)).map((e) => `${e.kind}:${e.accepted}`)).toEqual(['pause:true', 'resume:true']);
  });
});

describe('with Redis unreachable', () => {
  it('controls still work, limited and coalesced by each API process alone, and the fallback is logged once', async () => {
    const redisUrl = new URL(inject('redisUrl'));
    const proxy = await startTcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
    cleanups.push(() => proxy.close());
    const redis = new Redis(`redis://127.0.0.1:${proxy.port}`, { maxRetriesPerRequest: 1 });
    redis.on('error', () => {});
    cleanups.push(async () => redis.disconnect());
    const logged: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const api = await apiWith({ redis, logger, controlLimits: { windowSeconds: 10, perKey: 4, perRun: 10, coalesceSeconds: 10 } });

    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(3, { latencyMs: 1500 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    proxy.cut();

    const pause = () => call(api, `/api/v1/runs/${runId}/pause`, tenant.apiKey);
    const first = await pause();
    expect(first).toMatchObject({ status: 202, body: { outcome: 'signalled' } });
    expect(first.ms).toBeLessThan(3000);
    expect((await pause()).body.outcome).toMatch(/^(coalesced|already_paused)$/);
    await pause();
    await pause();
    expectRateLimited(await pause(), 'per_key', 10);
    expect(logged.filter((l) => /Redis is unavailable/.test(l.msg))).toHaveLength(1);

    await waitForPause(stack.db, runId);
    const admin = await stack.createKey(tenant.tenantId, 'admin');
    expect((await call(api, `/api/v1/runs/${runId}/stop`, admin)).status).toBe(202);
    expect((await stack.waitForPhase(runId, 'terminal')).status).toBe('cancelled');
    expect(logged.filter((l) => /Redis is unavailable/.test(l.msg))).toHaveLength(1);
  });
});

describe('the CLI', () => {
  /** An API stand-in that records the Idempotency-Key of each control and answers as told. */
  async function recordingApi(status: number) {
    const keys: (string | undefined)[] = [];
    const server = http.createServer((req, res) => {
      keys.push(req.headers['idempotency-key'] as string | undefined);
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status === 202 ? { runId: 'r', requested: 'pause', outcome: 'signalled', note: 'the run pauses before its next step' } : { error: 'Temporal is unavailable; retry later' }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, keys };
  }

  it('sends an Idempotency-Key of its own per invocation, or the one given, and names it when the outcome is unknown', { timeout: 120_000 }, async () => {
    const ok = await recordingApi(202);
    const runId = randomUUID();
    const env = { GOVERNED_API_URL: ok.url, GOVERNED_API_KEY: 'gr_test' };
    // --no-wait: this stub answers controls only, not the run they would be waited on through.
    expect((await governed(['runs', 'pause', runId, '--no-wait'], env)).code).toBe(0);
    expect((await governed(['runs', 'stop', runId, '--no-wait'], env)).code).toBe(0);
    expect((await governed(['runs', 'resume', runId, '--idempotency-key', 'mine-1'], env)).code).toBe(0);
    expect(ok.keys).toHaveLength(3);
    expect(ok.keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(ok.keys[1]).toMatch(/^[0-9a-f-]{36}$/);
    expect(ok.keys[0]).not.toBe(ok.keys[1]);
    expect(ok.keys[2]).toBe('mine-1');

    const down = await recordingApi(503);
    const failed = await governed(['runs', 'pause', runId, '--no-wait'], { ...env, GOVERNED_API_URL: down.url });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`governed runs pause ${runId} --idempotency-key ${down.keys[0]}`);
  });
});
