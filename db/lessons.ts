import { and, desc, eq, sql, type SQL } from 'drizzle-orm';
import type { NearMissFacts, PlanBudgetStats, ProposalDraft, ToolApprovalStats, ToolDenialStats } from '../core/lessons';
import type { DbOrTx } from './client';
import { lessons, outbox, policyProposals, runControlEvents, runs, toolApprovals, traceSteps } from './schema';

/**
 * The lessons domain's rows: one lesson per run, the tenant's patterns (a grouping of its standing
 * lessons) and the policy changes they propose.
 */

export type LessonRow = typeof lessons.$inferInsert;
export type StoredLesson = typeof lessons.$inferSelect;
export type StoredProposal = typeof policyProposals.$inferSelect;

/** Tool call resolutions that are near misses (core/lessons.ts says what each teaches). */
const NEAR_MISS_RESOLUTIONS = ['not_allowed', 'denied', 'limit', 'outcome_unknown'];

/**
 * What the run's records say that may be a near miss: its refused or unknown tool calls (with what
 * the run had spent by then), the warning threshold it crossed, the pauses whose SLA ran out.
 */
export async function nearMissFacts(tx: DbOrTx, runId: string): Promise<NearMissFacts> {
  const calls = await tx.execute<{ step_index: number; tool: string | null; status: string; spend: number }>(sql`
    select step_index, tool, status, spend from (
      select s.step_index, s.tool, s.status, s.kind,
             sum(s.cost_usd) over (order by s.created_at, s.id rows unbounded preceding)::float8 as spend
        from ${traceSteps} s where s.run_id = ${runId}
    ) s
    where s.kind = 'tool_call' and s.status in (${sql.join(NEAR_MISS_RESOLUTIONS.map((r) => sql`${r}`), sql`, `)})`);
  const [run] = await tx.select({ riskLevel: runs.riskLevel }).from(runs).where(eq(runs.id, runId));
  let budgetWarning: NearMissFacts['budgetWarning'] = null;
  if (run?.riskLevel === 'HIGH') {
    const [event] = await tx.select({ payload: outbox.payload }).from(outbox).where(eq(outbox.dedupeKey, `${runId}:threshold.exceeded`));
    const payload = event?.payload ?? {};
    budgetWarning = {
      stepIndex: typeof payload.stepIndex === 'number' ? payload.stepIndex : null,
      spendUsd: typeof payload.costUsd === 'number' ? payload.costUsd : null,
    };
  }
  const timeouts = await tx
    .select({ detail: runControlEvents.detail })
    .from(runControlEvents)
    .where(and(eq(runControlEvents.runId, runId), eq(runControlEvents.kind, 'pause_timeout')))
    .orderBy(runControlEvents.createdAt);
  return {
    toolCalls: calls.map((c) => ({ stepIndex: c.step_index, tool: c.tool, resolution: c.status, spendUsd: Number(c.spend) })),
    budgetWarning,
    pauseTimeouts: timeouts,
  };
}

/** The run's plan, by step: its skills. */
export async function planSkills(tx: DbOrTx, runId: string): Promise<string[]> {
  const [run] = await tx.select({ plan: runs.plan }).from(runs).where(eq(runs.id, runId));
  return (run?.plan ?? []).map((s) => s.skill);
}

/** Inserts the run's lesson once; a retry returns the first one's id. */
export async function insertLessonOnce(tx: DbOrTx, row: LessonRow): Promise<{ id: string; inserted: boolean }> {
  const [inserted] = await tx.insert(lessons).values(row).onConflictDoNothing().returning({ id: lessons.id });
  if (inserted) return { id: inserted.id, inserted: true };
  const [existing] = await tx.select({ id: lessons.id }).from(lessons).where(eq(lessons.runId, row.runId));
  return { id: existing!.id, inserted: false };
}

/** Marks the run's lesson rolled back (never deleted); its id, or undefined when it had none. */
export async function markLessonRolledBack(tx: DbOrTx, runId: string): Promise<string | undefined> {
  const [row] = await tx.update(lessons).set({ rolledBack: true }).where(eq(lessons.runId, runId)).returning({ id: lessons.id });
  return row?.id;
}

