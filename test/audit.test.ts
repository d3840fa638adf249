import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Server } from 'node:http';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { RUN_EXPECTATIONS } from '../core/audit';
import { actionKey } from '../core/audit-reconciliation';
import {
  auditExpectations,
  auditFindings,
  auditPasses,
  auditReconciliations,
  domainAcks,
  incidents,
  outbox,
  runLogs,
  traceSteps,
} from '../db/schema';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';
import { startWorkerProcess } from './helpers/worker-process';

/** Short enough to wait out in a test; long enough for a healthy run to finalize first. */
const DEADLINE_SECONDS = 4;
const ALL = RUN_EXPECTATIONS.map(actionKey).sort();

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;
let tenant: TestTenant;

beforeAll(async () => {
  database = await freshDatabase('audit');
  stack = await startStack({ databaseUrl: database.url, runDeadlineSeconds: DEADLINE_SECONDS });
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
  return stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'audit')));
}

async function auditEvents(runId: string) {
  const rows = await stack.db.select().from(outbox).where(eq(outbox.runId, runId)).orderBy(asc(outbox.id));
  return rows.filter((e) => e.topic.startsWith('audit.'));
}

/** Waits until every expectation of the run is past its deadline (by the database's clock). */
async function waitPastDeadline(runId: string): Promise<void> {
  const rows = await stack.db.select({ deadlineAt: auditExpectations.deadlineAt }).from(auditExpectations).where(eq(auditExpectations.runId, runId));
  const latest = Math.max(...rows.map((r) => r.deadlineAt!.getTime()));
  await new Promise((r) => setTimeout(r, Math.max(0, latest - Date.now() + 300)));
}

/** The same API on a task queue that no worker polls: its runs start and nothing ever runs them. */
async function apiWithoutWorker(taskQueue = `nobody-${randomUUID()}`) {
  const app = createApp({ ...stack.apiDeps, taskQueue });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    taskQueue,
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

/** A sample of the worker's metrics, 0 when the series does not exist yet. */
async function workerMetric(series: string): Promise<number> {
  const text = await stack.workerMetrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function completedRun(steps = 2): Promise<string> {
  const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(steps) });
  await stack.waitForPhase(runId, ['COMPLETED']);
  return runId;
}

