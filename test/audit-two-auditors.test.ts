/**
 * Two auditors at once: the audit loop's workflows served by two worker processes on one queue,
 * two passes started together over the same due runs, small pages in two lanes each, so that up to
 * four pages lock runs at the same moment. Each run must be read by one page of one pass: reconciled
 * once, each finding's incident and event written once (README, "Past one machine": reconciler pages).
 * Then the auditor holding a page is killed mid-page: the page is rolled back with its session and
 * retried on the other auditor once its heartbeat lapses, and still each run is reconciled once.
 */
import { randomUUID } from 'node:crypto';
import { and, eq, inArray, sql as drizzleSql } from 'drizzle-orm';
import { decodeTimeoutType } from '@temporalio/common';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { AUDIT_PAGE_HEARTBEAT_TIMEOUT_MS } from '../core/audit-page-heartbeat';
import { auditReconciliations, incidents, outbox, runLogs } from '../db/schema';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { startAuditorProcess } from './helpers/auditor-process';
import { waitFor } from './helpers/wait';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { startWorkerProcess } from './helpers/worker-process';

const RUNS = 16;
const TAMPERED = 4;

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;

beforeAll(async () => {
  database = await freshDatabase('two_auditors');
  stack = await startStack({ databaseUrl: database.url });
});
afterAll(async () => {
  await stack?.close();
  await database?.drop();
});

/**
 * RUNS completed runs of a tenant of their own, due for reconciliation; the first TAMPERED broken
 * behind the product's back before any pass: a log row gone (a phantom ack, a broken chain).
 */
async function dueRuns(): Promise<{ runIds: string[]; tampered: string[] }> {
  const tenant = await stack.createTenant();
  const runIds = await Promise.all(Array.from({ length: RUNS }, () => stack.submitRun(tenant.apiKey, { plan: simPlan(1) })));
  for (const runId of runIds) await stack.waitForPhase(runId, ['COMPLETED']);
  const tampered = runIds.slice(0, TAMPERED);
  await stack.db.delete(runLogs).where(inArray(runLogs.runId, tampered));
  return { runIds, tampered };
}

it('two passes on two worker processes at once reconcile each run once, and report each broken run once', { timeout: 180_000 }, async () => {
  const { runIds, tampered } = await dueRuns();

  const secondAuditor = await startWorkerProcess({ databaseUrl: database.url, taskQueue: stack.taskQueue });
  try {
    const pass = () =>
      stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `audit-pass-${randomUUID()}`, args: [{ pageSize: 2 }] });
    const [first, second] = await Promise.all([pass(), pass()]);

    // Every due run was read by exactly one page: the two passes' counts add up to the runs, no more.
    expect(first.runs + second.runs).toBe(RUNS);
    const rows = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, runIds));
    expect(rows).toHaveLength(RUNS);
    for (const row of rows) {
      expect(row.passes, `run ${row.runId} reconciled once`).toBe(1);
      expect(row.dueAt).toBeNull();
      expect(row.verdict).toBe(tampered.includes(row.runId) ? 'INCOMPLETE' : 'COMPLETE');
    }
    for (const runId of runIds) {
      const events = await stack.db.select({ topic: outbox.topic }).from(outbox).where(eq(outbox.runId, runId));
      const audit = events.map((e) => e.topic).filter((topic) => topic.startsWith('audit.')).sort();
      const raised = await stack.db.select({ id: incidents.id }).from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'audit')));
      if (tampered.includes(runId)) {
        expect(audit).toEqual(['audit.reconciliation.phantom', 'audit.reconciliation.tampered']);
        // A finding opens one incident and one event: two findings, two of each, not four.
        expect(raised).toHaveLength(audit.length);
      } else {
        expect(audit).toEqual([]);
        expect(raised).toEqual([]);
      }
    }
  } finally {
    await secondAuditor.kill();
  }
});