/** The tenant's lessons, newest first; rolled-back ones only when asked. */
export async function listLessons(
  db: DbOrTx,
  tenantId: string,
  query: { limit: number; code?: string; patternKey?: string; runId?: string; includeRolledBack?: boolean; olderThan?: SQL },
): Promise<(StoredLesson & { cursorAt: string })[]> {
  const where = [eq(lessons.tenantId, tenantId)];
  if (!query.includeRolledBack) where.push(eq(lessons.rolledBack, false));
  if (query.code) where.push(eq(lessons.code, query.code));
  if (query.patternKey) where.push(eq(lessons.patternKey, query.patternKey));
  if (query.runId) where.push(eq(lessons.runId, query.runId));
  if (query.olderThan) where.push(query.olderThan);
  return db
    .select({
      ...tableColumns,
      cursorAt: sql<string>`to_char(${lessons.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
    })
    .from(lessons)
    .where(and(...where))
    .orderBy(desc(lessons.createdAt), desc(lessons.id))
    .limit(query.limit + 1);
}

const tableColumns = {
  id: lessons.id,
  runId: lessons.runId,
  tenantId: lessons.tenantId,
  kind: lessons.kind,
  code: lessons.code,
  phase: lessons.phase,
  stepIndex: lessons.stepIndex,
  skill: lessons.skill,
  tool: lessons.tool,
  policyRule: lessons.policyRule,
  spendUsd: lessons.spendUsd,
  detail: lessons.detail,
  patternKey: lessons.patternKey,
  planKey: lessons.planKey,
  policyVersion: lessons.policyVersion,
  observations: lessons.observations,
  rolledBack: lessons.rolledBack,
  createdAt: lessons.createdAt,
};

export interface LessonPattern {
  patternKey: string;
  code: string;
  tool: string | null;
  stepIndex: number | null;
  skill: string | null;
  policyRule: string | null;
  count: number;
  firstSeen: Date;
  lastSeen: Date;
  /** The runs of the newest few lessons, to look at. */
  recentRuns: string[];
}

/** The tenant's standing lessons grouped by pattern, the most frequent first. */
export async function lessonPatterns(db: DbOrTx, tenantId: string, query: { limit: number; minCount: number }): Promise<LessonPattern[]> {
  const rows = await db.execute<{
    pattern_key: string;
    code: string;
    tool: string | null;
    step_index: number | null;
    skill: string | null;
    policy_rule: string | null;
    count: number;
    first_seen: string | Date;
    last_seen: string | Date;
    recent_runs: string[];
  }>(sql`
    select l.pattern_key, min(l.code) as code, min(l.tool) as tool,
           case when count(distinct l.step_index) = 1 then min(l.step_index) end as step_index,
           case when count(distinct l.skill) = 1 then min(l.skill) end as skill,
           min(l.policy_rule) as policy_rule,
           count(*)::int as count, min(l.created_at) as first_seen, max(l.created_at) as last_seen,
           (array_agg(l.run_id order by l.created_at desc))[1:5] as recent_runs
      from ${lessons} l
     where l.tenant_id = ${tenantId} and not l.rolled_back
     group by l.pattern_key
    having count(*) >= ${query.minCount}
     order by count(*) desc, max(l.created_at) desc
     limit ${query.limit}`);
  return rows.map((r) => ({
    patternKey: r.pattern_key,
    code: r.code,
    tool: r.tool,
    stepIndex: r.step_index,
    skill: r.skill,
    policyRule: r.policy_rule,
    count: Number(r.count),
    firstSeen: new Date(r.first_seen),
    lastSeen: new Date(r.last_seen),
    recentRuns: r.recent_runs,
  }));
}

/**
 * Holds the tenant's pattern until the transaction ends: lessons of one pattern recorded at once
 * count one after the other, so the one that crosses a threshold sees every other (each would see
 * only those committed before it otherwise, and none might see the threshold reached).
 */
export async function lockPattern(tx: DbOrTx, tenantId: string, patternKey: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`lessons:${tenantId}:${patternKey}`}, 0))`);
}

/** How often the tenant's runs had `tool` refused (by policy, by a person), and how often a person approved it. */
export async function toolDenialStats(tx: DbOrTx, tenantId: string, patternKey: string, tool: string): Promise<ToolDenialStats> {
  const [counts] = await tx.execute<{ by_policy: number; by_person: number }>(sql`
    select count(*) filter (where detail = 'not_allowed')::int as by_policy, count(*) filter (where detail = 'denied')::int as by_person
      from ${lessons} where tenant_id = ${tenantId} and pattern_key = ${patternKey} and not rolled_back`);
  const approvals = await toolApprovalStats(tx, tenantId, tool);
  return { tool, byPolicy: Number(counts?.by_policy ?? 0), byPerson: Number(counts?.by_person ?? 0), approved: approvals.approved };
}

/** What people decided on the tenant's approvals of `tool`. */
export async function toolApprovalStats(tx: DbOrTx, tenantId: string, tool: string): Promise<ToolApprovalStats> {
  const [row] = await tx.execute<{ approved: number; denied: number; expired: number }>(sql`
    select count(*) filter (where status = 'approved')::int as approved, count(*) filter (where status = 'denied')::int as denied,
           count(*) filter (where status = 'expired')::int as expired
      from ${toolApprovals} where tenant_id = ${tenantId} and tool = ${tool}`);
  return { tool, approved: Number(row?.approved ?? 0), denied: Number(row?.denied ?? 0), expired: Number(row?.expired ?? 0) };
}

/** Finished runs the budget rule looks at: the tenant's latest, so the share follows what the plan does now. */
const PLAN_RUNS_LOOKED_AT = 1000;

/** Of the tenant's latest finished runs of plan `planKey`, how many ended BUDGET_EXCEEDED, and the most one had spent. */
export async function planBudgetStats(tx: DbOrTx, tenantId: string, planKey: string): Promise<PlanBudgetStats> {
  const [row] = await tx.execute<{ runs: number; exceeded: number; highest: number | null }>(sql`
    select count(*)::int as runs, count(*) filter (where r.error_code = 'BUDGET_EXCEEDED')::int as exceeded,
           max(r.cost_usd) filter (where r.error_code = 'BUDGET_EXCEEDED')::float8 as highest
      from (select error_code, cost_usd, plan from ${runs}
             where tenant_id = ${tenantId} and phase in ('COMPLETED', 'FAILED')
             order by created_at desc limit ${PLAN_RUNS_LOOKED_AT}) r
     where (select string_agg(s.value->>'skill', '>' order by s.ordinality) from jsonb_array_elements(r.plan) with ordinality s) = ${planKey}`);
  return { planKey, runs: Number(row?.runs ?? 0), budgetExceeded: Number(row?.exceeded ?? 0), highestSpendUsd: Number(row?.highest ?? 0) };
}

/** Stores a proposal unless the tenant already has one for this pattern and change; the new row, or null. */
export async function insertProposalOnce(tx: DbOrTx, tenantId: string, draft: ProposalDraft, basedOnVersion: number): Promise<StoredProposal | null> {
  const [row] = await tx
    .insert(policyProposals)
    .values({ tenantId, kind: draft.kind, patternKey: draft.patternKey, reason: draft.reason, changes: draft.changes, evidence: draft.evidence, basedOnVersion })
    .onConflictDoNothing()
    .returning();
  return row ?? null;
}

export async function listProposals(db: DbOrTx, tenantId: string, query: { status?: StoredProposal['status']; limit: number }): Promise<StoredProposal[]> {
  const where = [eq(policyProposals.tenantId, tenantId)];
  if (query.status) where.push(eq(policyProposals.status, query.status));
  return db
    .select()
    .from(policyProposals)
    .where(and(...where))
    .orderBy(desc(policyProposals.createdAt), desc(policyProposals.id))
    .limit(query.limit);
}

/** The tenant's proposal; another tenant's is not found, exactly like a missing one. */
export async function proposalOf(db: DbOrTx, tenantId: string, id: string, lock = false): Promise<StoredProposal | undefined> {
  const select = db.select().from(policyProposals).where(and(eq(policyProposals.id, id), eq(policyProposals.tenantId, tenantId)));
  const [row] = lock ? await select.for('update') : await select;
  return row;
}

export async function decideProposal(
  tx: DbOrTx,
  id: string,
  decision: { status: 'accepted' | 'dismissed'; by: string; acceptedVersion?: number | null },
): Promise<StoredProposal> {
  const [row] = await tx
    .update(policyProposals)
    .set({ status: decision.status, decidedBy: decision.by, decidedAt: sql`now()`, acceptedVersion: decision.acceptedVersion ?? null })
    .where(and(eq(policyProposals.id, id), eq(policyProposals.status, 'open')))
    .returning();
  if (!row) throw new Error(`proposal ${id} is not open`);
  return row;
}