describe('the seed destructive scenarios (§13.7), on the real stack', () => {
  it('1. a normal run is COMPLETE with every ack', async () => {
    const runId = await completedRun();
    const completeBefore = await workerMetric('governed_audit_runs_reconciled_total{verdict="COMPLETE"}');
    const totals = await pass();
    expect(totals.runs).toBeGreaterThanOrEqual(1);
    expect(await workerMetric('governed_audit_runs_reconciled_total{verdict="COMPLETE"}')).toBe(completeBefore + totals.runs);
    const row = await reconciliation(runId);
    expect(row).toMatchObject({ verdict: 'COMPLETE', dueAt: null, passes: 1, firstDetectedAt: null });
    expect(row.report).toMatchObject({ missing: [], drift: [], stale: null, invalid: [], phantom: [] });
    expect(await findingsOf(runId)).toEqual([]);

    const api = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(api.status).toBe(200);
    expect(api.body.verdict).toBe('COMPLETE');
    expect(api.body.expectations.map((e: { domain: string; action: string }) => actionKey(e)).sort()).toEqual(ALL);
    expect(api.body.expectations.every((e: { satisfied: boolean; deadlineAt: string; acks: { status: string }[] }) => e.satisfied && e.deadlineAt && e.acks[0]?.status === 'OK')).toBe(true);
    expect(api.body.lastReconciliation).toMatchObject({ verdict: 'COMPLETE', passes: 1 });

    // Reconciled in its final state, unchanged: the next pass does not read it again.
    await pass();
    expect((await reconciliation(runId)).passes).toBe(1);
  });

  it('2. a run whose worker died before any domain write is STALE, missing everything', async () => {
    const dead = await apiWithoutWorker();
    const runId = await dead.submit(tenant.apiKey, { plan: simPlan(1) });
    await dead.close();
    await waitPastDeadline(runId);
    const neverFinalized = await workerMetric('governed_run_never_finalized_total');
    await pass();
    expect(await workerMetric('governed_run_never_finalized_total')).toBe(neverFinalized + 1);
    const row = await reconciliation(runId);
    expect(row.verdict).toBe('STALE');
    expect(row.report!.missing.map((m) => [actionKey(m), m.because]).sort()).toEqual(ALL.map((k) => [k, 'NO_ACK']));
    expect(row.report!.stale!.reason).toMatch(/^workflow still running, stuck in phase CREATED since /);
    const findings = await findingsOf(runId);
    expect(findings.map((f) => [f.check, f.severity])).toEqual([
      ['missing', 'HIGH'],
      ['stale', 'HIGH'],
    ]);
    await stack.client.workflow.getHandle(runId).terminate('test cleanup');
  });

  it('3. a worker SIGKILLed after partial acks leaves a STALE run missing exactly what it never wrote', async () => {
    const taskQueue = `doomed-${randomUUID()}`;
    const worker = await startWorkerProcess({ databaseUrl: database.url, taskQueue });
    const api = await apiWithoutWorker(taskQueue);
    try {
      const runId = await api.submit(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'a long step', latencyMs: 60_000 } }] });
      // In its long step: the trace has started, nothing after it is written. (Killing at the
      // start_trace ack used to pass only because the kill missed the worker tsx ran in a child.)
      // Killed inside its long step, not between its first writes: the stored run is EXECUTING and
      // Temporal holds the step as a pending activity (so the phase it shows was upserted too).
      await stack.waitForPhase(runId, ['EXECUTING']);
      await waitFor('the run to execute its step', async () => {
        const { raw } = await stack.client.workflow.getHandle(runId).describe();
        return raw.pendingActivities?.some((a) => a.activityType?.name === 'runStep');
      });
      await worker.kill();
      await waitPastDeadline(runId);
      await pass();
      const row = await reconciliation(runId);
      expect(row.verdict).toBe('STALE');
      expect(row.report!.missing.map(actionKey).sort()).toEqual(ALL.filter((k) => k !== 'logs/start_trace'));
      expect(row.report!.stale!.reason).toMatch(/stuck in phase EXECUTING since/);
      await stack.client.workflow.getHandle(runId).terminate('test cleanup');
    } finally {
      await worker.kill();
      await api.close();
    }
  });

  it('4. a run whose finalize_run never landed is STALE with only that missing', async () => {
    stack.faults.add({ activity: 'finalizeRun', mode: 'fail' });
    try {
      const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
      await expect(stack.client.workflow.getHandle(runId).result()).rejects.toThrow();
      await waitPastDeadline(runId);
      await pass();
      const row = await reconciliation(runId);
      expect(row.verdict).toBe('STALE');
      expect(row.report!.missing).toEqual([{ domain: 'orchestrator', action: 'finalize_run', because: 'NO_ACK' }]);
      expect(row.report!.stale!.reason).toMatch(/^workflow closed \(FAILED at .*\) without finalizing$/);
    } finally {
      stack.faults.clear();
    }
  });

  it('5. of five runs, exactly the three whose worker never ran them are stale, and the report lists them', async () => {
    const other = await stack.createTenant();
    const dead = await apiWithoutWorker();
    const stale = [await dead.submit(other.apiKey, { plan: simPlan(1) }), await dead.submit(other.apiKey, { plan: simPlan(1) }), await dead.submit(other.apiKey, { plan: simPlan(1) })];
    await dead.close();
    const healthy = [await stack.submitRun(other.apiKey, { plan: simPlan(1) }), await stack.submitRun(other.apiKey, { plan: simPlan(1) })];
    await Promise.all(healthy.map((id) => stack.waitForPhase(id, ['COMPLETED'])));
    await waitPastDeadline(stale[2]!);
    await pass();
    const rows = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, [...stale, ...healthy]));
    expect(rows.filter((r) => r.verdict === 'STALE').map((r) => r.runId).sort()).toEqual([...stale].sort());
    expect(rows.filter((r) => r.verdict === 'COMPLETE').map((r) => r.runId).sort()).toEqual([...healthy].sort());

    const { staleRunReportWorkflow } = await import('../workflows/audit');
    const written = await stack.client.workflow.execute(staleRunReportWorkflow, { taskQueue: stack.taskQueue, workflowId: `stale-report-${randomUUID()}` });
    expect(written.staleRuns).toBeGreaterThanOrEqual(3);
    const report = await stack.request('GET', '/api/v1/reports/stale-runs', { apiKey: other.apiKey });
    expect(report.status).toBe(200);
    expect(report.body.id).toBe(written.reportId);
    // Another tenant's key sees only its own runs in the same report.
    expect(report.body.runs.map((r: { runId: string }) => r.runId).sort()).toEqual([...stale].sort());
    expect(report.body.runs[0]).toMatchObject({ tenantId: other.tenantId, phase: 'CREATED', temporalStatus: 'RUNNING' });
    expect(report.body.runs[0].overdueSeconds).toBeGreaterThanOrEqual(0);
    const mine = await stack.request('GET', '/api/v1/reports/stale-runs', { apiKey: tenant.apiKey });
    expect(mine.body.runs.some((r: { runId: string }) => stale.includes(r.runId))).toBe(false);
    await Promise.all(stale.map((id) => stack.client.workflow.getHandle(id).terminate('test cleanup')));
  });

  it('6. a rolled-back saga is reported with its ROLLED_BACK acks, not as clean', async () => {
    stack.faults.add({ activity: 'completeTrace', mode: 'fail' });
    try {
      const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
      const run = await stack.waitForPhase(runId, 'terminal');
      expect(run).toMatchObject({ errorCode: 'GOVERNANCE_ERROR', sagaPhase: 'ROLLED_BACK' });
      await pass();
      const row = await reconciliation(runId);
      expect(row.verdict).toBe('INCOMPLETE');
      expect(row.report!.missing.map((m) => [actionKey(m), m.because]).sort()).toEqual([
        ['incidents/create_incident', 'ROLLED_BACK'],
        ['logs/complete_trace', 'NO_ACK'],
        ['policies/evaluate_policy', 'ROLLED_BACK'],
      ]);
      expect(row.report!.phantom).toEqual([]);
    } finally {
      stack.faults.clear();
    }
  });
});

