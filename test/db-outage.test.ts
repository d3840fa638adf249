import type { WorkflowHandle } from '@temporalio/client';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import { runs } from '../db/schema';
import { runStateQuery } from '../workflows/messages';
import { expectFullGovernanceRecords } from './helpers/records';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { startTcpProxy, type CutMode, type TcpProxy } from '../testing/tcp-proxy';

let stack: Stack;
let tenant: TestTenant;
let proxy: TcpProxy;

/** The test stack's retry budget for non-transient errors; an outage must outlast it without failing the run. */
const MAX_DOMAIN_ATTEMPTS = 3;
/** How long each outage lasts at least. */
const OUTAGE_MS = 4_500;

beforeAll(async () => {
  const databaseUrl = new URL(inject('databaseUrl'));
  proxy = await startTcpProxy({ host: databaseUrl.hostname, port: Number(databaseUrl.port || 5432) });
  const workerUrl = new URL(databaseUrl);
  workerUrl.hostname = '127.0.0.1';
  workerUrl.port = String(proxy.port);
  // Only the worker goes through the proxy; the API and the test read Postgres directly.
  stack = await startStack({ workerDatabaseUrl: workerUrl.toString(), maxDomainAttempts: MAX_DOMAIN_ATTEMPTS });
  tenant = await stack.createTenant();
});
// A failed test must not leave the next one without a database.
afterEach(() => proxy.restore());
afterAll(async () => {
  await stack?.close();
  await proxy?.close();
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

interface PendingActivity {
  type: string;
  attempt: number;
  lastFailure: string | null;
  /** A step activity waits an outage out inside itself, beating with what it waits for (`activities/recording.ts`). */
  waiting: { waitingFor: string; tries: number; lastError: string } | null;
}

async function pendingActivities(handle: WorkflowHandle): Promise<PendingActivity[]> {
  const description = await handle.describe();
  return (description.raw.pendingActivities ?? []).map((a) => {
    const beat = a.heartbeatDetails?.payloads?.[0]?.data;
    const details = beat ? (JSON.parse(Buffer.from(beat).toString('utf8')) as Record<string, unknown>) : null;
    return {
      type: a.activityType?.name ?? '?',
      attempt: a.attempt ?? 0,
      lastFailure: a.lastFailure?.message ?? null,
      waiting: details?.waitingFor === 'database' ? (details as PendingActivity['waiting']) : null,
    };
  });
}

async function storedRun(runId: string) {
  const [run] = await stack.db.select().from(runs).where(eq(runs.id, runId));
  return run!;
}

/**
 * Cuts the worker off Postgres, holds the outage at least OUTAGE_MS (and, when `retriedPast` is
 * set, until the worker has retried `activity` beyond the retry budget of a non-transient error),
 * checks the run is stuck rather than failed, then restores the connection.
 */
async function outage(runId: string, activity: string, options: { mode: CutMode; retriedPast?: number; waitedPast?: number }) {
  const handle = stack.client.workflow.getHandle(runId);
  proxy.cut(options.mode);
  const cutAt = Date.now();
  const refusedBefore = proxy.refused;

  const pending = await until(
    `${activity} to be pending${options.retriedPast ? ` past attempt ${options.retriedPast}` : ''}${options.waitedPast ? ` and waiting past try ${options.waitedPast}` : ''}`,
    async () =>
      (await pendingActivities(handle)).find(
        (a) => a.type === activity && a.attempt > (options.retriedPast ?? 0) && (options.waitedPast === undefined || (a.waiting?.tries ?? 0) > options.waitedPast),
      ),
    30_000,
    200,
  );
  const remaining = OUTAGE_MS - (Date.now() - cutAt);
  if (remaining > 0) await new Promise((r) => setTimeout(r, remaining));

  const stored = await storedRun(runId);
  expect(isTerminalPhase(stored.phase as RunPhase)).toBe(false);
  const description = await handle.describe();
  expect(description.status.name).toBe('RUNNING');
  const stillPending = await pendingActivities(handle);
  // The run waits on that one write; no attempt gave up and made the failure final.
  expect(stillPending.map((a) => a.type)).toEqual([activity]);
  expect(stillPending[0]!.lastFailure ?? '').not.toMatch(/gave up/);
  const live = await handle.query(runStateQuery);
  // The worker kept trying to reconnect and the proxy turned every attempt away.
  const refused = proxy.refused - refusedBefore;
  expect(refused).toBeGreaterThan(0);

  proxy.restore();
  const restoredAt = Date.now();
  const run = await stack.waitForPhase(runId, 'terminal', 60_000);
  return {
    stored,
    live,
    run,
    report: {
      activity,
      mode: options.mode,
      outageMs: restoredAt - cutAt,
      finishedAfterRestoreMs: Date.now() - restoredAt,
      attemptWhenRestored: stillPending[0]!.attempt,
      firstSeenAttempt: pending.attempt,
      lastFailure: stillPending[0]!.lastFailure ?? stillPending[0]!.waiting?.lastError ?? null,
      connectionsRefused: refused,
    },
  };
}

describe('a database outage between the worker and Postgres', () => {
  it('makes a run wait while it executes, then finish with every record written once', { timeout: 120_000 }, async () => {
    const plan = [...simPlan(2), { skill: 'sim.llm', input: { prompt: 'the slow last step', latencyMs: 1500 } }];
    const runId = await stack.submitRun(tenant.apiKey, { plan, budgetUsd: 1.5 });

    // Cut while the last step runs: its record, the move to GOVERNANCE_CHECK and every
    // governance write still need the database.
    const before = await until(
      'the run to start its last step',
      async () => {
        const run = await storedRun(runId);
        if (isTerminalPhase(run.phase as RunPhase) || run.phase === 'GOVERNANCE_CHECK') throw new Error(`run reached ${run.phase} before the cut`);
        return run.phase === 'EXECUTING' && run.stepsCompleted === plan.length - 1 ? run : undefined;
      },
      30_000,
      20,
    );
    const { stored, live, run, report } = await outage(runId, 'runStep', { mode: 'reset', waitedPast: MAX_DOMAIN_ATTEMPTS });
    expect(stored).toMatchObject({ phase: 'EXECUTING', stepsCompleted: plan.length - 1, sagaPhase: 'NOT_STARTED' });
    expect(stored.updatedAt.getTime()).toBe(before.updatedAt.getTime());
    // The step ran once and its activity holds the result until it can record it: it is not run again.
    expect(live).toMatchObject({ phase: 'EXECUTING', stepsCompleted: plan.length - 1, sagaPhase: 'NOT_STARTED' });
    expect(report.attemptWhenRestored).toBe(1);
    expect(report.lastFailure).toBeTruthy();

    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', stepsCompleted: plan.length, sagaPhase: 'EVENTS_PUBLISHED' });
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.steps.map((s) => s.stepIndex)).toEqual([0, 1, 2]);
    expect(records.acks.filter((a) => a.status !== 'OK')).toEqual([]);
    expect(records.events.map((e) => e.topic).sort()).toEqual(['policy.evaluated', 'run.completed', 'run.started', 'trace.completed', 'trace.started']);
    console.info('[db-outage]', JSON.stringify(report));
  });

  it('makes the governance saga wait out an outage instead of rolling back', { timeout: 120_000 }, async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1, { latencyMs: 1000 }), budgetUsd: 1.5 });
    // Holds the saga's first write in GOVERNANCE_CHECK long enough to cut under it.
    stack.faults.add({ activity: 'createIncident', runId, mode: 'stall', stallMs: 1500, times: 1 });
    const inCheck = await stack.waitForPhase(runId, ['GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED', 'FAILED']);
    expect(inCheck.phase).toBe('GOVERNANCE_CHECK');

    const { stored, live, run, report } = await outage(runId, 'createIncident', { mode: 'reset', retriedPast: MAX_DOMAIN_ATTEMPTS });
    expect(stored).toMatchObject({ phase: 'GOVERNANCE_CHECK', sagaPhase: 'NOT_STARTED' });
    expect(live).toMatchObject({ phase: 'GOVERNANCE_CHECK', sagaPhase: 'NOT_STARTED' });
    expect(stack.faults.hits('createIncident', runId)).toBe(1);

    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', sagaPhase: 'EVENTS_PUBLISHED', errorCode: null });
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.acks.some((a) => a.status === 'ROLLED_BACK')).toBe(false);
    expect(records.incidents.some((i) => i.rolledBack)).toBe(false);
    expect(records.evaluations.some((e) => e.rolledBack)).toBe(false);
    expect(records.traces[0]!.rolledBack).toBe(false);
    console.info('[db-outage]', JSON.stringify(report));
  });

  it('survives an outage whose connections are accepted and then closed', { timeout: 120_000 }, async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1, { latencyMs: 1000 }), budgetUsd: 1.5 });
    stack.faults.add({ activity: 'createIncident', runId, mode: 'stall', stallMs: 1500, times: 1 });
    const inCheck = await stack.waitForPhase(runId, ['GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED', 'FAILED']);
    expect(inCheck.phase).toBe('GOVERNANCE_CHECK');

    const { stored, run, report } = await outage(runId, 'createIncident', { mode: 'close' });
    expect(stored).toMatchObject({ phase: 'GOVERNANCE_CHECK', sagaPhase: 'NOT_STARTED' });

    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', sagaPhase: 'EVENTS_PUBLISHED' });
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.acks.some((a) => a.status === 'ROLLED_BACK')).toBe(false);
    console.info('[db-outage]', JSON.stringify(report));
  });
});
