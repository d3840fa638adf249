import { and, desc, eq, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import { RUN_EXPECTATIONS } from '../core/audit';
import type { AckRecord, DomainEvidence, ExpectationRecord } from '../core/audit-reconciliation';
import type { RunPhase } from '../core/phases';
import type { DbOrTx } from './client';
import {
  auditExpectations,
  auditPasses,
  auditReconciliations,
  domainAcks,
  incidents,
  policyEvaluations,
  runLogs,
  runs,
  traceSteps,
  traces,
} from './schema';

/**
 * The audit contract of a new run, written with the run (T0): every expected action with its
 * deadline, and the run's audit state, first due at that deadline.
 */
export async function declareRunContract(tx: DbOrTx, run: { runId: string; tenantId: string; deadlineSeconds: number }): Promise<void> {
  const deadline = sql`now() + make_interval(secs => ${run.deadlineSeconds})`;
  await tx.insert(auditExpectations).values(
    RUN_EXPECTATIONS.map((e) => ({ runId: run.runId, domain: e.domain, action: e.action, deadlineAt: deadline })),
  );
  await tx.insert(auditReconciliations).values({ runId: run.runId, tenantId: run.tenantId, dueAt: deadline });
}

/** `finalize_run` was acked: the run is due for reconciliation now, not at its deadline. */
export async function markRunFinalized(tx: DbOrTx, runId: string): Promise<void> {
  await tx
    .update(auditReconciliations)
    .set({ finalizedAt: sql`coalesce(${auditReconciliations.finalizedAt}, now())`, dueAt: sql`now()` })
    .where(eq(auditReconciliations.runId, runId));
}

/**
 * A pause may hold the run this much longer: its unmet deadlines (and its next due time, while it
 * is in flight) move with it, so a run waiting for a human is not reported stale.
 */
export async function extendRunDeadlines(tx: DbOrTx, runId: string, seconds: number): Promise<void> {
  const by = sql`make_interval(secs => ${seconds})`;
  await tx
    .update(auditExpectations)
    .set({ deadlineAt: sql`${auditExpectations.deadlineAt} + ${by}` })
    .where(and(eq(auditExpectations.runId, runId), isNotNull(auditExpectations.deadlineAt)));
  await tx
    .update(auditReconciliations)
    .set({ dueAt: sql`${auditReconciliations.dueAt} + ${by}` })
    .where(and(eq(auditReconciliations.runId, runId), isNull(auditReconciliations.finalizedAt), sql`${auditReconciliations.dueAt} > now()`));
}

/** Everything the reconciliation rules read about one run. */
export interface RunAuditRecords {
  runId: string;
  tenantId: string;
  /** The stored run's last write, for "stuck since". */
  lastProgressAt: Date;
  expectations: ExpectationRecord[];
  acks: AckRecord[];
  evidence: DomainEvidence;
}

function groupByRun<T extends { runId: string }>(rows: readonly T[]): Map<string, T[]> {
  const grouped = new Map<string, T[]>();
  for (const row of rows) {
    const list = grouped.get(row.runId);
    if (list) list.push(row);
    else grouped.set(row.runId, [row]);
  }
  return grouped;
}

/**
 * Reads the contract, the acks and each domain's rows for a set of runs: one query per table,
 * whatever the number of runs. Runs that do not exist are absent from the map.
 */
export async function loadAuditRecords(db: DbOrTx, runIds: readonly string[]): Promise<Map<string, RunAuditRecords>> {
  if (runIds.length === 0) return new Map();
  const ids = [...runIds];
  const [runRows, expectationRows, ackRows, traceRows, incidentRows, evaluationRows, logRows, lateStepRows] = await Promise.all([
    db
      .select({ runId: runs.id, tenantId: runs.tenantId, phase: runs.phase, updatedAt: runs.updatedAt })
      .from(runs)
      .where(inArray(runs.id, ids)),
    db
      .select({ runId: auditExpectations.runId, domain: auditExpectations.domain, action: auditExpectations.action, deadlineAt: auditExpectations.deadlineAt })
      .from(auditExpectations)
      .where(inArray(auditExpectations.runId, ids)),
    db
      .select({
        runId: domainAcks.runId,
        id: domainAcks.id,
        domain: domainAcks.domain,
        action: domainAcks.action,
        status: domainAcks.status,
        resultId: domainAcks.resultId,
        createdAt: domainAcks.createdAt,
      })
      .from(domainAcks)
      .where(inArray(domainAcks.runId, ids)),
    db
      .select({ runId: traces.runId, id: traces.id, status: traces.status, rolledBack: traces.rolledBack })
      .from(traces)
      .where(inArray(traces.runId, ids)),
    db
      .select({ runId: incidents.runId, id: incidents.id, rolledBack: incidents.rolledBack })
      .from(incidents)
      .where(and(inArray(incidents.runId, ids), inArray(incidents.kind, ['failure', 'none']))),
    db
      .select({ runId: policyEvaluations.runId, id: policyEvaluations.id, rolledBack: policyEvaluations.rolledBack })
      .from(policyEvaluations)
      .where(and(inArray(policyEvaluations.runId, ids), eq(policyEvaluations.kind, 'final'))),
    db.select({ runId: runLogs.runId, id: runLogs.id }).from(runLogs).where(inArray(runLogs.runId, ids)),
    // Only steps written after the run's finalize ack can be drift; the rest need not travel.
    db
      .select({ runId: traceSteps.runId, stepIndex: traceSteps.stepIndex, createdAt: traceSteps.createdAt })
      .from(traceSteps)
      .innerJoin(
        domainAcks,
        and(
          eq(domainAcks.runId, traceSteps.runId),
          eq(domainAcks.domain, 'orchestrator'),
          eq(domainAcks.action, 'finalize_run'),
          eq(domainAcks.status, 'OK'),
        ),
      )
      .where(and(inArray(traceSteps.runId, ids), sql`${traceSteps.createdAt} > ${domainAcks.createdAt}`)),
  ]);

  const byRun = {
    expectations: groupByRun(expectationRows),
    acks: groupByRun(ackRows),
    traces: groupByRun(traceRows),
    incidents: groupByRun(incidentRows),
    evaluations: groupByRun(evaluationRows),
    logs: groupByRun(logRows),
    steps: groupByRun(lateStepRows),
  };
  const records = new Map<string, RunAuditRecords>();
  for (const run of runRows) {
    records.set(run.runId, {
      runId: run.runId,
      tenantId: run.tenantId,
      lastProgressAt: run.updatedAt,
      expectations: (byRun.expectations.get(run.runId) ?? []).map(({ domain, action, deadlineAt }) => ({ domain, action, deadlineAt })),
      acks: (byRun.acks.get(run.runId) ?? []).map(({ runId: _r, ...ack }) => ack),
      evidence: {
        run: { phase: run.phase as RunPhase },
        traces: (byRun.traces.get(run.runId) ?? []).map(({ id, status, rolledBack }) => ({ id, status, rolledBack })),
        outcomeIncidents: (byRun.incidents.get(run.runId) ?? []).map(({ id, rolledBack }) => ({ id, rolledBack })),
        finalEvaluations: (byRun.evaluations.get(run.runId) ?? []).map(({ id, rolledBack }) => ({ id, rolledBack })),
        logRecords: (byRun.logs.get(run.runId) ?? []).map(({ id }) => ({ id })),
        traceSteps: (byRun.steps.get(run.runId) ?? []).map(({ stepIndex, createdAt }) => ({ stepIndex, createdAt })),
      },
    });
  }
  return records;
}

/** The database's clock: deadlines were written with it, so they are compared with it. */
export async function databaseNow(db: DbOrTx): Promise<Date> {
  const [row] = await db.execute<{ now: Date | string }>(sql`select now() as now`);
  return new Date(row!.now);
}

/** When the last reconciliation pass finished, or null before the first. */
export async function lastAuditPass(db: DbOrTx): Promise<{ finishedAt: Date; dueRuns: number } | null> {
  const [row] = await db
    .select({ finishedAt: auditPasses.finishedAt, dueRuns: auditPasses.dueRuns })
    .from(auditPasses)
    .orderBy(desc(auditPasses.finishedAt))
    .limit(1);
  return row ?? null;
}