describe('evidence behind the system back', () => {
  it('names exactly an undeclared ack and a duplicate outcome incident as drift, once, and resolves it when they go', async () => {
    const runId = await completedRun();
    await pass();
    const [rogueAck] = await stack.db
      .insert(domainAcks)
      .values({ runId, domain: 'logs', action: 'export_transcript', status: 'OK' })
      .returning({ id: domainAcks.id });
    const [duplicate] = await stack.db
      .insert(incidents)
      .values({ runId, tenantId: tenant.tenantId, dedupeKey: 'outcome-again', kind: 'failure', severity: 'LOW', message: 'a second outcome' })
      .returning({ id: incidents.id });
    const unexpected = await workerMetric('governed_unexpected_domain_action_total');
    await pass();
    expect(await workerMetric('governed_unexpected_domain_action_total')).toBe(unexpected + 2);
    const row = await reconciliation(runId);
    expect(row.verdict).toBe('INCOMPLETE');
    expect(row.report!.drift).toEqual([
      { domain: 'logs', action: 'export_transcript', kind: 'UNDECLARED_ACK', id: rogueAck!.id },
      { domain: 'incidents', action: 'create_incident', kind: 'UNACKED_ROW', id: duplicate!.id },
    ]);
    expect(row.report!.missing).toEqual([]);
    expect(row.firstDetectedAt).not.toBeNull();

    // A second pass over the same findings adds no incident and no event.
    await stack.db.update(auditReconciliations).set({ dueAt: new Date() }).where(eq(auditReconciliations.runId, runId));
    await pass();
    const findings = await findingsOf(runId);
    expect(findings.map((f) => [f.check, f.severity, f.resolvedAt])).toEqual([['drift', 'MEDIUM', null]]);
    expect(await auditIncidents(runId)).toHaveLength(1);
    expect((await auditIncidents(runId))[0]).toMatchObject({ severity: 'MEDIUM', errorCode: 'AUDIT_DRIFT' });
    const events = await auditEvents(runId);
    expect(events.map((e) => e.topic)).toEqual(['audit.reconciliation.drift']);
    expect(events[0]!.payload).toMatchObject({ check: 'drift', severity: 'MEDIUM', incidentId: findings[0]!.incidentId });
    expect((await reconciliation(runId)).passes).toBe(3);

    const listed = await stack.request('GET', '/api/v1/audit/findings?check=drift', { apiKey: tenant.apiKey });
    expect(listed.status).toBe(200);
    expect(listed.body.findings.map((f: { runId: string }) => f.runId)).toContain(runId);

    // The rogue rows go (a delete is a change too): the next pass finds no drift and resolves it. The
    // rows were chained as they were written, so their deletion breaks the run's evidence chain
    // (README, "Evidence"): the run stays INCOMPLETE with a tampered finding naming the first of them.
    await stack.db.delete(domainAcks).where(eq(domainAcks.id, rogueAck!.id));
    await stack.db.delete(incidents).where(eq(incidents.id, duplicate!.id));
    await pass();
    const resolved = await reconciliation(runId);
    expect(resolved.verdict).toBe('INCOMPLETE');
    const after = await findingsOf(runId);
    expect(after.map((f) => [f.check, f.resolvedAt === null])).toEqual([
      ['drift', false],
      ['tampered', true],
    ]);
    expect(after[1]!.subjects).toEqual([`ack:${rogueAck!.id}`]);
    // The drift's incident resolved itself, announced like any resolution.
    expect((await auditIncidents(runId)).find((i) => i.errorCode === 'AUDIT_DRIFT')).toMatchObject({ status: 'resolved', resolvedBy: 'system' });
    expect((await stack.db.select().from(outbox).where(eq(outbox.runId, runId))).filter((e) => e.topic === 'incident.resolved')).toHaveLength(1);
    const open = await stack.request('GET', '/api/v1/audit/findings?check=drift', { apiKey: tenant.apiKey });
    expect(open.body.findings.map((f: { runId: string }) => f.runId)).not.toContain(runId);
  });

  it('does not read a run again because a person acknowledged or resolved its incident', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'x', fail: true } }] });
    await stack.waitForPhase(runId, ['FAILED']);
    await pass();
    expect(await reconciliation(runId)).toMatchObject({ verdict: 'COMPLETE', dueAt: null });
    const [incident] = await stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.dedupeKey, 'outcome')));
    expect((await stack.request('POST', `/api/v1/incidents/${incident!.id}/acknowledge`, { apiKey: tenant.apiKey })).status).toBe(200);
    expect((await stack.request('POST', `/api/v1/incidents/${incident!.id}/resolve`, { apiKey: tenant.apiKey })).status).toBe(200);
    expect((await reconciliation(runId)).dueAt).toBeNull();
    // Evidence still counts: rolling the incident back behind the system's back makes the run due.
    await stack.db.update(incidents).set({ rolledBack: true }).where(eq(incidents.id, incident!.id));
    expect((await reconciliation(runId)).dueAt).not.toBeNull();
  });

  it('names a trace step written after the run finalized as drift', async () => {
    const runId = await completedRun(1);
    await pass();
    await stack.db.insert(traceSteps).values({ runId, stepIndex: 7, skill: 'sim.llm', model: 'sim-1', tokensIn: 1, tokensOut: 1, costUsd: 0, durationMs: 1 });
    await pass();
    const row = await reconciliation(runId);
    expect(row.verdict).toBe('INCOMPLETE');
    expect(row.report!.drift).toEqual([{ domain: 'logs', action: 'trace_step', kind: 'LATE_TRACE_STEP', stepIndex: 7 }]);
  });

  it('calls a contract with an expectation that lost its deadline INVALID', async () => {
    const runId = await completedRun(1);
    await pass();
    await stack.db
      .update(auditExpectations)
      .set({ deadlineAt: null })
      .where(and(eq(auditExpectations.runId, runId), eq(auditExpectations.action, 'evaluate_policy')));
    await pass();
    const row = await reconciliation(runId);
    expect(row.verdict).toBe('INVALID');
    expect(row.report!.invalid).toEqual([{ domain: 'policies', action: 'evaluate_policy', because: 'NO_DEADLINE' }]);
    expect((await auditIncidents(runId)).map((i) => [i.severity, i.errorCode])).toEqual([['HIGH', 'AUDIT_INVALID']]);
    expect((await auditEvents(runId)).map((e) => e.topic)).toEqual(['audit.reconciliation.invalid']);
  });

  it('calls an ack whose row was deleted a phantom', async () => {
    const runId = await completedRun(1);
    await pass();
    const [log] = await stack.db.delete(runLogs).where(eq(runLogs.runId, runId)).returning({ id: runLogs.id });
    await pass();
    const row = await reconciliation(runId);
    expect(row.verdict).toBe('INCOMPLETE');
    expect(row.report!.phantom).toEqual([{ domain: 'logs', action: 'create_log_record', resultId: log!.id, because: 'ROW_MISSING' }]);
    // A row deleted after it was chained also breaks the run's evidence chain (README, "Evidence").
    expect((await auditEvents(runId)).map((e) => e.topic)).toEqual(['audit.reconciliation.phantom', 'audit.reconciliation.tampered']);
    expect(row.report!.tampered).toMatchObject({ kind: 'log', key: log!.id, because: 'RECORD_GONE' });
  });
});