it('the auditor holding a page, SIGKILLed mid-page: the page is rolled back, retried on the other auditor after its heartbeat lapses, each run reconciled once', { timeout: 240_000 }, async () => {
  const { runIds, tampered } = await dueRuns();

  // Two auditors on a queue of their own, so the page is served by one of them and never by this process.
  const taskQueue = `auditors-${randomUUID()}`;
  const auditors = await Promise.all(
    [0, 1].map(() =>
      startAuditorProcess({
        DATABASE_URL: database.url,
        TEMPORAL_ADDRESS: inject('temporalAddress'),
        TEMPORAL_TASK_QUEUE: stack.taskQueue,
        TEMPORAL_AUDIT_TASK_QUEUE: taskQueue,
        WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
        AUDITOR_METRICS_PORT: '0',
        LOG_LEVEL: 'info',
      }),
    ),
  );
  // The page is held mid-transaction: the tampered runs' incidents wait on this lock until its auditor is killed.
  // A connection of its own holds the lock; the probes go through the stack's pool.
  const sql = postgres(database.url, { max: 1, onnotice: () => {} });
  let releaseLock!: () => void;
  const lockReleased = new Promise<void>((resolve) => (releaseLock = resolve));
  let lockHeld!: () => void;
  const lockTaken = new Promise<void>((resolve) => (lockHeld = resolve));
  const lock = sql.begin(async (tx) => {
    await tx`lock table incidents in share row exclusive mode`;
    lockHeld();
    await lockReleased;
  });
  try {
    await lockTaken;
    const workflowId = `audit-pass-${randomUUID()}`;
    // One page holds every due run, so one auditor holds all of them.
    const handle = await stack.client.workflow.start(reconcileAuditWorkflow, { taskQueue, workflowId, args: [{ pageSize: 100 }] });
    await waitFor('a page waiting on the incidents lock', async () => {
      const waiting = await stack.db.execute<{ n: number }>(
        drizzleSql`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike '%incidents%'`,
      );
      return waiting[0]!.n > 0;
    }, 60_000);
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    expect(pending).toHaveLength(1);
    const holderPid = Number(String(pending[0]!.lastWorkerIdentity).split('@')[0]);
    const holder = auditors.find((a) => a.pid === holderPid);
    expect(holder, `the page's auditor (${pending[0]!.lastWorkerIdentity}) is one of the two`).toBeDefined();
    const killedAt = Date.now();
    await holder!.kill();
    releaseLock();
    await lock;

    const totals = await handle.result();
    const recoveredInMs = Date.now() - killedAt;
    console.log(`auditor-kill: the pass completed ${recoveredInMs} ms after the page's auditor was killed (heartbeat timeout ${AUDIT_PAGE_HEARTBEAT_TIMEOUT_MS} ms)`);
    // Retried once the heartbeat lapsed, well before the page's two-minute start-to-close would have.
    expect(recoveredInMs).toBeLessThan(AUDIT_PAGE_HEARTBEAT_TIMEOUT_MS + 30_000);
    const history = await handle.fetchHistory();
    const retried = (history.events ?? []).find((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 0) > 1);
    expect(decodeTimeoutType(retried?.activityTaskStartedEventAttributes?.lastFailure?.timeoutFailureInfo?.timeoutType), 'the page retried after its heartbeat timed out').toBe('HEARTBEAT');

    // Nothing of the killed attempt stayed: the pass counts each run once, each run reconciled once.
    expect(totals.runs).toBe(RUNS);
    const rows = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, runIds));
    for (const row of rows) {
      expect(row.passes, `run ${row.runId} reconciled once`).toBe(1);
      expect(row.verdict).toBe(tampered.includes(row.runId) ? 'INCOMPLETE' : 'COMPLETE');
    }
    for (const runId of tampered) {
      const raised = await stack.db.select({ id: incidents.id }).from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'audit')));
      expect(raised).toHaveLength(2);
    }
  } finally {
    releaseLock();
    await lock.catch(() => {});
    await sql.end();
    await Promise.all(auditors.map((a) => a.kill()));
  }
});
