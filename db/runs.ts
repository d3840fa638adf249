import { ApplicationFailure } from '@temporalio/common';
import { and, asc, eq, inArray, isNotNull, isNull, lt, ne, notInArray, or, sql, type SQL } from 'drizzle-orm';
import type { FailureCode } from '../core/outcome';
import { TERMINAL_PHASES, assertTransition, phaseRank, type RunPhase, type RunStatus } from '../core/phases';
import type { PlanStep } from '../core/plan';
import type { SagaPhase } from '../core/saga';
import type { DbOrTx } from './client';
import { writeEvents } from './outbox';
import { runs } from './schema';

/**
 * The `runs` row, one owner: every read and write of a run's own record is here, and nothing
 * outside `db/` imports the table (an ESLint rule keeps it so). Each write is keyed or guarded by
 * the phase it expects, so a write repeated after a lost workflow task is a no-op.
 */

export type StoredRun = typeof runs.$inferSelect;
export type NewRun = typeof runs.$inferInsert;

// ---- created at submit, started by the API or the starter ----

/** Inserts a submitted run; null when the tenant already has a run under this Idempotency-Key. */
export async function insertRun(tx: DbOrTx, run: NewRun): Promise<StoredRun | null> {
  const [row] = await tx
    .insert(runs)
    .values(run)
    .onConflictDoNothing({ target: [runs.tenantId, runs.idempotencyKey], where: sql`${runs.idempotencyKey} is not null` })
    .returning();
  return row ?? null;
}

export async function runByIdempotencyKey(db: DbOrTx, tenantId: string, idempotencyKey: string): Promise<StoredRun | undefined> {
  const [row] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.tenantId, tenantId), eq(runs.idempotencyKey, idempotencyKey)));
  return row;
}

/** Temporal accepted the run's workflow. */
export async function markWorkflowStarted(db: DbOrTx, runId: string): Promise<void> {
  await db
    .update(runs)
    .set({ workflowStartedAt: sql`coalesce(${runs.workflowStartedAt}, now())` })
    .where(eq(runs.id, runId));
}

/** Accepted runs of this task queue whose workflow was never confirmed started, older than `graceMs`, oldest first. */
export function unstartedRuns(db: DbOrTx, options: { taskQueue: string; graceMs: number; limit: number }): Promise<StoredRun[]> {
  return db
    .select()
    .from(runs)
    .where(
      and(
        isNull(runs.workflowStartedAt),
        eq(runs.phase, 'CREATED'),
        // Runs recorded before the starter existed have no queue; a retried submit starts those.
        eq(runs.taskQueue, options.taskQueue),
        lt(runs.createdAt, sql`now() - make_interval(secs => ${options.graceMs / 1000})`),
      ),
    )
    .orderBy(asc(runs.createdAt))
    .limit(options.limit);
}

// ---- read by the API, tenant-scoped (another tenant's run is not found, like a missing one) ----

export async function runOfTenant(db: DbOrTx, runId: string, tenantId: string): Promise<StoredRun | undefined> {
  const [row] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.id, runId), eq(runs.tenantId, tenantId)));
  return row;
}

export interface RunListFilter {
  tenantId: string;
  status?: string;
  phase?: string;
  /** Rows older than the cursor's (see `api/paging.ts`). */
  olderThan?: (at: typeof runs.createdAt, id: typeof runs.id) => SQL;
  limit: number;
  orderBy: (at: typeof runs.createdAt, id: typeof runs.id) => SQL[];
  cursorTime: (at: typeof runs.createdAt) => SQL<string>;
}

/** A page of the tenant's runs, newest first, as the list shows them. */
export function listRuns(db: DbOrTx, filter: RunListFilter) {
  const filters: (SQL | undefined)[] = [eq(runs.tenantId, filter.tenantId)];
  if (filter.status) filters.push(eq(runs.status, filter.status));
  if (filter.phase) filters.push(eq(runs.phase, filter.phase));
  if (filter.olderThan) filters.push(filter.olderThan(runs.createdAt, runs.id));
  return db
    .select({
      runId: runs.id,
      phase: runs.phase,
      status: runs.status,
      costUsd: runs.costUsd,
      stepsCompleted: runs.stepsCompleted,
      authorizationDecision: runs.authorizationDecision,
      errorCode: runs.errorCode,
      createdAt: runs.createdAt,
      finishedAt: runs.finishedAt,
      cursorAt: filter.cursorTime(runs.createdAt),
    })
    .from(runs)
    .where(and(...filters))
    .orderBy(...filter.orderBy(runs.createdAt, runs.id))
    .limit(filter.limit);
}

