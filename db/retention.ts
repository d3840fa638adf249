import { and, eq, sql, type SQL } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import { DEFAULT_RETENTION, type RetentionSettings } from '../core/retention';
import type { DbOrTx } from './client';
import {
  alerts,
  auditExpectations,
  auditFindings,
  auditReconciliations,
  controlPushDeliveries,
  evidenceLinks,
  controlPushes,
  domainAcks,
  incidents,
  lessons,
  outbox,
  policyEvaluations,
  runControlEvents,
  runLogs,
  runs,
  runTombstones,
  stepOutputs,
  tenantRetention,
  tenants as tenantsTable,
  toolApprovals,
  traceSteps,
  traces,
} from './schema';

/** The tenant's retention settings, or the defaults when it never set any. */
export async function tenantRetentionSettings(db: DbOrTx, tenantId: string): Promise<RetentionSettings> {
  const [row] = await db.select().from(tenantRetention).where(eq(tenantRetention.tenantId, tenantId));
  if (!row) return { ...DEFAULT_RETENTION };
  return {
    runsDays: row.runsDays,
    outboxHours: row.outboxHours,
    controlPushesHours: row.controlPushesHours,
    alertsDays: row.alertsDays,
    exportBeforePrune: row.exportBeforePrune,
  };
}

export async function saveRetentionSettings(db: DbOrTx, tenantId: string, settings: RetentionSettings, updatedBy: string): Promise<void> {
  await db
    .insert(tenantRetention)
    .values({ tenantId, ...settings, updatedBy })
    .onConflictDoUpdate({ target: tenantRetention.tenantId, set: { ...settings, updatedBy, updatedAt: new Date() } });
}

/**
 * Every table that holds a run's records, in the order they are removed: the audit state first (a
 * row the evidence triggers of migration 0004 would otherwise mark due as each piece of evidence
 * goes), the findings before the incidents they point at, the run itself last. A table added for
 * runs must be added here, or pruning its runs fails on the foreign key.
 */
export const RUN_RECORD_TABLES: readonly { name: string; table: PgTable; runId: SQL }[] = [
  { name: 'audit_reconciliations', table: auditReconciliations, runId: sql`run_id` },
  { name: 'audit_findings', table: auditFindings, runId: sql`run_id` },
  { name: 'audit_expectations', table: auditExpectations, runId: sql`run_id` },
  { name: 'domain_acks', table: domainAcks, runId: sql`run_id` },
  { name: 'incidents', table: incidents, runId: sql`run_id` },
  { name: 'lessons', table: lessons, runId: sql`run_id` },
  { name: 'policy_evaluations', table: policyEvaluations, runId: sql`run_id` },
  { name: 'run_logs', table: runLogs, runId: sql`run_id` },
  { name: 'run_control_events', table: runControlEvents, runId: sql`run_id` },
  { name: 'tool_approvals', table: toolApprovals, runId: sql`run_id` },
  { name: 'step_outputs', table: stepOutputs, runId: sql`run_id` },
  { name: 'trace_steps', table: traceSteps, runId: sql`run_id` },
  { name: 'traces', table: traces, runId: sql`run_id` },
  { name: 'control_push_deliveries', table: controlPushDeliveries, runId: sql`run_id` },
  // The run's own chain goes with its records; its link in the tenant's chain stays (a few hundred
  // bytes), so the chain of the tenant's later runs still verifies from one run to the next.
  { name: 'evidence_links', table: evidenceLinks, runId: sql`run_id` },
  { name: 'runs', table: runs, runId: sql`id` },
];

function uuidArray(ids: readonly string[]): SQL {
  return sql`${`{${ids.join(',')}}`}::uuid[]`;
}

export interface ExpiredRun {
  runId: string;
  tenantId: string;
  phase: string;
  createdAt: Date;
  finishedAt: Date;
  exportBeforePrune: boolean;
  auditVerdict: string | null;
}

/**
 * Finished runs past their tenant's `runsDays` (both created and finished before it), oldest first
 * per tenant, locked for this transaction (a concurrent pruner skips them). A run that never
 * finished is never pruned: the audit loop reports it stale instead. When `canExport` is false a
 * tenant that asked for an export keeps its runs until an export folder is configured.
 */
export async function lockExpiredRuns(tx: DbOrTx, options: { limit: number; canExport: boolean; asOf?: Date }): Promise<ExpiredRun[]> {
  // The pass's clock: the database's, unless the caller names the moment ages are counted from.
  const at = options.asOf ? sql`${options.asOf.toISOString()}::timestamptz` : sql`now()`;
  const rows = await tx.execute<{
    run_id: string;
    tenant_id: string;
    phase: string;
    created_at: string;
    finished_at: string;
    export_before_prune: boolean;
    audit_verdict: string | null;
  }>(sql`
    with candidates as (
      select x.id, coalesce(tr.export_before_prune, ${DEFAULT_RETENTION.exportBeforePrune}) as export_before_prune
        from ${tenantsTable} t
        left join ${tenantRetention} tr on tr.tenant_id = t.id
        cross join lateral (
          select r.id from ${runs} r
           where r.tenant_id = t.id
             and r.created_at < ${at} - make_interval(days => coalesce(tr.runs_days, ${DEFAULT_RETENTION.runsDays}))
             and r.finished_at < ${at} - make_interval(days => coalesce(tr.runs_days, ${DEFAULT_RETENTION.runsDays}))
           order by r.created_at
           limit ${options.limit}
        ) x
       where ${options.canExport} or not coalesce(tr.export_before_prune, ${DEFAULT_RETENTION.exportBeforePrune})
       limit ${options.limit}
    )
    select r.id as run_id, r.tenant_id, r.phase, r.created_at, r.finished_at, c.export_before_prune, ar.verdict as audit_verdict
      from ${runs} r
      join candidates c on c.id = r.id
      left join ${auditReconciliations} ar on ar.run_id = r.id
     order by r.created_at
       for update of r skip locked`);
  return rows.map((r) => ({
    runId: r.run_id,
    tenantId: r.tenant_id,
    phase: r.phase,
    createdAt: new Date(r.created_at),
    finishedAt: new Date(r.finished_at),
    exportBeforePrune: r.export_before_prune,
    auditVerdict: r.audit_verdict,
  }));
}

