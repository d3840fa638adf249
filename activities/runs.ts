import { ApplicationFailure } from '@temporalio/common';
import { and, eq, notInArray, sql } from 'drizzle-orm';
import { FINALIZE_RUN } from '../core/audit';
import type { OutboundEvent } from '../core/events';
import type { FailureCode } from '../core/outcome';
import { TERMINAL_PHASES, assertTransition, phaseRank, type RunPhase, type RunStatus } from '../core/phases';
import type { SagaPhase } from '../core/saga';
import { closeRunContract } from '../db/audit';
import type { DbOrTx } from '../db/client';
import { runs } from '../db/schema';
import { recordAck } from '../db/acks';
import type { ActivityDeps } from './deps';
import { writeEvents } from '../db/outbox';

export interface TransitionInput {
  runId: string;
  from: RunPhase;
  to: RunPhase;
  status: RunStatus;
}

export interface FinalizeRunInput extends TransitionInput, CarriedMoves {
  tenantId: string;
  sagaPhase: SagaPhase;
  error?: { code: FailureCode; message: string } | null;
  events?: OutboundEvent[];
}

/** Phase moves the workflow made since its last write, recorded first in the transaction of the write that carries them. */
export interface CarriedMoves {
  transitions?: TransitionInput[];
}

/**
 * Moves the stored run along `moves`, in order; a move already made (a retry after it committed,
 * or a repeat after a lost workflow task) is a no-op. The move to EXECUTING announces
 * `run.started` in the same transaction. Returns the moves that took effect, for the metrics.
 */
export async function recordMoves(tx: DbOrTx, moves: readonly TransitionInput[] = []): Promise<TransitionInput[]> {
  const made: TransitionInput[] = [];
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

async function assertAlreadyAt(tx: DbOrTx, runId: string, phase: RunPhase, options: { orPast?: boolean } = {}): Promise<void> {
  const [current] = await tx.select({ phase: runs.phase }).from(runs).where(eq(runs.id, runId));
  if (!current) throw ApplicationFailure.nonRetryable(`run ${runId} does not exist`, 'RunNotFound');
  const stored = current.phase as RunPhase;
  if (stored !== phase && !(options.orPast && phaseRank(stored) > phaseRank(phase))) {
    throw ApplicationFailure.nonRetryable(`run ${runId} is stored in phase ${current.phase}, cannot move it to ${phase}`, 'IllegalTransition');
  }
}

export function countMoves(metrics: ActivityDeps['metrics'], moves: readonly TransitionInput[]): void {
  for (const move of moves) metrics.phaseTransitions.inc({ from: move.from, to: move.to });
}

export function createRunActivities({ db, metrics }: ActivityDeps) {
  /** Moves the stored run from `from` to `to`, after any moves it carries (see `recordMoves`). */
  async function recordTransition({ transitions = [], ...move }: TransitionInput & CarriedMoves): Promise<void> {
    countMoves(metrics, await db.transaction((tx) => recordMoves(tx, [...transitions, move])));
  }

  /** The run's final status, its `finalize_run` ack and any closing events, in one transaction. */
  async function finalizeRun(input: FinalizeRunInput): Promise<void> {
    assertTransition(input.from, input.to, input.status);
    const { moved, made } = await db.transaction(async (tx) => {
      const made = await recordMoves(tx, input.transitions);
      const rows = await tx
        .update(runs)
        .set({
          phase: input.to,
          status: input.status,
          sagaPhase: input.sagaPhase,
          pauseReason: null,
          pausedAt: null,
          errorCode: input.error?.code ?? null,
          errorMessage: input.error?.message ?? null,
          finishedAt: sql`now()`,
          updatedAt: sql`now()`,
        })
        .where(and(eq(runs.id, input.runId), eq(runs.phase, input.from)))
        .returning({ id: runs.id });
      await recordAck(tx, { runId: input.runId, action: FINALIZE_RUN, status: 'OK', resultId: input.runId });
      await writeEvents(tx, input, input.events ?? []);
      if (rows.length === 0) await assertAlreadyAt(tx, input.runId, input.to);
      return { moved: rows.length > 0, made };
    });
    countMoves(metrics, made);
    if (moved) {
      metrics.phaseTransitions.inc({ from: input.from, to: input.to });
      metrics.runsFinished.inc({ status: input.status });
    }
  }

  /**
   * The last resort of a workflow that could not finalize its run: the stored run says FAILED with
   * why, and its audit contract closes now, so the reconciler reports the missing acks (an incident
   * and an `audit.reconciliation.missing` event) in its next pass. Deliberately no `finalize_run`
   * ack: the run was not finalized, and the audit must say so.
   */
  async function recordUnfinalizedRun(input: { runId: string; error: string }): Promise<void> {
    await db.transaction(async (tx) => {
      await tx
        .update(runs)
        .set({
          phase: 'FAILED',
          status: 'failed',
          errorCode: 'RUN_NOT_FINALIZED' satisfies FailureCode,
          errorMessage: input.error,
          pauseReason: null,
          pausedAt: null,
          finishedAt: sql`now()`,
          updatedAt: sql`now()`,
        })
        .where(and(eq(runs.id, input.runId), notInArray(runs.phase, [...TERMINAL_PHASES])));
      await closeRunContract(tx, input.runId);
    });
    metrics.runsFinished.inc({ status: 'failed' });
  }

  return { recordTransition, finalizeRun, recordUnfinalizedRun };
}