/** The tenant's runs a change must reach: live ones with a workflow, or only those paused. */
export async function liveRunsOfTenant(
  db: DbOrTx,
  tenantId: string,
  options: {
    pausedOnly: boolean;
    /**
     * With `pausedOnly`, also the runs these runs' ids name (the runs a tenant-wide pause reached:
     * one that accepted it mid-step is not paused yet, and must hear the resume all the same).
     */
    orAmong?: SQL;
  },
): Promise<{ id: string }[]> {
  return db
    .select({ id: runs.id })
    .from(runs)
    .where(
      and(
        eq(runs.tenantId, tenantId),
        notInArray(runs.phase, [...TERMINAL_PHASES]),
        isNotNull(runs.workflowStartedAt),
        options.pausedOnly ? (options.orAmong ? or(isNotNull(runs.pausedAt), inArray(runs.id, options.orAmong)) : isNotNull(runs.pausedAt)) : undefined,
      ),
    );
}

/** The plan a run was submitted with, or undefined for no such run. */
export async function runPlan(db: DbOrTx, runId: string): Promise<PlanStep[] | undefined> {
  const [row] = await db.select({ plan: runs.plan }).from(runs).where(eq(runs.id, runId));
  return row?.plan;
}

/** The policy version the run was authorized under. */
export async function submittedPolicyVersion(db: DbOrTx, runId: string): Promise<number | undefined> {
  const [row] = await db.select({ policyVersion: runs.policyVersion }).from(runs).where(eq(runs.id, runId));
  return row?.policyVersion;
}

// ---- moved by its workflow ----

export interface PhaseMove {
  runId: string;
  from: RunPhase;
  to: RunPhase;
  status: RunStatus;
}

/**
 * Moves the stored run along `moves`, in order; a move already made (a retry after it committed,
 * or a repeat after a lost workflow task) is a no-op. The move to EXECUTING announces
 * `run.started` in the same transaction. Returns the moves that took effect, for the metrics.
 */
export async function recordMoves(tx: DbOrTx, moves: readonly PhaseMove[] = []): Promise<PhaseMove[]> {
  const made: PhaseMove[] = [];
  for (const move of moves) {
    assertTransition(move.from, move.to, move.status);
    const [row] = await tx
      .update(runs)
      .set({
        phase: move.to,
        status: move.status,
        updatedAt: sql`now()`,
        ...(move.to === 'EXECUTING' ? { startedAt: sql`coalesce(${runs.startedAt}, now())` } : {}),
      })
      .where(and(eq(runs.id, move.runId), eq(runs.phase, move.from)))
      .returning({ tenantId: runs.tenantId, startedAt: runs.startedAt });
    if (!row) {
      // A repeat: the workflow task that recorded this write was lost with its worker, and the run
      // has moved on since (its later writes are repeated as well, and are no-ops too).
      await assertAlreadyAt(tx, move.runId, move.to, { orPast: true });
      continue;
    }
    made.push(move);
    if (move.to === 'EXECUTING') {
      await writeEvents(tx, { runId: move.runId, tenantId: row.tenantId }, [
        { topic: 'run.started', dedupeKey: `${move.runId}:run.started`, payload: { startedAt: row.startedAt?.toISOString() ?? null } },
      ]);
    }
  }
  return made;
}

export async function assertAlreadyAt(tx: DbOrTx, runId: string, phase: RunPhase, options: { orPast?: boolean } = {}): Promise<void> {
  const [current] = await tx.select({ phase: runs.phase }).from(runs).where(eq(runs.id, runId));
  if (!current) throw ApplicationFailure.nonRetryable(`run ${runId} does not exist`, 'RunNotFound');
  const stored = current.phase as RunPhase;
  if (stored !== phase && !(options.orPast && phaseRank(stored) > phaseRank(phase))) {
    throw ApplicationFailure.nonRetryable(`run ${runId} is stored in phase ${current.phase}, cannot move it to ${phase}`, 'IllegalTransition');
  }
}

/** The terminal move with the run's ending; false when an earlier attempt made it (the run is checked to be there). */
export async function recordEnding(
  tx: DbOrTx,
  ending: PhaseMove & { sagaPhase: SagaPhase; error: { code: FailureCode; message: string } | null },
): Promise<boolean> {
  const rows = await tx
    .update(runs)
    .set({
      phase: ending.to,
      status: ending.status,
      sagaPhase: ending.sagaPhase,
      pauseReason: null,
      pausedAt: null,
      errorCode: ending.error?.code ?? null,
      errorMessage: ending.error?.message ?? null,
      finishedAt: sql`now()`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(runs.id, ending.runId), eq(runs.phase, ending.from)))
    .returning({ id: runs.id });
  if (rows.length === 0) await assertAlreadyAt(tx, ending.runId, ending.to);
  return rows.length > 0;
}

/** A run its workflow could not finalize: FAILED with why, unless it already ended. */
export async function recordUnfinalized(tx: DbOrTx, runId: string, error: string): Promise<void> {
  await tx
    .update(runs)
    .set({
      phase: 'FAILED',
      status: 'failed',
      errorCode: 'RUN_NOT_FINALIZED' satisfies FailureCode,
      errorMessage: error,
      pauseReason: null,
      pausedAt: null,
      finishedAt: sql`now()`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(runs.id, runId), notInArray(runs.phase, [...TERMINAL_PHASES])));
}

