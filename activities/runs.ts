import { ApplicationFailure } from '@temporalio/common';
import { and, eq, notInArray, sql } from 'drizzle-orm';
import { FINALIZE_RUN } from '../core/audit';
import type { OutboundEvent } from '../core/events';
import type { FailureCode } from '../core/outcome';
import { TERMINAL_PHASES, assertTransition, phaseRank, type RunPhase, type RunStatus } from '../core/phases';
import type { SagaPhase } from '../core/saga';
import { closeRunContract } from '../db/audit';
import { runs } from '../db/schema';
import { recordAck } from './audit';
import type { ActivityDeps } from './deps';
import { writeEvents } from '../db/outbox';

export interface TransitionInput {
  runId: string;
  from: RunPhase;
  to: RunPhase;
  status: RunStatus;
}

export interface FinalizeRunInput extends TransitionInput {
  tenantId: string;
  sagaPhase: SagaPhase;
  error?: { code: FailureCode; message: string } | null;
  events?: OutboundEvent[];
}

export function createRunActivities({ db, metrics }: ActivityDeps) {
  /**
   * Moves the stored run from `from` to `to`; a retry after the move committed is a no-op. The
   * move to EXECUTING announces `run.started` in the same transaction.
   */
  async function recordTransition(input: TransitionInput): Promise<void> {
    assertTransition(input.from, input.to, input.status);
    const moved = await db.transaction(async (tx) => {
      const [row] = await tx
        .update(runs)
        .set({
          phase: input.to,
          status: input.status,
          updatedAt: sql`now()`,
          ...(input.to === 'EXECUTING' ? { startedAt: sql`coalesce(${runs.startedAt}, now())` } : {}),
        })
        .where(and(eq(runs.id, input.runId), eq(runs.phase, input.from)))
        .returning({ tenantId: runs.tenantId, startedAt: runs.startedAt });
      if (row && input.to === 'EXECUTING') {
        await writeEvents(tx, { runId: input.runId, tenantId: row.tenantId }, [
          { topic: 'run.started', dedupeKey: `${input.runId}:run.started`, payload: { startedAt: row.startedAt?.toISOString() ?? null } },
        ]);
      }
      return Boolean(row);
    });
    if (moved) {
      metrics.phaseTransitions.inc({ from: input.from, to: input.to });
      return;
    }
    // A repeat: the workflow task that recorded this write was lost with its worker, and the run
    // has moved on since (its later writes are repeated as well, and are no-ops too).
    await assertAlreadyAt(input.runId, input.to, { orPast: true });
  }

  async function assertAlreadyAt(runId: string, phase: RunPhase, options: { orPast?: boolean } = {}): Promise<void> {
    const [current] = await db.select({ phase: runs.phase }).from(runs).where(eq(runs.id, runId));
    if (!current) throw ApplicationFailure.nonRetryable(`run ${runId} does not exist`, 'RunNotFound');
    const stored = current.phase as RunPhase;
    if (stored !== phase && !(options.orPast && phaseRank(stored) > phaseRank(phase))) {
      throw ApplicationFailure.nonRetryable(
        `run ${runId} is stored in phase ${current.phase}, cannot move it to ${phase}`,
        'IllegalTransition',
      );
    }
  }

  /** The run's final status, its `finalize_run` ack and any closing events, in one transaction. */
  async function finalizeRun(input: FinalizeRunInput): Promise<void> {
    assertTransition(input.from, input.to, input.status);
    const moved = await db.transaction(async (tx) => {
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
      return rows.length > 0;
    });
    if (moved) {
      metrics.phaseTransitions.inc({ from: input.from, to: input.to });
      metrics.runsFinished.inc({ status: input.status });
      return;
    }
    await assertAlreadyAt(input.runId, input.to);
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
