import { and, asc, desc, eq, isNotNull, isNull, lte, or, sql } from 'drizzle-orm';
import { COMPLETE_TRACE, CREATE_INCIDENT, CREATE_LOG_RECORD, EVALUATE_POLICY, FINALIZE_RUN, RECORD_LESSON, RUN_EXPECTATIONS, START_TRACE, type AuditAction } from '../core/audit';
import { actionKey, type AckRecord, type DomainEvidence, type ExpectationRecord } from '../core/audit-reconciliation';
import type { EvidenceBreak } from '../core/evidence';
import { TERMINAL_PHASES, type RunPhase } from '../core/phases';
import type { DbOrTx } from './client';
import { breakOf, type StoredBreak } from './evidence';
import {
  auditExpectations,
  auditPasses,
  auditFindings,
  auditReconciliations,
  domainAcks,
  incidents,
  lessons,
  policyEvaluations,
  runLogs,
  runs,
  stepOutputs,
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
 * The run is over without having finalized (its workflow gave up): whatever it has not done by now
 * it will never do, so every unmet deadline becomes now and the reconciler reports what is missing
 * in its next pass instead of at the run's deadline.
 */
export async function closeRunContract(tx: DbOrTx, runId: string): Promise<void> {
  await tx
    .update(auditExpectations)
    .set({ deadlineAt: sql`least(${auditExpectations.deadlineAt}, now())` })
    .where(and(eq(auditExpectations.runId, runId), isNotNull(auditExpectations.deadlineAt)));
  await tx.update(auditReconciliations).set({ dueAt: sql`now()` }).where(eq(auditReconciliations.runId, runId));
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
  /** Where the run's evidence chain first breaks; looked for once the run is in a final phase (before, its totals still move). */
  tampered: EvidenceBreak | null;
}

interface AuditRecordsRow extends Record<string, unknown> {
  run_id: string;
  tenant_id: string;
  phase: string;
  updated_at: string | Date;
  expectations: [string, string, string | null][] | null;
  acks: [string, string, string, AckRecord['status'], string | null, string][] | null;
  traces: [string, 'running' | 'completed', boolean][] | null;
  incidents: [string, boolean][] | null;
  evaluations: [string, boolean][] | null;
  logs: string[] | null;
  lessons: [string, boolean][] | null;
  late_steps: [number, string][] | null;
  outputs: string[] | null;
  tampered: StoredBreak | null;
}

/**
 * Reads the contract, the acks and each domain's rows for a set of runs, in one query: Postgres
 * assembles each run's records (on its own core) and the reconciler receives one row per run.
 * Only trace steps written after the run's finalize ack can be drift, so only those travel.
 * Runs that do not exist are absent from the map.
 */
export async function loadAuditRecords(db: DbOrTx, runIds: readonly string[]): Promise<Map<string, RunAuditRecords>> {
  if (runIds.length === 0) return new Map();
  const rows = await db.execute<AuditRecordsRow>(sql`
    select r.id as run_id, r.tenant_id, r.phase, r.updated_at,
      (select json_agg(json_build_array(e.domain, e.action, e.deadline_at)) from ${auditExpectations} e where e.run_id = r.id) as expectations,
      (select json_agg(json_build_array(a.id, a.domain, a.action, a.status, a.result_id, a.created_at)) from ${domainAcks} a where a.run_id = r.id) as acks,
      (select json_agg(json_build_array(t.id, t.status, t.rolled_back)) from ${traces} t where t.run_id = r.id) as traces,
      (select json_agg(json_build_array(i.id, i.rolled_back)) from ${incidents} i where i.run_id = r.id and i.kind in ('failure', 'none')) as incidents,
      (select json_agg(json_build_array(p.id, p.rolled_back)) from ${policyEvaluations} p where p.run_id = r.id and p.kind = 'final') as evaluations,
      (select json_agg(l.id) from ${runLogs} l where l.run_id = r.id) as logs,
      (select json_agg(json_build_array(ls.id, ls.rolled_back)) from ${lessons} ls where ls.run_id = r.id) as lessons,
      (select json_agg(o.id) from ${stepOutputs} o where o.run_id = r.id) as outputs,
      (select json_agg(json_build_array(s.step_index, s.created_at)) from ${traceSteps} s
         where s.run_id = r.id and s.created_at > (select min(f.created_at) from ${domainAcks} f
           where f.run_id = r.id and f.domain = ${FINALIZE_RUN.domain} and f.action = ${FINALIZE_RUN.action} and f.status = 'OK')) as late_steps,
      case when r.phase in (${sql.raw(TERMINAL_PHASES.map((p) => `'${p}'`).join(', '))}) then evidence_first_break(r.id) end as tampered
    from ${runs} r
    where r.id in (${sql.join(
      runIds.map((id) => sql`${id}::uuid`),
      sql`, `,
    )})`);
  const records = new Map<string, RunAuditRecords>();
  for (const row of rows) {
    records.set(row.run_id, {
      runId: row.run_id,
      tenantId: row.tenant_id,
      lastProgressAt: new Date(row.updated_at),
      expectations: (row.expectations ?? []).map(([domain, action, deadlineAt]) => ({ domain, action, deadlineAt: deadlineAt ? new Date(deadlineAt) : null })),
      acks: (row.acks ?? []).map(([id, domain, action, status, resultId, createdAt]) => ({ id, domain, action, status, resultId, createdAt: new Date(createdAt) })),
      evidence: {
        run: { phase: row.phase as RunPhase },
        traces: (row.traces ?? []).map(([id, status, rolledBack]) => ({ id, status, rolledBack })),
        outcomeIncidents: (row.incidents ?? []).map(([id, rolledBack]) => ({ id, rolledBack })),
        finalEvaluations: (row.evaluations ?? []).map(([id, rolledBack]) => ({ id, rolledBack })),
        logRecords: (row.logs ?? []).map((id) => ({ id })),
        lessons: (row.lessons ?? []).map(([id, rolledBack]) => ({ id, rolledBack })),
        traceSteps: (row.late_steps ?? []).map(([stepIndex, createdAt]) => ({ stepIndex, createdAt: new Date(createdAt) })),
        outputs: (row.outputs ?? []).map((id) => ({ id })),
      },
      tampered: row.tampered ? breakOf(row.tampered) : null,
    });
  }
  return records;
}

/** A due run of a page, and whether the prefilter found its evidence clean. */
export interface DueRun {
  runId: string;
  tenantId: string;
  /** When its `finalize_run` was acked OK, or null. */
  finalizedAt: Date | null;
  /**
   * Finalized, every expectation met by a standing OK ack whose row stands, no row or ack nobody
   * declared, no late trace step, no open finding: the rules would call it COMPLETE with nothing to
   * report (`cleanRunReport`). False means only "the rules must read it".
   */
  clean: boolean;
}


/**
 * One page of a pass, in one statement: locks up to `limit` runs due at or before `dueBefore` (the
 * transaction's `now()` on a pass's first page), `SKIP LOCKED` so pages and passes never share a
 * run, and says of each whether its evidence is clean. Each of the run's tables is read once through
 * its run index, as `loadAuditRecords` reads it, and folded into a few arrays; the rules' set checks
 * (core/audit-reconciliation.ts) are then comparisons of those arrays, one line each below. Nothing
 * is assembled or sent for a clean run but its row. The checks err one way only: they may call
 * dirty a run the rules would call clean (any rolled-back ack, a trace step after the finalize ack
 * to the microsecond), never the reverse (test/audit-prefilter.test.ts).
 *
 * Everything is per run (lateral subqueries on the run's id), so the plan is a loop over the page's
 * runs whatever the statistics say of how many are due; set-based joins between the page's rows
 * were planned from those statistics and, at 10 runs expected and 500 found, compared them pairwise.
 */
export async function checkDueRuns(
  tx: DbOrTx,
  page: { dueBefore: Date | null; limit: number },
): Promise<{ now: Date; dueBefore: Date; runs: DueRun[] }> {
  if (!Number.isInteger(page.limit) || page.limit < 1) throw new Error(`page limit must be a positive integer, got ${page.limit}`);
  const horizon = page.dueBefore ? sql.raw(`'${page.dueBefore.toISOString()}'::timestamptz`) : sql.raw('now()');
  const key = (alias: string) => sql.raw(`${alias}.domain || '/' || ${alias}.action`);
  const text = (values: readonly string[]) => sql.raw(`array[${values.map((v) => `'${v}'`).join(', ')}]::text[]`);
  const contract = text(RUN_EXPECTATIONS.map(actionKey));
  const terminal = sql.raw(TERMINAL_PHASES.map((p) => `'${p}'`).join(', '));
  const ok = (action: AuditAction) => sql.raw(`a.status = 'OK' and a.domain = '${action.domain}' and a.action = '${action.action}'`);
  const named = (...actions: AuditAction[]) =>
    sql.raw(`a.status <> 'FAILED' and (${actions.map((x) => `(a.domain = '${x.domain}' and a.action = '${x.action}')`).join(' or ')})`);
  const rows = await tx.execute<{ run_id: string; tenant_id: string; finalized_at: string | Date | null; clean: boolean | null; now: string | Date }>(sql`
    with due as materialized (
      select ar.run_id, ar.due_at from ${auditReconciliations} ar
       where ar.due_at is not null and ar.due_at <= ${horizon}
       order by ar.due_at
       limit ${sql.raw(String(page.limit))}
       for update of ar skip locked
    )
    select r.id as run_id, r.tenant_id, a.finalized_at, now() as now, coalesce(
          -- finalized: finalize_run acked OK, naming the run, which is in a final phase
          a.finalized_at is not null and a.finalized_result = r.id and r.phase in (${terminal})
          -- no rollback withdrew an OK (the rules decide what else it means); keys split one way
          and not a.rolled_back and not a.slashed and not e.slashed
          -- invalid: every expectation has a deadline, and the contract declares its six actions
          and not e.undated and e.keys @> ${contract}
          -- missing: every expectation has an OK ack
          and coalesce(a.ok_keys, '{}') @> e.keys
          -- drift: every ack was declared (a step's or a turn's record is evidence, never declared)
          and e.keys @> coalesce(a.declared_keys, '{}')
          -- phantom: each OK ack of the contract names a row of the run that stands
          and a.start_result = any(t.ids)
          and a.complete_result = any(t.completed)
          and a.incident_result = any(i.standing)
          and a.evaluation_result = any(p.standing)
          and a.log_result = any(l.ids)
          and (a.lesson_result is null or a.lesson_result = any(ls.standing))
          -- phantom: each OK ack of a step, turn or call names one of the run's stored outputs
          and coalesce(a.item_results, '{}') <@ coalesce(o.ids, '{}')
          -- drift: every domain row and every output is named by an ack
          and coalesce(t.ids, '{}') <@ coalesce(a.trace_names, '{}')
          and coalesce(i.ids, '{}') <@ coalesce(a.incident_names, '{}')
          and coalesce(p.ids, '{}') <@ coalesce(a.evaluation_names, '{}')
          and coalesce(l.ids, '{}') <@ coalesce(a.log_names, '{}')
          and coalesce(ls.ids, '{}') <@ coalesce(a.lesson_names, '{}')
          and coalesce(o.ids, '{}') <@ coalesce(a.item_results, '{}')
          -- drift: no trace step after the finalize ack
          and not exists (select 1 from ${traceSteps} s where s.run_id = r.id and s.created_at > a.finalized_at)
          -- and no open finding to resolve
          and not exists (select 1 from ${auditFindings} f where f.run_id = r.id and f.resolved_at is null)
          -- tampered: the evidence chain holds (db/evidence.ts), last as the dearest check
          and evidence_first_break(r.id) is null,
        false) as clean
      from due
      join ${runs} r on r.id = due.run_id
      cross join lateral (
        select
          max(a.created_at) filter (where ${ok(FINALIZE_RUN)}) as finalized_at,
          (array_agg(a.result_id) filter (where ${ok(FINALIZE_RUN)}))[1] as finalized_result,
          coalesce(bool_or(a.status = 'ROLLED_BACK'), false) as rolled_back,
          coalesce(bool_or(position('/' in a.domain) > 0), false) as slashed,
          array_agg(${key('a')}) filter (where a.status = 'OK') as ok_keys,
          array_agg(${key('a')}) filter (where a.item is null or a.item = 'tool_call') as declared_keys,
          (array_agg(a.result_id) filter (where ${ok(START_TRACE)}))[1] as start_result,
          (array_agg(a.result_id) filter (where ${ok(COMPLETE_TRACE)}))[1] as complete_result,
          (array_agg(a.result_id) filter (where ${ok(CREATE_INCIDENT)}))[1] as incident_result,
          (array_agg(a.result_id) filter (where ${ok(EVALUATE_POLICY)}))[1] as evaluation_result,
          (array_agg(a.result_id) filter (where ${ok(CREATE_LOG_RECORD)}))[1] as log_result,
          array_agg(a.result_id) filter (where a.status = 'OK' and a.item is not null) as item_results,
          array_agg(a.result_id) filter (where ${named(START_TRACE, COMPLETE_TRACE)}) as trace_names,
          array_agg(a.result_id) filter (where ${named(CREATE_INCIDENT)}) as incident_names,
          array_agg(a.result_id) filter (where ${named(EVALUATE_POLICY)}) as evaluation_names,
          array_agg(a.result_id) filter (where ${named(CREATE_LOG_RECORD)}) as log_names,
          (array_agg(a.result_id) filter (where ${ok(RECORD_LESSON)}))[1] as lesson_result,
          array_agg(a.result_id) filter (where ${named(RECORD_LESSON)}) as lesson_names
        from (
          -- itemActionKind (core/audit.ts): the kind before the action's first colon, for the item domains
          select a.*, case when position(':' in a.action) = 0 then null
                           when a.domain = 'logs' and split_part(a.action, ':', 1) in ('record_step', 'model_turn') then split_part(a.action, ':', 1)
                           when a.domain = 'tools' and split_part(a.action, ':', 1) = 'tool_call' then 'tool_call' end as item
            from ${domainAcks} a where a.run_id = r.id
        ) a
      ) a
      cross join lateral (
        select array_agg(${key('e')}) as keys, coalesce(bool_or(e.deadline_at is null), false) as undated,
               coalesce(bool_or(position('/' in e.domain) > 0), false) as slashed
          from ${auditExpectations} e where e.run_id = r.id
      ) e
      cross join lateral (
        select array_agg(t.id) as ids, array_agg(t.id) filter (where t.status = 'completed' and not t.rolled_back) as completed
          from ${traces} t where t.run_id = r.id
      ) t
      cross join lateral (
        select array_agg(i.id) as ids, array_agg(i.id) filter (where not i.rolled_back) as standing
          from ${incidents} i where i.run_id = r.id and i.kind in ('failure', 'none')
      ) i
      cross join lateral (
        select array_agg(p.id) as ids, array_agg(p.id) filter (where not p.rolled_back) as standing
          from ${policyEvaluations} p where p.run_id = r.id and p.kind = 'final'
      ) p
      cross join lateral (select array_agg(l.id) as ids from ${runLogs} l where l.run_id = r.id) l
      cross join lateral (select array_agg(o.id) as ids from ${stepOutputs} o where o.run_id = r.id) o
      cross join lateral (
        select array_agg(ls.id) as ids, array_agg(ls.id) filter (where not ls.rolled_back) as standing
          from ${lessons} ls where ls.run_id = r.id
      ) ls`);
  const now = rows.length > 0 ? new Date(rows[0]!.now) : await databaseNow(tx);
  return {
    now,
    dueBefore: page.dueBefore ?? now,
    runs: rows.map((row) => ({
      runId: row.run_id,
      tenantId: row.tenant_id,
      finalizedAt: row.finalized_at === null ? null : new Date(row.finalized_at),
      clean: row.clean === true,
    })),
  };
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

/**
 * The run's contract grows as its agent asks for tool calls: each is expected (with the run's own
 * `finalize_run` deadline) before it runs, and its resolution acks it.
 */
export async function declareToolCalls(tx: DbOrTx, runId: string, actions: readonly { domain: string; action: string }[]): Promise<void> {
  if (actions.length === 0) return;
  const deadline = sql`(select e.deadline_at from ${auditExpectations} e where e.run_id = ${runId} and e.domain = ${FINALIZE_RUN.domain} and e.action = ${FINALIZE_RUN.action})`;
  await tx
    .insert(auditExpectations)
    .values(actions.map((a) => ({ runId, domain: a.domain, action: a.action, deadlineAt: deadline })))
    .onConflictDoNothing();
}

/**
 * The run's contract grows by its lesson when the run turns out to have something to teach (its
 * outcome, its near misses): expected with the run's own `finalize_run` deadline.
 */
export async function declareLessonOwed(tx: DbOrTx, runId: string): Promise<void> {
  await declareToolCalls(tx, runId, [RECORD_LESSON]);
}

/** When the newest finished reconciliation pass started, or null before the first. */
export async function lastAuditPassStartedAt(db: DbOrTx): Promise<Date | null> {
  const [row] = await db.select({ startedAt: auditPasses.startedAt }).from(auditPasses).orderBy(desc(auditPasses.finishedAt)).limit(1);
  return row?.startedAt ?? null;
}

/**
 * Runs whose workflow Temporal closed (at `closedAt`) are due now, unless they finalized, are due
 * already, or were reconciled since that close. Returns the runs made due.
 */
export async function markClosedRunsDue(db: DbOrTx, closed: readonly { runId: string; closedAt: Date }[]): Promise<string[]> {
  if (closed.length === 0) return [];
  const rows = await db.execute<{ run_id: string }>(sql`
    update ${auditReconciliations} ar set due_at = now()
    from jsonb_to_recordset(${JSON.stringify(closed.map((c) => ({ run_id: c.runId, closed_at: c.closedAt.toISOString() })))}::jsonb)
      as c(run_id uuid, closed_at timestamptz)
    where ar.run_id = c.run_id
      and ar.finalized_at is null
      and (ar.due_at is null or ar.due_at > now())
      and (ar.reconciled_at is null or ar.reconciled_at < c.closed_at)
    returning ar.run_id`);
  return rows.map((r) => r.run_id);
}

/**
 * Runs in flight that have written nothing for `quietSeconds` (a long step, a pause, or a workflow
 * that cannot progress) are due now, so that a pass asks Temporal whether their workflow still
 * works. A quiet run is read again only after as long again as it had been quiet when last read
 * (at least `quietSeconds`, at most `maxGapSeconds`), least recently read first, at most `limit`
 * per call: a run long paused costs a few reads an hour, not one a pass. Found through the
 * unfinalized-runs index, so this costs what is in flight, not what exists. Returns the runs made due.
 */
export async function markQuietRunsDue(db: DbOrTx, probe: { quietSeconds: number; maxGapSeconds: number; limit: number }): Promise<string[]> {
  const quiet = sql`make_interval(secs => ${probe.quietSeconds})`;
  const maxGap = sql`make_interval(secs => ${probe.maxGapSeconds})`;
  const rows = await db.execute<{ run_id: string }>(sql`
    with quiet as (
      select ar.run_id
        from ${auditReconciliations} ar
        join ${runs} r on r.id = ar.run_id
       where ar.finalized_at is null
         and ar.due_at > now()
         and r.phase not in ('COMPLETED', 'FAILED')
         and r.updated_at <= now() - ${quiet}
         and (ar.reconciled_at is null
              or ar.reconciled_at <= now() - least(greatest(${quiet}, ar.reconciled_at - r.updated_at), ${maxGap}))
       order by ar.reconciled_at asc nulls first, r.updated_at asc
       limit ${probe.limit}
       for update of ar skip locked
    )
    update ${auditReconciliations} ar set due_at = now()
      from quiet
     where ar.run_id = quiet.run_id
    returning ar.run_id`);
  return rows.map((r) => r.run_id);
}

/**
 * Runs the stale-run report lists: unfinalized, and past their `finalize_run` deadline or found
 * STALE before it by a pass; oldest deadline first. Through the unfinalized-runs index: it costs
 * what is unfinalized, not what exists.
 */
export function staleRunCandidates(db: DbOrTx, now: Date, limit: number) {
  return db
    .select({
      runId: auditReconciliations.runId,
      tenantId: auditReconciliations.tenantId,
      phase: runs.phase,
      status: runs.status,
      lastProgressAt: runs.updatedAt,
      deadlineAt: auditExpectations.deadlineAt,
    })
    .from(auditReconciliations)
    .innerJoin(runs, eq(runs.id, auditReconciliations.runId))
    .innerJoin(
      auditExpectations,
      and(eq(auditExpectations.runId, auditReconciliations.runId), eq(auditExpectations.domain, FINALIZE_RUN.domain), eq(auditExpectations.action, FINALIZE_RUN.action)),
    )
    .where(and(isNull(auditReconciliations.finalizedAt), or(lte(auditExpectations.deadlineAt, now), eq(auditReconciliations.verdict, 'STALE'))))
    .orderBy(asc(auditExpectations.deadlineAt))
    .limit(limit);
}