/** The observability guard's mark: the trace could not start (and in DEGRADED mode the run goes on degraded). */
export async function recordObservabilityError(tx: DbOrTx, runId: string, error: string, degraded: boolean): Promise<void> {
  await tx
    .update(runs)
    .set({ observabilityError: error, ...(degraded ? { observabilityStatus: 'DEGRADED' } : {}), updatedAt: sql`now()` })
    .where(eq(runs.id, runId));
}

/** Totals as runs started before steps recorded themselves write them: absolute, and never backwards. */
export async function setProgress(tx: DbOrTx, runId: string, progress: { costUsd: number; tokens: number; stepsCompleted: number }): Promise<void> {
  await tx
    .update(runs)
    .set({ ...progress, updatedAt: sql`now()` })
    .where(and(eq(runs.id, runId), sql`${runs.stepsCompleted} <= ${progress.stepsCompleted}`));
}

export interface ProgressDelta {
  costUsd: number;
  tokens: number;
  /** The plan steps now done (never moves back). */
  stepsCompleted?: number;
  turns?: number;
  toolCalls?: number;
}

/** Adds one governed step to the stored run's totals; returns what it has spent now. */
export async function addProgress(tx: DbOrTx, runId: string, delta: ProgressDelta): Promise<{ costUsd: number } & RunAttribution> {
  const [row] = await tx
    .update(runs)
    .set({
      // Micro-dollars, as the workflow sums them (`addUsd`), so both agree to the last digit.
      costUsd: sql`round((${runs.costUsd} + ${delta.costUsd})::numeric, 6)::float8`,
      tokens: sql`${runs.tokens} + ${delta.tokens}`,
      ...(delta.stepsCompleted !== undefined ? { stepsCompleted: sql`greatest(${runs.stepsCompleted}, ${delta.stepsCompleted})` } : {}),
      ...(delta.turns ? { turns: sql`${runs.turns} + ${delta.turns}` } : {}),
      ...(delta.toolCalls ? { toolCalls: sql`${runs.toolCalls} + ${delta.toolCalls}` } : {}),
      updatedAt: sql`now()`,
    })
    .where(eq(runs.id, runId))
    .returning({ costUsd: runs.costUsd, tenantId: runs.tenantId, apiKeyId: runs.apiKeyId });
  return { costUsd: row?.costUsd ?? 0, tenantId: row?.tenantId ?? null, apiKeyId: row?.apiKeyId ?? null };
}

/** Whose spend a run's records are: its tenant and the API key that submitted it (cost rollups, `db/costs.ts`). */
export interface RunAttribution {
  tenantId: string | null;
  apiKeyId: string | null;
}

/** The run's tenant and submitting key; nulls when there is no such run. */
export async function runAttribution(db: DbOrTx, runId: string): Promise<RunAttribution> {
  const [row] = await db.select({ tenantId: runs.tenantId, apiKeyId: runs.apiKeyId }).from(runs).where(eq(runs.id, runId));
  return { tenantId: row?.tenantId ?? null, apiKeyId: row?.apiKeyId ?? null };
}

/** Flags the run HIGH risk; true when this call flagged it. */
export async function flagHighRisk(tx: DbOrTx, runId: string): Promise<boolean> {
  const flagged = await tx
    .update(runs)
    .set({ riskLevel: 'HIGH' })
    .where(and(eq(runs.id, runId), ne(runs.riskLevel, 'HIGH')))
    .returning({ id: runs.id });
  return flagged.length > 0;
}

/** The pause the stored run holds (its reason, and how long it has held, by the database's clock); null when none. */
export async function heldPause(tx: DbOrTx, runId: string): Promise<{ reason: string; heldSeconds: number } | null> {
  const [row] = await tx
    .select({ reason: runs.pauseReason, heldSeconds: sql<number | null>`extract(epoch from now() - ${runs.pausedAt})::float8` })
    .from(runs)
    .where(eq(runs.id, runId));
  return row?.reason && row.heldSeconds !== null ? { reason: row.reason, heldSeconds: Math.max(0, Number(row.heldSeconds)) } : null;
}

/** The run waits in a pause (its reason), or goes on (null); true when the run exists. */
export async function setPaused(tx: DbOrTx, runId: string, reason: string | null): Promise<boolean> {
  const [row] = await tx
    .update(runs)
    .set(reason === null ? { pauseReason: null, pausedAt: null, updatedAt: sql`now()` } : { pauseReason: reason, pausedAt: sql`now()`, updatedAt: sql`now()` })
    .where(eq(runs.id, runId))
    .returning({ id: runs.id });
  return Boolean(row);
}
