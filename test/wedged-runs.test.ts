import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WEDGE_PROBE } from '../activities/reconciler';
import { createApp } from '../api/app';
import { RUN_EXPECTATIONS } from '../core/audit';
import { actionKey, describeStale, reconcileRun, type AckRecord, type RunAuditInput, type RunLiveness } from '../core/audit-reconciliation';
import { databaseNow } from '../db/audit';
import { auditExpectations, auditFindings, auditReconciliations, incidents, outbox, runs } from '../db/schema';
import { FAILING_WORKFLOW_TASK_ATTEMPT } from '../lib/run-liveness';
import { reconcileAuditWorkflow, staleRunReportWorkflow } from '../workflows/audit';
import { freshDatabase } from './helpers/fresh-database';
import { waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';

const RUN = '00000000-0000-4000-8000-000000000017';
const T0 = new Date('2026-12-03T10:00:00Z');
const DEADLINE = new Date('2026-12-03T11:05:00Z');
const NOW = new Date('2026-12-03T10:10:00Z');
const SINCE = new Date('2026-12-03T10:01:00Z');

/** A run in flight, ten minutes in: its trace started, nothing else written, its deadline 55 minutes away. */
function inFlight(overrides: Partial<RunAuditInput> = {}): RunAuditInput {
  const started: AckRecord = { id: 'ack-1', domain: 'logs', action: 'start_trace', status: 'OK', resultId: 'trace-1', createdAt: T0 };
  return {
    runId: RUN,
    expectations: RUN_EXPECTATIONS.map((e) => ({ ...e, deadlineAt: DEADLINE })),
    acks: [started],
    evidence: {
      run: { phase: 'EXECUTING' },
      traces: [{ id: 'trace-1', status: 'running', rolledBack: false }],
      outcomeIncidents: [],
      finalEvaluations: [],
      logRecords: [],
      traceSteps: [],
      outputs: [],
      lessons: [],
    },
    now: NOW,
    ...overrides,
  };
}

const terminated: RunLiveness = { state: 'closed', status: 'TERMINATED', closedAt: SINCE, reason: 'terminated by ops@host: operator terminated it' };
const failing: RunLiveness = {
  state: 'failing',
  phase: 'EXECUTING',
  since: SINCE,
  attempt: 4,
  reason: 'workflow task failed (WORKFLOW_WORKER_UNHANDLED_FAILURE): a bug in this build',
};

describe('the rule: Temporal says the workflow is closed or failing, and the run never finalized', () => {
  it('a closed workflow makes the run STALE at once, with Temporal’s reason, and owes everything it never did', () => {
    const report = reconcileRun(inFlight({ liveness: terminated }));
    expect(report).toMatchObject({ verdict: 'STALE', settled: true, nextCheckAt: null });
    expect(report.stale).toMatchObject({ deadlineAt: DEADLINE, overdueSeconds: -55 * 60, liveness: terminated });
    expect(report.stale!.reason).toBe(`workflow closed (TERMINATED at ${SINCE.toISOString()}: terminated by ops@host: operator terminated it) without finalizing`);
    expect(report.findings.map((f) => [f.check, f.severity])).toEqual([
      ['missing', 'HIGH'],
      ['stale', 'HIGH'],
    ]);
    const stale = report.findings.find((f) => f.check === 'stale')!;
    expect(stale.subjects).toEqual(['orchestrator/finalize_run']);
    expect(stale.summary).toBe(`stale: finalize_run not acked, found 3300s before its deadline; ${report.stale!.reason}`);
  });

  it('a failing workflow task makes the run STALE at once; nothing else is owed before its deadline', () => {
    const report = reconcileRun(inFlight({ liveness: failing }));
    expect(report).toMatchObject({ verdict: 'STALE', settled: false, nextCheckAt: DEADLINE });
    expect(report.stale!.reason).toBe(
      `workflow still running, but its workflow task keeps failing (attempt 4) in phase EXECUTING since ${SINCE.toISOString()}: workflow task failed (WORKFLOW_WORKER_UNHANDLED_FAILURE): a bug in this build`,
    );
    expect(report.findings.map((f) => f.check)).toEqual(['stale']);
    // Past the deadline the run is stale as before, and Temporal's reason is still named.
    const late = reconcileRun(inFlight({ liveness: failing, now: new Date(DEADLINE.getTime() + 60_000) }));
    expect(late).toMatchObject({ verdict: 'STALE', settled: true, stale: { overdueSeconds: 60 } });
    expect(late.findings.map((f) => f.check)).toEqual(['missing', 'stale']);
    expect(late.findings[1]!.summary).toMatch(/^stale: finalize_run not acked 60s after its deadline; .*a bug in this build$/);
  });

  it('a workflow still working, or not started yet, leaves the run PENDING before its deadline', () => {
    for (const liveness of [{ state: 'running', phase: 'EXECUTING', since: SINCE }, { state: 'not_found' }, undefined] as (RunLiveness | undefined)[]) {
      const report = reconcileRun(inFlight({ liveness }));
      expect(report, JSON.stringify(liveness)).toMatchObject({ verdict: 'PENDING', stale: null, findings: [], nextCheckAt: DEADLINE });
    }
  });

  it('a run that finalized is never stale, whatever Temporal says of its workflow since', () => {
    const acks: AckRecord[] = RUN_EXPECTATIONS.map((e, i) => ({
      id: `ack-${i}`,
      domain: e.domain,
      action: e.action,
      status: 'OK',
      resultId: actionKey(e) === 'orchestrator/finalize_run' ? RUN : actionKey(e).includes('trace') ? 'trace-1' : `row-${i}`,
      createdAt: T0,
    }));
    for (const liveness of [terminated, failing]) {
      const report = reconcileRun(inFlight({ acks, liveness }));
      expect(report.stale).toBeNull();
      expect(report.verdict).not.toBe('STALE');
    }
  });

  it('names Temporal’s reason, and keeps the old wording when there is none', () => {
    expect(describeStale({ state: 'closed', status: 'FAILED', closedAt: null })).toBe('workflow closed (FAILED) without finalizing');
    expect(describeStale({ state: 'closed', status: 'FAILED', closedAt: null, reason: 'Activity task failed' })).toBe('workflow closed (FAILED: Activity task failed) without finalizing');
    expect(describeStale(failing)).toContain('keeps failing (attempt 4)');
  });
});

describe('on the real stack: a pass finds wedged runs long before their deadline', () => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let stack: Stack;
  let tenant: TestTenant;

  beforeAll(async () => {
    database = await freshDatabase('wedged');
    // Deadlines an hour away: whatever a pass reports here, it reports before them.
    stack = await startStack({ databaseUrl: database.url, runDeadlineSeconds: 3600 });
    tenant = await stack.createTenant();
  });
  afterAll(async () => {
    await stack?.close();
    await database?.drop();
  });

  /** One reconciliation pass, through the real workflow on the stack's worker. */
  function pass() {
    return stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `audit-pass-${randomUUID()}`, args: [{}] });
  }

  async function reconciliation(runId: string) {
    const [row] = await stack.db.select().from(auditReconciliations).where(eq(auditReconciliations.runId, runId));
    return row!;
  }

  function findingsOf(runId: string) {
    return stack.db.select().from(auditFindings).where(eq(auditFindings.runId, runId)).orderBy(asc(auditFindings.check));
  }

  function auditIncidents(runId: string) {
    return stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'audit'))).orderBy(asc(incidents.errorCode));
  }

  async function auditEvents(runId: string) {
    const rows = await stack.db.select().from(outbox).where(eq(outbox.runId, runId)).orderBy(asc(outbox.id));
    return rows.filter((e) => e.topic.startsWith('audit.'));
  }

  async function finalizeDeadline(runId: string): Promise<Date> {
    const [row] = await stack.db
      .select({ deadlineAt: auditExpectations.deadlineAt })
      .from(auditExpectations)
      .where(and(eq(auditExpectations.runId, runId), eq(auditExpectations.action, 'finalize_run')));
    return row!.deadlineAt!;
  }

  /** Waits until none of these runs has written anything for the probe's quiet period (database clock). */
  async function waitQuiet(runIds: string[]): Promise<void> {
    const rows = await stack.db.select({ updatedAt: runs.updatedAt }).from(runs).where(inArray(runs.id, runIds));
    const latest = Math.max(...rows.map((r) => r.updatedAt.getTime()));
    const now = (await databaseNow(stack.db)).getTime();
    await new Promise((r) => setTimeout(r, Math.max(0, latest + (WEDGE_PROBE.quietSeconds + 1) * 1000 - now)));
  }

  /** The API, starting runs on another task queue (served by another worker, or by none). */
  async function apiOn(taskQueue: string) {
    const app = createApp({ ...stack.apiDeps, taskQueue });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      async submit(apiKey: string, body: unknown): Promise<string> {
        const res = await fetch(`${base}/api/v1/runs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        expect(res.status).toBe(202);
        return ((await res.json()) as { runId: string }).runId;
      },
      close: () => new Promise((r) => server.close(r)),
    };
  }

  it('a run whose workflow an operator terminated mid-step is STALE at the next pass, with the termination reason and an incident', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'a long step', latencyMs: 60_000 } }] });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const handle = stack.client.workflow.getHandle(runId);
    await waitFor('the run to be in its step', async () => (await handle.describe()).raw.pendingActivities?.some((a) => a.activityType?.name === 'runStep'));
    await handle.terminate('operator terminated it');
    // Temporal's visibility store answers the pass's list query once it has recorded the close.
    await waitFor('visibility to record the close', async () => (await stack.client.workflow.count(`WorkflowId = "${runId}" AND ExecutionStatus = "Terminated"`)).count === 1);

    const deadline = await finalizeDeadline(runId);
    await pass();
    const row = await reconciliation(runId);
    expect(row.verdict).toBe('STALE');
    expect(row.reconciledAt!.getTime()).toBeLessThan(deadline.getTime() - 3000 * 1000);
    expect(row.report!.stale).toMatchObject({ liveness: { state: 'closed', status: 'TERMINATED' } });
    expect(row.report!.stale!.reason).toMatch(/^workflow closed \(TERMINATED at .*: terminated by .*: operator terminated it\) without finalizing$/);
    expect(row.report!.stale!.overdueSeconds).toBeLessThan(-3000);
    // Its workflow is gone: everything it never wrote is owed now.
    expect(row.report!.missing.map(actionKey).sort()).toEqual(RUN_EXPECTATIONS.map(actionKey).filter((k) => k !== 'logs/start_trace').sort());
    expect(row.dueAt).toBeNull();

    const findings = await findingsOf(runId);
    expect(findings.map((f) => [f.check, f.severity])).toEqual([
      ['missing', 'HIGH'],
      ['stale', 'HIGH'],
    ]);
    expect(findings[1]!.summary).toContain('operator terminated it');
    const opened = await auditIncidents(runId);
    expect(opened.map((i) => [i.errorCode, i.severity])).toEqual([
      ['AUDIT_MISSING', 'HIGH'],
      ['AUDIT_STALE', 'HIGH'],
    ]);
    expect(opened[1]!.message).toContain('operator terminated it');
    expect((await auditEvents(runId)).map((e) => e.topic).sort()).toEqual(['audit.reconciliation.missing', 'audit.reconciliation.stale']);

    // The stale-run report lists it before its deadline, with Temporal's status and reason.
    await stack.client.workflow.execute(staleRunReportWorkflow, { taskQueue: stack.taskQueue, workflowId: `stale-report-${randomUUID()}` });
    const report = await stack.request('GET', '/api/v1/reports/stale-runs', { apiKey: tenant.apiKey });
    const entry = report.body.runs.find((r: { runId: string }) => r.runId === runId);
    expect(entry).toMatchObject({ phase: 'EXECUTING', temporalStatus: 'TERMINATED', reason: expect.stringContaining('operator terminated it') });
    expect(entry.overdueSeconds).toBeLessThan(0);

    // A later pass neither reads it again nor opens anything more.
    await pass();
    expect((await reconciliation(runId)).passes).toBe(1);
    expect(await auditIncidents(runId)).toHaveLength(2);
  });

  describe('runs that have gone quiet', () => {
    const failingQueue = `failing-build-${randomUUID()}`;
    let failingWorker: Worker;
    let failingWorkerRun: Promise<void>;
    let nativeConnection: NativeConnection;
    let failingRun: string;
    let slowRun: string;
    let pausedRun: string;

    beforeAll(async () => {
      // A worker of a build whose workflow fails every task, on a queue of its own.
      nativeConnection = await NativeConnection.connect({ address: inject('temporalAddress') });
      failingWorker = await Worker.create({
        connection: nativeConnection,
        taskQueue: failingQueue,
        workflowsPath: path.join(__dirname, 'fixtures', 'failing-run-workflow.ts'),
      });
      failingWorkerRun = failingWorker.run();
      const api = await apiOn(failingQueue);
      try {
        failingRun = await api.submit(tenant.apiKey, { plan: simPlan(1) });
      } finally {
        await api.close();
      }
      // Two healthy runs that write nothing for a long while: one in a slow step, one paused.
      slowRun = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'a slow step', latencyMs: 180_000 } }] });
      const patient = await stack.createTenant({ policy: { pauseSlaSeconds: 900, pauseWarningSeconds: 0 } });
      pausedRun = await stack.submitRun(patient.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'slow', latencyMs: 1500 } }, ...simPlan(1)] });
      expect((await stack.request('POST', `/api/v1/runs/${pausedRun}/pause`, { apiKey: patient.apiKey })).status).toBe(202);
      await waitForPause(stack.db, pausedRun);
      await stack.waitForPhase(slowRun, ['EXECUTING']);
    });
    afterAll(async () => {
      for (const runId of [failingRun, slowRun, pausedRun]) {
        if (runId) await stack.client.workflow.getHandle(runId).terminate('test cleanup').catch(() => {});
      }
      if (failingWorker?.getState() === 'RUNNING') failingWorker.shutdown();
      await failingWorkerRun;
      await nativeConnection?.close();
    });

    it('a run whose workflow task keeps failing is STALE at the next pass once quiet, naming the failure, with an incident', { timeout: 150_000 }, async () => {
      const handle = stack.client.workflow.getHandle(failingRun);
      const pending = await waitFor(
        'the workflow task to have failed and been retried',
        async () => {
          const task = (await handle.describe()).raw.pendingWorkflowTask;
          return (task?.attempt ?? 0) >= FAILING_WORKFLOW_TASK_ATTEMPT ? task : undefined;
        },
        60_000,
      );
      expect((await handle.describe()).status.name).toBe('RUNNING');
      expect(pending!.attempt).toBeGreaterThanOrEqual(FAILING_WORKFLOW_TASK_ATTEMPT);
      await waitQuiet([failingRun]);

      const deadline = await finalizeDeadline(failingRun);
      await pass();
      const row = await reconciliation(failingRun);
      expect(row.verdict).toBe('STALE');
      expect(row.report!.stale!.liveness).toMatchObject({ state: 'failing', phase: 'CREATED' });
      expect((row.report!.stale!.liveness as { attempt: number }).attempt).toBeGreaterThanOrEqual(FAILING_WORKFLOW_TASK_ATTEMPT);
      expect(row.report!.stale!.reason).toMatch(
        /^workflow still running, but its workflow task keeps failing \(attempt \d+\) in phase CREATED since .*: workflow task failed \(WORKFLOW_WORKER_UNHANDLED_FAILURE\): a bug in this build: cannot read the run plan$/,
      );
      expect(row.report!.stale!.overdueSeconds).toBeLessThan(-3000);
      // Still running, it owes nothing else yet; it stays due at its deadline.
      expect(row.dueAt!.getTime()).toBe(deadline.getTime());

      const findings = await findingsOf(failingRun);
      expect(findings.map((f) => [f.check, f.severity, f.resolvedAt])).toEqual([['stale', 'HIGH', null]]);
      expect(findings[0]!.summary).toContain('a bug in this build: cannot read the run plan');
      const opened = await auditIncidents(failingRun);
      expect(opened.map((i) => [i.kind, i.errorCode, i.severity])).toEqual([['audit', 'AUDIT_STALE', 'HIGH']]);
      expect(opened[0]!.message).toContain('keeps failing');
      expect((await auditEvents(failingRun)).map((e) => e.topic)).toEqual(['audit.reconciliation.stale']);
    });

    it('healthy runs that are quiet (a slow step, a pause) are asked about and not reported', { timeout: 150_000 }, async () => {
      await waitQuiet([slowRun, pausedRun]);
      await pass();
      for (const runId of [slowRun, pausedRun]) {
        const row = await reconciliation(runId);
        // Read by a pass (the probe made it due), and found in order: nothing is owed yet.
        expect(row, runId).toMatchObject({ verdict: 'PENDING', firstDetectedAt: null });
        expect(row.passes).toBeGreaterThanOrEqual(1);
        expect(row.report!.stale).toBeNull();
        expect(row.dueAt!.getTime()).toBe((await finalizeDeadline(runId)).getTime());
        expect(await findingsOf(runId)).toEqual([]);
        expect(await auditIncidents(runId)).toEqual([]);
      }
      expect((await stack.db.select().from(runs).where(eq(runs.id, slowRun)))[0]!.phase).toBe('EXECUTING');
      expect((await stack.db.select().from(runs).where(eq(runs.id, pausedRun)))[0]!.pauseReason).not.toBeNull();

      // Read once since it went quiet: the next pass leaves it alone until it has been quiet twice as long.
      const passes = (await reconciliation(slowRun)).passes;
      await pass();
      expect((await reconciliation(slowRun)).passes).toBe(passes);
    });

    it('once a fixed build serves the failing run, it runs to the end and the next pass resolves the finding and its incident', { timeout: 240_000 }, async () => {
      expect((await reconciliation(failingRun)).verdict).toBe('STALE');
      failingWorker.shutdown();
      await failingWorkerRun;
      const { createWorker } = await import('../worker/create-worker');
      const fixed = await createWorker({
        connection: nativeConnection,
        namespace: 'default',
        taskQueue: failingQueue,
        workflowBundlePath: inject('workflowBundlePath'),
        deps: stack.activityDeps,
      });
      const running = fixed.run();
      try {
        await stack.waitForPhase(failingRun, ['COMPLETED'], 200_000);
      } finally {
        fixed.shutdown();
        await running;
      }
      await pass();
      expect(await reconciliation(failingRun)).toMatchObject({ verdict: 'COMPLETE', dueAt: null });
      const [finding] = await findingsOf(failingRun);
      expect(finding).toMatchObject({ check: 'stale', resolvedAt: expect.any(Date) });
      expect((await auditIncidents(failingRun))[0]).toMatchObject({ errorCode: 'AUDIT_STALE', status: 'resolved' });
    });
  });
});