describe('no false positives', () => {
  it('does not call a run stale while a pause holds it past its original deadline', { timeout: 60_000 }, async () => {
    const { waitForPause } = await import('./helpers/runs');
    const patient = await stack.createTenant({ policy: { pauseSlaSeconds: 30, pauseWarningSeconds: 0 } });
    const runId = await stack.submitRun(patient.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'slow', latencyMs: 1500 } }, ...simPlan(1)] });
    const [before] = await stack.db.select().from(auditExpectations).where(and(eq(auditExpectations.runId, runId), eq(auditExpectations.action, 'finalize_run')));
    expect((await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: patient.apiKey })).status).toBe(202);
    await waitForPause(stack.db, runId);
    const [after] = await stack.db.select().from(auditExpectations).where(and(eq(auditExpectations.runId, runId), eq(auditExpectations.action, 'finalize_run')));
    expect(after!.deadlineAt!.getTime() - before!.deadlineAt!.getTime()).toBe(30_000);

    await new Promise((r) => setTimeout(r, (DEADLINE_SECONDS + 1) * 1000));
    await pass();
    expect((await reconciliation(runId)).verdict).toBeNull();
    const live = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: patient.apiKey });
    expect(live.body).toMatchObject({ verdict: 'PENDING', stale: null });

    expect((await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: patient.apiKey })).status).toBe(200);
    await stack.waitForPhase(runId, ['COMPLETED']);
    await pass();
    expect(await reconciliation(runId)).toMatchObject({ verdict: 'COMPLETE', firstDetectedAt: null });
    expect(await findingsOf(runId)).toEqual([]);
  });

  it('reconciles 200 clean runs with 0 findings', { timeout: 400_000 }, async () => {
    const ids = await Promise.all(Array.from({ length: 200 }, (_, i) => stack.submitRun(tenant.apiKey, { plan: simPlan(1 + (i % 2)) })));
    await Promise.all(ids.map((id) => stack.waitForPhase(id, ['COMPLETED'], 150_000)));
    await pass();
    const rows = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, ids));
    expect(rows).toHaveLength(200);
    expect(rows.filter((r) => r.verdict !== 'COMPLETE')).toEqual([]);
    expect(await stack.db.select().from(auditFindings).where(inArray(auditFindings.runId, ids))).toEqual([]);
  });
});