export interface Tombstone {
  run: ExpiredRun;
  exportLocation: string | null;
  exportSha256: string | null;
}

/**
 * Removes the runs and every record of them, and leaves a tombstone for each, in the caller's
 * transaction (the one that locked them). Returns the rows removed per run, all tables together.
 */
export async function pruneRuns(tx: DbOrTx, tombstones: readonly Tombstone[]): Promise<number> {
  if (tombstones.length === 0) return 0;
  const ids = tombstones.map((t) => t.run.runId);
  const perRun = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const { table, runId } of RUN_RECORD_TABLES) {
    const counted = await tx.execute<{ run_id: string; n: number }>(sql`
      with gone as (delete from ${table} where ${runId} = any(${uuidArray(ids)}) returning ${runId} as run_id)
      select run_id, count(*)::int as n from gone group by run_id`);
    for (const { run_id, n } of counted) perRun.set(run_id, (perRun.get(run_id) ?? 0) + n);
  }
  await tx
    .insert(runTombstones)
    .values(
      tombstones.map(({ run, exportLocation, exportSha256 }) => ({
        runId: run.runId,
        tenantId: run.tenantId,
        phase: run.phase,
        runCreatedAt: run.createdAt,
        runFinishedAt: run.finishedAt,
        auditVerdict: run.auditVerdict as (typeof runTombstones.$inferInsert)['auditVerdict'],
        records: perRun.get(run.runId) ?? 0,
        exportLocation,
        exportSha256,
      })),
    )
    .onConflictDoNothing();
  return [...perRun.values()].reduce((a, b) => a + b, 0);
}

/**
 * Up to `limit` rows of one kind past their tenant's setting, oldest first per tenant, removed in
 * one statement. Rows of no tenant (system events and alerts) are kept as long as the default.
 */
async function pruneAged(
  tx: DbOrTx,
  options: {
    table: PgTable;
    /** The row's time column, its tenant column and what makes it done with. */
    at: SQL;
    done: SQL;
    /** The tenant_retention column and its default, in hours. */
    hours: SQL;
    defaultHours: number;
    limit: number;
    key: SQL;
  },
): Promise<number> {
  const { table, at, done, hours, defaultHours, limit, key } = options;
  const [row] = await tx.execute<{ n: number }>(sql`
    with victims as (
      (select x.k from ${tenantsTable} t
         left join ${tenantRetention} tr on tr.tenant_id = t.id
         cross join lateral (
           select ${key} as k from ${table}
            where tenant_id = t.id and ${done} and ${at} < now() - make_interval(hours => coalesce(${hours}, ${defaultHours}))
            order by ${at}
            limit ${limit}
         ) x
        limit ${limit})
      union all
      (select ${key} from ${table}
        where tenant_id is null and ${done} and ${at} < now() - make_interval(hours => ${defaultHours})
        order by ${at}
        limit ${limit})
    ),
    gone as (delete from ${table} where ${key} in (select k from victims) returning 1)
    select count(*)::int as n from gone`);
  return row?.n ?? 0;
}

/** Published or retracted outbox rows past the tenant's `outboxHours`; at most `limit` per tenant kind. */
export function pruneOutbox(tx: DbOrTx, limit: number): Promise<number> {
  return pruneAged(tx, {
    table: outbox,
    key: sql`id`,
    at: sql`created_at`,
    done: sql`(published_at is not null or retracted_at is not null)`,
    hours: sql`tr.outbox_hours`,
    defaultHours: DEFAULT_RETENTION.outboxHours,
    limit,
  });
}

/** Delivered control pushes past the tenant's `controlPushesHours`, their delivery rows with them (cascade). */
export function pruneControlPushes(tx: DbOrTx, limit: number): Promise<number> {
  return pruneAged(tx, {
    table: controlPushes,
    key: sql`id`,
    at: sql`pushed_at`,
    done: sql`pushed_at is not null`,
    hours: sql`tr.control_pushes_hours`,
    defaultHours: DEFAULT_RETENTION.controlPushesHours,
    limit,
  });
}

/** Sent or suppressed alerts past the tenant's `alertsDays`; one still pending delivery is kept. */
export function pruneAlerts(tx: DbOrTx, limit: number): Promise<number> {
  return pruneAged(tx, {
    table: alerts,
    key: sql`id`,
    at: sql`created_at`,
    done: sql`status <> 'pending'`,
    hours: sql`tr.alerts_days * 24`,
    defaultHours: DEFAULT_RETENTION.alertsDays * 24,
    limit,
  });
}

/** The run's tombstone, when the tenant's retention removed it; another tenant's run has none. */
export async function tombstoneOfTenant(db: DbOrTx, runId: string, tenantId: string) {
  const [row] = await db
    .select()
    .from(runTombstones)
    .where(and(eq(runTombstones.runId, runId), eq(runTombstones.tenantId, tenantId)));
  return row ?? null;
}
