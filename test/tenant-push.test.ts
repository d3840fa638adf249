import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { and, count, eq, isNotNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { deliveryCounts, readPush } from '../db/control-pushes';
import { controlPushes, runs } from '../db/schema';
import { deliverPush, enqueuePush, type Progress } from '../dispatch/control-pusher';
import { connectDatabase } from '../db/client';
import { mapLimit } from '../lib/map-limit';
import { startTcpProxy } from '../testing/tcp-proxy';
import { expectContractResponse } from './helpers/contract';
import { startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * A tenant-wide change over a few hundred live runs (issue 17, item 13): delivered run by run, a
 * bounded number at a time, with its progress kept on a delivery row per run. It used to be one
 * batch of signals inside one 3 s deadline, retried whole: a pause over 500 runs answered `queued`
 * and arrived on its sixth attempt, a minute later.
 */

const RUNS = Number(process.env.TENANT_PUSH_RUNS ?? 300);

let stack: Stack;
let tenant: TestTenant;
let runIds: string[];
/** An API like the stack's that may spend 30 s on a push before it answers. */
let patientApi: { url: string; server: Server };

beforeAll(async () => {
  stack = await startStack();
  const app = createApp({ ...stack.apiDeps, temporalCallTimeoutMs: 30_000, temporalDeadlineMs: 60_000, pushConcurrency: 16 });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  patientApi = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };

  // Each run holds an approval pause before its first step: a live run that costs nothing while it waits.
  tenant = await stack.createTenant({ policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 3600, pauseWarningSeconds: 60 } });
  runIds = await mapLimit(
    Array.from({ length: RUNS }, (_, i) => i),
    8,
    (i) => stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: `held ${i}` } }] }),
  );
  await waitFor(
    `${RUNS} runs to hold their approval pause`,
    async () => {
      const [row] = await stack.db.select({ n: count() }).from(runs).where(and(eq(runs.tenantId, tenant.tenantId), isNotNull(runs.pausedAt)));
      return row!.n === RUNS;
    },
    150_000,
  );
}, 240_000);

afterAll(async () => {
  // Suspending the tenant stops its paused runs: nothing of this file stays live on the shared server.
  if (tenant) {
    await stack.request('POST', '/api/v1/tenant/suspend', { apiKey: tenant.apiKey });
    await waitFor(
      "the tenant's runs to end",
      async () => {
        const [row] = await stack.db.select({ n: count() }).from(runs).where(and(eq(runs.tenantId, tenant.tenantId), eq(runs.phase, 'FAILED')));
        return row!.n === RUNS;
      },
      180_000,
    ).catch(() => {});
  }
  patientApi?.server.close();
  await stack?.close();
}, 240_000);

