import type { Client } from '@temporalio/client';
import { and, desc, eq, isNull, type SQL } from 'drizzle-orm';
import { reconcileRun, type RunLiveness } from '../core/audit-reconciliation';
import { databaseNow, loadAuditRecords } from '../db/audit';
import type { Db } from '../db/client';
import { auditFindings, auditReconciliations, staleRunReports } from '../db/schema';
import { describeRunLiveness } from '../lib/run-liveness';
import { HttpError } from './errors';
import { runNotFound } from './retention';
import { cursorTime, newestFirst, olderThanCursor, pageOf } from './paging';
import type { RouteHandlers } from './router';

export interface AuditRoutesDeps {
  db: Db;
  temporal: Client;
}

/** Temporal's word on a stale run, when it answers within two seconds; the report says when it did not. */
async function livenessWithin(temporal: Client, runId: string, stored: { phase: string; lastProgressAt: Date }): Promise<RunLiveness | undefined> {
  try {
    return await temporal.withDeadline(Date.now() + 2000, () => describeRunLiveness(temporal, runId, stored));
  } catch {
    return undefined;
  }
}

/** Audit answers over HTTP, each scoped to the caller's tenant. */
export function auditHandlers(deps: AuditRoutesDeps) {
  return {
    /** The run's audit, computed now with the reconciler's rules, beside what the last pass stored. */
    runAudit: async ({ caller, params: { id: runId } }, res) => {
      const [stored] = await deps.db
        .select()
        .from(auditReconciliations)
        .where(and(eq(auditReconciliations.runId, runId), eq(auditReconciliations.tenantId, caller.tenantId)));
      if (!stored) throw await runNotFound(deps.db, runId, caller.tenantId);
      const [records, now, findings] = await Promise.all([
        loadAuditRecords(deps.db, [runId]),
        databaseNow(deps.db),
        deps.db.select().from(auditFindings).where(eq(auditFindings.runId, runId)),
      ]);
      const record = records.get(runId)!;
      let report = reconcileRun({ ...record, now });
      // Temporal's word is asked of a stale run, and of one not finalized: a closed or failing workflow makes it stale before its deadline.
      if (report.stale || report.finalizedAt === null) {
        const stored = { phase: record.evidence.run?.phase ?? 'unknown', lastProgressAt: record.lastProgressAt };
        report = reconcileRun({ ...record, now, liveness: await livenessWithin(deps.temporal, runId, stored) });
      }
      res.json({
        ...report,
        lastReconciliation: stored.reconciledAt
          ? {
              at: stored.reconciledAt,
              verdict: stored.verdict,
              passes: stored.passes,
              firstDetectedAt: stored.firstDetectedAt,
              lastSeenAt: stored.lastSeenAt,
              resolvedAt: stored.resolvedAt,
            }
          : null,
        recordedFindings: findings.map(({ tenantId: _t, announced: _a, ...f }) => f),
      });
    },

    /** Open findings of the caller's tenant, newest first. */
    auditFindings: async ({ caller, query: { verdict, check, limit, cursor } }, res) => {
      const filters: (SQL | undefined)[] = [eq(auditFindings.tenantId, caller.tenantId), isNull(auditFindings.resolvedAt)];
      if (check) filters.push(eq(auditFindings.check, check));
      if (verdict) filters.push(eq(auditReconciliations.verdict, verdict));
      if (cursor) filters.push(olderThanCursor(auditFindings.firstDetectedAt, auditFindings.id, cursor));
      const rows = await deps.db
        .select({
          id: auditFindings.id,
          runId: auditFindings.runId,
          check: auditFindings.check,
          severity: auditFindings.severity,
          subjects: auditFindings.subjects,
          summary: auditFindings.summary,
          incidentId: auditFindings.incidentId,
          firstDetectedAt: auditFindings.firstDetectedAt,
          lastSeenAt: auditFindings.lastSeenAt,
          verdict: auditReconciliations.verdict,
          cursorAt: cursorTime(auditFindings.firstDetectedAt),
        })
        .from(auditFindings)
        .innerJoin(auditReconciliations, eq(auditReconciliations.runId, auditFindings.runId))
        .where(and(...filters))
        .orderBy(...newestFirst(auditFindings.firstDetectedAt, auditFindings.id))
        .limit(limit + 1);
      const { page, nextCursor } = pageOf(rows, limit, (row) => row.id);
      res.json({ findings: page, nextCursor });
    },

    /** The latest stale-run report (or the last `limit`), showing only the caller's runs. */
    staleRunReports: async ({ caller: { tenantId }, query: { limit } }, res) => {
      const reports = await deps.db
        .select()
        .from(staleRunReports)
        .orderBy(desc(staleRunReports.generatedAt), desc(staleRunReports.id))
        .limit(limit ?? 1);
      const visible = reports.map((r) => {
        const own = r.runs.filter((run) => run.tenantId === tenantId);
        return { id: r.id, generatedAt: r.generatedAt, staleCount: own.length, runs: own };
      });
      if (limit === undefined) {
        if (!visible[0]) throw new HttpError('REPORT_NOT_FOUND', 'no stale-run report has been written yet');
        res.json(visible[0]);
        return;
      }
      res.json({ reports: visible });
    },
  } satisfies Partial<RouteHandlers>;
}
