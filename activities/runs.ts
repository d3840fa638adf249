import type { CarriedMoves, FinalizeRunInput } from '../core/contracts';
import { FINALIZE_RUN } from '../core/audit';
import { assertTransition } from '../core/phases';
import { closeRunContract } from '../db/audit';
import { heldPause, recordEnding, recordMoves, recordUnfinalized, type PhaseMove as TransitionInput } from '../db/runs';
import { recordAck } from '../db/acks';
import type { PauseEnding } from '../lib/metrics';
import type { ActivityDeps } from './deps';
import { writeEvents } from '../db/outbox';

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
    const { moved, made, pause } = await db.transaction(async (tx) => {
      const made = await recordMoves(tx, input.transitions);
      // A run that ends while paused ends its pause: the ending clears it, so read it first.
      const pause = await heldPause(tx, input.runId);
      const moved = await recordEnding(tx, { runId: input.runId, from: input.from, to: input.to, status: input.status, sagaPhase: input.sagaPhase, error: input.error ?? null });
      await recordAck(tx, { runId: input.runId, action: FINALIZE_RUN, status: 'OK', resultId: input.runId });
      await writeEvents(tx, input, input.events ?? []);
      return { moved, made, pause };
    });
    countMoves(metrics, made);
    if (moved) {
      metrics.phaseTransitions.inc({ from: input.from, to: input.to });
      metrics.runsFinished.inc({ status: input.status });
      if (pause) {
        // Its SLA ran out under TERMINATE (or ESCALATE, past the escalation), or it was stopped or cancelled.
        const endedBy: PauseEnding = input.error?.code === 'PAUSE_TIMEOUT' ? 'terminated' : 'stopped';
        metrics.pauseDuration.observe({ reason: pause.reason, ended_by: endedBy }, pause.heldSeconds);
      }
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
      await recordUnfinalized(tx, input.runId, input.error);
      await closeRunContract(tx, input.runId);
    });
    metrics.runsFinished.inc({ status: 'failed' });
  }

  return { recordTransition, finalizeRun, recordUnfinalizedRun };
}