async function post(path: string, body: unknown = {}) {
  const response = await fetch(`${patientApi.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = (await response.json()) as any;
  expectContractResponse('POST', path, response.status, answer);
  return { status: response.status, body: answer };
}

/** Per run, how many signals the push (by its request id) put into the run's history. */
async function signalsOfPush(pushId: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  await mapLimit(runIds, 8, async (runId) => {
    // Every execution of the run: a signal may land in one that continued as new since.
    let n = 0;
    for (let execution: string | undefined = (await stack.client.workflow.getHandle(runId).describe()).runId; execution; ) {
      const history = await stack.client.workflow.getHandle(runId, execution).fetchHistory();
      for (const event of history.events ?? []) {
        const payload = event.workflowExecutionSignaledEventAttributes?.input?.payloads?.[0]?.data;
        if (payload && (JSON.parse(Buffer.from(payload).toString('utf8')) as { requestId?: string }).requestId === `push:${pushId}`) n += 1;
      }
      execution = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    }
    counts.set(runId, n);
  });
  return counts;
}

/**
 * `signalsOfPush` once every run shows the push (or 30 s passed): a signal that reaches a run while
 * it runs a workflow task is written to its history only when that task completes, so the runs
 * signalled last may show theirs a moment after the push is done.
 */
async function settledSignalsOfPush(pushId: number): Promise<Map<string, number>> {
  let counted = await signalsOfPush(pushId);
  await waitFor('every run to show the push in its history', async () => [...(counted = await signalsOfPush(pushId)).values()].every((n) => n > 0), 30_000).catch(() => {});
  return counted;
}

function histogram(counts: Map<string, number>): Record<number, number> {
  const by: Record<number, number> = {};
  for (const n of counts.values()) by[n] = (by[n] ?? 0) + 1;
  return by;
}

describe(`a tenant-wide change over ${RUNS} live runs`, () => {
  it('is delivered in one attempt, run by run, its progress in the answer, the push row and GET', { timeout: 180_000 }, async () => {
    const started = Date.now();
    const paused = await post('/api/v1/tenant/pause', { reason: 'provider incident' });
    const answeredMs = Date.now() - started;
    expect(paused.status).toBe(202);
    expect(paused.body).toMatchObject({ push: 'pushed', totalRuns: RUNS, reachedRuns: RUNS, signalledRuns: RUNS });
    const pushId = paused.body.pushId as number;
    console.info(`tenant pause over ${RUNS} runs: answered in ${answeredMs} ms`);

    const row = await readPush(stack.db, pushId);
    expect(row).toMatchObject({ attempts: 1, totalRuns: RUNS, reachedRuns: RUNS, signalledRuns: RUNS, skippedRuns: 0, lastError: null });
    expect(row!.pushedAt).not.toBeNull();
    expect(await deliveryCounts(stack.db, pushId)).toEqual({ signalled: RUNS });

    const progress = await stack.request('GET', `/api/v1/tenant/pushes/${pushId}`, { apiKey: tenant.apiKey });
    expect(progress.status).toBe(200);
    expect(progress.body).toMatchObject({ pushId, kind: 'tenant_paused', state: 'pushed', totalRuns: RUNS, reachedRuns: RUNS, signalledRuns: RUNS, skippedRuns: [] });
    const listed = await stack.request('GET', '/api/v1/tenant/pushes', { apiKey: tenant.apiKey });
    expect(listed.body.pushes[0]).toMatchObject({ pushId, state: 'pushed' });
    // Another tenant's push is not this tenant's to read.
    const other = await stack.createTenant();
    expect((await stack.request('GET', `/api/v1/tenant/pushes/${pushId}`, { apiKey: other.apiKey })).status).toBe(404);

    // Every run was signalled exactly once.
    expect(histogram(await settledSignalsOfPush(pushId))).toEqual({ 1: RUNS });
  });

  it('resumes a delivery stopped part way with the runs it had not reached, and signals none twice', { timeout: 180_000 }, async () => {
    // Not due for a minute: no dispatcher (this file's, or another's on the same database) starts it first.
    const pushId = await enqueuePush(
      stack.db,
      tenant.tenantId,
      { kind: 'policy_changed', signal: 'policyChanged', target: 'live', payload: { actor: 'test', reason: 'policy version 2' } },
      { graceMs: 60_000 },
    );
    const deps = { db: stack.db, temporal: stack.client, pushTimeoutMs: 10_000, concurrency: 8 };
    const stopAt = Math.floor(RUNS / 3);
    const stopping = new AbortController();
    const seen: Progress[] = [];
    const first = await deliverPush(deps, pushId, {
      budgetMs: 120_000,
      signal: stopping.signal,
      onProgress: (progress) => {
        seen.push(progress);
        if (progress.reachedRuns >= stopAt) stopping.abort();
      },
    });
    // Stopped as a dispatcher stops: what it signalled is recorded, the rest is left pending.
    expect(first.state).toBe('delivering');
    expect(first.reachedRuns).toBeGreaterThanOrEqual(stopAt);
    expect(first.reachedRuns).toBeLessThan(RUNS);
    expect(seen.length).toBeGreaterThan(0);
    expect(await deliveryCounts(stack.db, pushId)).toEqual({ signalled: first.reachedRuns, pending: RUNS - first.reachedRuns });
    const between = await stack.request('GET', `/api/v1/tenant/pushes/${pushId}`, { apiKey: tenant.apiKey });
    expect(between.body).toMatchObject({ state: 'delivering', totalRuns: RUNS, reachedRuns: first.reachedRuns });

    // The next attempt (due at once: this one, or a dispatcher's) goes on with the runs left.
    const second = await deliverPush(deps, pushId, { budgetMs: 120_000 });
    if (second.state !== 'pushed') {
      await waitFor('the push to be delivered', async () => (await readPush(stack.db, pushId))?.pushedAt, 60_000);
    }
    const done = await readPush(stack.db, pushId);
    expect(done).toMatchObject({ totalRuns: RUNS, reachedRuns: RUNS, signalledRuns: RUNS });
    expect(done!.attempts).toBeGreaterThanOrEqual(2);
    expect(await deliveryCounts(stack.db, pushId)).toEqual({ signalled: RUNS });
    const counted = await settledSignalsOfPush(pushId);
    const odd = [...counted].filter(([, n]) => n !== 1).map(([id, n]) => `${id}: ${n} signals`);
    expect(histogram(counted), `runs not signalled once: ${odd.join(', ')}`).toEqual({ 1: RUNS });
    const [row] = await stack.db.select().from(controlPushes).where(eq(controlPushes.id, pushId));
    expect(row!.claimedBy).toBeNull();
  });

  it('is delivered once by two deliverers when the one holding it loses its database: the other takes it over when its lease lapses', { timeout: 180_000 }, async () => {
    const pushId = await enqueuePush(
      stack.db,
      tenant.tenantId,
      { kind: 'policy_changed', signal: 'policyChanged', target: 'live', payload: { actor: 'test', reason: 'policy version 3' } },
      { graceMs: 60_000 },
    );
    // Deliverer A reaches Postgres through a proxy the test cuts, as a dispatcher's host drops off the
    // network; B is another dispatcher on the same database. A short signal timeout keeps A's lease
    // (3 × timeout + 10 s) short enough to wait out.
    const url = new URL(inject('databaseUrl'));
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.port = String(proxy.port);
    const cutOff = connectDatabase(url.toString(), { max: 4 });
    const pushTimeoutMs = 1_000;
    const a = { db: cutOff.db, temporal: stack.client, pushTimeoutMs, concurrency: 8 };
    const b = { db: stack.db, temporal: stack.client, pushTimeoutMs, concurrency: 8 };
    try {
      let recordedByA = 0;
      const first = deliverPush(a, pushId, {
        budgetMs: 120_000,
        onProgress: (progress) => {
          recordedByA = progress.reachedRuns;
          if (progress.reachedRuns >= RUNS / 3) proxy.cut();
        },
      }).catch((err: unknown) => err);
      await waitFor('A to hold the push', async () => (await readPush(stack.db, pushId))?.claimedBy != null, 30_000);
      // While A's lease stands, B leaves the push alone.
      expect((await deliverPush(b, pushId, { budgetMs: 60_000 })).state).toBe('taken');
      await first;
      expect(recordedByA).toBeGreaterThanOrEqual(RUNS / 3);
      expect(recordedByA).toBeLessThan(RUNS);

      // A cannot let go (its database is gone): B takes the push over once A's lease lapses.
      const taken: string[] = [];
      await waitFor(
        'B to deliver the push',
        async () => {
          const result = await deliverPush(b, pushId, { budgetMs: 60_000 });
          taken.push(result.state);
          return result.state === 'pushed';
        },
        90_000,
      );
      expect(taken[0]).toBe('taken');
      const done = await readPush(stack.db, pushId);
      expect(done).toMatchObject({ totalRuns: RUNS, reachedRuns: RUNS, signalledRuns: RUNS, claimedBy: null });
      expect(await deliveryCounts(stack.db, pushId)).toEqual({ signalled: RUNS });

      // Every run got the change. Signalled twice only where A signalled a run and could not record it
      // (the run's workflow dedupes it by the push's request id): the batch whose write failed (up to
      // 100, RECORD_EVERY), what A's 8 lanes signalled while that write was on its way, and no more:
      // once a write fails, A's lanes take no other run. (They used to go on through the whole queue.)
      const counted = await settledSignalsOfPush(pushId);
      const twice = [...counted.values()].filter((n) => n === 2).length;
      expect([...counted.values()].every((n) => n === 1 || n === 2), JSON.stringify(histogram(counted))).toBe(true);
      expect(twice).toBeLessThanOrEqual(RUNS - recordedByA);
      expect(twice).toBeLessThanOrEqual(2 * 100 + 8);
      expect(twice, `${twice} runs signalled twice of the ${RUNS - recordedByA} A had not recorded`).toBeLessThan(RUNS - recordedByA);
    } finally {
      proxy.restore();
      await cutOff.close();
      await proxy.close();
    }
  });
});