describe('the audit loop runs on its own', () => {
  it('keeps a Schedule and a cron workflow, created and updated idempotently; the Schedule reports a dead run within deadline + interval', { timeout: 90_000 }, async () => {
    const { applyAuditSchedules, AUDIT_SCHEDULE_ID, STALE_REPORT_WORKFLOW_ID, runningCron } = await import('../worker/audit-schedules');
    const options = { taskQueue: stack.taskQueue, reconcileIntervalSeconds: 2, staleReportCron: '*/5 * * * *' };
    try {
      expect(await applyAuditSchedules(stack.client, options)).toEqual({ schedule: 'created', staleReport: 'started' });
      expect(await applyAuditSchedules(stack.client, options)).toEqual({ schedule: 'updated', staleReport: 'unchanged' });

      const schedule = await stack.client.schedule.getHandle(AUDIT_SCHEDULE_ID).describe();
      expect(schedule.spec.intervals?.[0]?.every).toBe(2000);
      expect(schedule.policies.overlap).toBe('SKIP');
      expect(schedule.action).toMatchObject({ type: 'startWorkflow', workflowType: 'reconcileAuditWorkflow', taskQueue: stack.taskQueue });
      const cron = await stack.client.workflow.getHandle(STALE_REPORT_WORKFLOW_ID).describe();
      expect(cron.status.name).toBe('RUNNING');
      expect(await runningCron(stack.client)).toEqual({ cronSchedule: '*/5 * * * *', taskQueue: stack.taskQueue });

      // Nobody triggers a pass here: the Schedule finds the dead run by itself.
      const dead = await apiWithoutWorker();
      const submittedAt = Date.now();
      const runId = await dead.submit(tenant.apiKey, { plan: simPlan(1) });
      await dead.close();
      const row = await waitFor('the Schedule to report the run stale', async () => {
        const r = await reconciliation(runId);
        return r.verdict === 'STALE' ? r : undefined;
      }, 30_000);
      expect(row.reconciledAt!.getTime() - submittedAt).toBeLessThanOrEqual((DEADLINE_SECONDS + options.reconcileIntervalSeconds + 2) * 1000);
      await stack.client.workflow.getHandle(runId).terminate('test cleanup');

      const changed = await applyAuditSchedules(stack.client, { ...options, reconcileIntervalSeconds: 3600, staleReportCron: '*/7 * * * *' });
      expect(changed).toEqual({ schedule: 'updated', staleReport: 'restarted' });
      expect((await runningCron(stack.client)).cronSchedule).toBe('*/7 * * * *');
      expect((await stack.client.schedule.getHandle(AUDIT_SCHEDULE_ID).describe()).spec.intervals?.[0]?.every).toBe(3_600_000);

      // What an operator types: the schedule is listed, and a trigger runs a pass at once.
      const { execFileSync } = await import('node:child_process');
      const temporal = (...args: string[]) => execFileSync(inject('temporalCliPath'), [...args, '--address', inject('temporalAddress')], { encoding: 'utf8' });
      expect(temporal('schedule', 'list')).toContain(AUDIT_SCHEDULE_ID);
      const before = await stack.db.$count(auditPasses);
      temporal('schedule', 'trigger', '--schedule-id', AUDIT_SCHEDULE_ID);
      await waitFor('the triggered pass to be recorded', async () => (await stack.db.$count(auditPasses)) > before);
    } finally {
      await stack.client.schedule.getHandle('audit-reconciler').delete().catch(() => {});
      await stack.client.workflow.getHandle('stale-run-report').terminate('test cleanup').catch(() => {});
    }
  });

  it('says in /healthz when the last pass finished, and turns degraded when that is older than three intervals', async () => {
    await pass();
    const fresh = await stack.request('GET', '/healthz');
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ status: 'ok', audit: 'ok' });
    expect(fresh.body.auditLastPassAgeSeconds).toBeLessThan(5);

    const strict = createApp({ ...stack.apiDeps, auditIntervalSeconds: 1 });
    const server: Server = await new Promise((resolve) => {
      const s = strict.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      await new Promise((r) => setTimeout(r, 3500));
      const late = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`);
      expect(late.status).toBe(503);
      expect(await late.json()).toMatchObject({ status: 'degraded', postgres: 'ok', audit: expect.stringMatching(/^late: last reconciliation pass finished \d+s ago/) });
    } finally {
      await new Promise((r) => server.close(r));
    }
    const metrics = await stack.request('GET', '/metrics');
    expect(metrics.body).toMatch(/governed_audit_last_pass_age_seconds \d/);
    expect(await workerMetric('governed_audit_pass_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(await workerMetric('governed_audit_due_runs_count')).toBeGreaterThanOrEqual(1);
  });
});

describe('the audit API', () => {
  it('shows a tenant only its own runs and findings, and refuses bad input with a 4xx', async () => {
    const runId = await completedRun(1);
    const other = await stack.createTenant();
    expect((await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: other.apiKey })).status).toBe(404);
    const viewer = await stack.createKey(tenant.tenantId, 'viewer');
    expect((await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: viewer })).status).toBe(200);
    expect((await stack.request('GET', '/api/v1/audit/findings', { apiKey: other.apiKey })).body.findings).toEqual([]);
    expect((await stack.request('GET', '/api/v1/runs/not-a-uuid/audit', { apiKey: tenant.apiKey })).status).toBe(400);
    expect((await stack.request('GET', '/api/v1/audit/findings?verdict=SHINY', { apiKey: tenant.apiKey })).status).toBe(400);
    expect((await stack.request('GET', '/api/v1/audit/findings?cursor=%%%', { apiKey: tenant.apiKey })).status).toBe(400);
    for (const at of ['2026-02-30T00:00:00.000000Z', '0001-01-01T00:00:00.000000Z', '2026-01-01T00:00:00Z']) {
      const cursor = Buffer.from(`${at}|${runId}`).toString('base64url');
      expect((await stack.request('GET', `/api/v1/audit/findings?cursor=${cursor}`, { apiKey: tenant.apiKey })).status, at).toBe(400);
    }
    const good = Buffer.from(`2026-01-01T00:00:00.000001Z|${runId}`).toString('base64url');
    expect((await stack.request('GET', `/api/v1/audit/findings?cursor=${good}`, { apiKey: tenant.apiKey })).status).toBe(200);
    expect((await stack.request('GET', '/api/v1/reports/stale-runs?limit=0', { apiKey: tenant.apiKey })).status).toBe(400);
    expect((await stack.request('GET', '/api/v1/audit/findings')).status).toBe(401);
  });

  it('shows a run in flight as PENDING with what it still owes', async () => {
    const dead = await apiWithoutWorker();
    const runId = await dead.submit(tenant.apiKey, { plan: simPlan(1) });
    await dead.close();
    const res = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(res.body).toMatchObject({ verdict: 'PENDING', settled: false, stale: null, findings: [], lastReconciliation: null });
    expect(res.body.missing).toHaveLength(6);
    await stack.client.workflow.getHandle(runId).terminate('test cleanup');
  });
});

describe('the audit store cannot be read', () => {
  it('makes a pass wait and retry, reporting nothing, then reconcile once the database is back', { timeout: 60_000 }, async () => {
    const { NativeConnection } = await import('@temporalio/worker');
    const { connectDatabase } = await import('../db/client');
    const { createWorker } = await import('../worker/create-worker');
    const { startTcpProxy } = await import('../testing/tcp-proxy');
    const target = new URL(database.url);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const proxied = new URL(database.url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const auditDb = connectDatabase(proxied.toString(), { max: 2 });
    const taskQueue = `audit-outage-${randomUUID()}`;
    const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
    const worker = await createWorker({
      connection,
      namespace: 'default',
      taskQueue,
      workflowBundlePath: inject('workflowBundlePath'),
      maxDomainAttempts: 3,
      deps: { ...stack.activityDeps, db: auditDb.db },
    });
    const running = worker.run();
    try {
      const runId = await completedRun(1);
      const passesBefore = await stack.db.$count(auditPasses);
      proxy.cut();
      const handle = await stack.client.workflow.start(reconcileAuditWorkflow, { taskQueue, workflowId: `audit-outage-pass-${randomUUID()}`, args: [{}] });
      // Well past the retry budget for errors that are not outages: the pass keeps retrying.
      const pending = await waitFor('the page activity to have retried', async () => {
        const activity = (await handle.describe()).raw.pendingActivities?.[0];
        return activity && (activity.attempt ?? 0) > 3 ? activity : undefined;
      }, 30_000);
      expect(pending.activityType?.name).toBe('reconcileDueRuns');
      expect((await handle.describe()).status.name).toBe('RUNNING');
      expect(await stack.db.$count(auditPasses)).toBe(passesBefore);
      expect(await reconciliation(runId)).toMatchObject({ verdict: null, passes: 0 });

      proxy.restore();
      const totals = await handle.result();
      expect(totals.runs).toBeGreaterThanOrEqual(1);
      expect(await reconciliation(runId)).toMatchObject({ verdict: 'COMPLETE', passes: 1 });
      expect(await stack.db.$count(auditPasses)).toBe(passesBefore + 1);
    } finally {
      proxy.restore();
      worker.shutdown();
      await running;
      await connection.close();
      await auditDb.close();
      await proxy.close();
    }
  });
});

describe('the operator commands', () => {
  it('print the stale-run report as a table and as JSON, and refuse a bad limit', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const run = promisify(execFile);
    const { staleRunReportWorkflow } = await import('../workflows/audit');
    const dead = await apiWithoutWorker();
    const runId = await dead.submit(tenant.apiKey, { plan: simPlan(1) });
    await dead.close();
    await waitPastDeadline(runId);
    const written = await stack.client.workflow.execute(staleRunReportWorkflow, { taskQueue: stack.taskQueue, workflowId: `stale-report-${randomUUID()}` });
    const tsx = path.join(__dirname, '..', 'node_modules', '.bin', 'tsx');
    const script = path.join(__dirname, '..', 'cli', 'operator', 'report-stale.ts');
    const env = { ...process.env, DATABASE_URL: database.url };
    const json = JSON.parse((await run(tsx, [script, '--json'], { env })).stdout);
    expect(json).toMatchObject({ id: written.reportId, staleCount: written.staleRuns });
    expect(json.runs.map((r: { runId: string }) => r.runId)).toContain(runId);
    const text = (await run(tsx, [script], { env })).stdout;
    expect(text).toMatch(new RegExp(`stale-run report ${written.reportId}, generated .*: ${written.staleRuns} stale run\\(s\\)`));
    expect(text).toMatch(new RegExp(`${runId}\\s+${tenant.tenantId}\\s+CREATED\\s+RUNNING`));
    await expect(run(tsx, [script, '--limit', 'lots'], { env })).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/limit must be a whole number/) });
    await stack.client.workflow.getHandle(runId).terminate('test cleanup');
  });
});
