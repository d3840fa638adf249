import type { StepResult } from '../core/contracts';
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { COMPLETE_TRACE, START_TRACE } from '../core/audit';
import { costMetricModel, costMetricSkill } from '../core/costs';
import { SAGA_EVENT_TOPICS, sagaEventKey, type OutboundEvent } from '../core/events';
import type { ObservabilityMode } from '../core/policy';
import { addToCostRollup } from '../db/costs';
import { recordObservabilityError, runAttribution, setProgress } from '../db/runs';
import { outbox, traceSteps, traces } from '../db/schema';
import { flagThresholdCrossed } from '../db/steps';
import { recordAck } from '../db/acks';
import { ackRollback, type CompensationInput } from './compensation';
import type { ActivityDeps } from './deps';
import { writeEvents } from '../db/outbox';

export interface RunProgress {
  costUsd: number;
  tokens: number;
  stepsCompleted: number;
}

export function createTraceActivities({ db, metrics }: ActivityDeps) {
  async function startTrace(input: { runId: string; tenantId: string }): Promise<{ traceId: string }> {
    return db.transaction(async (tx) => {
      const inserted = await tx
        .insert(traces)
        .values({ runId: input.runId, tenantId: input.tenantId, status: 'running' })
        .onConflictDoNothing()
        .returning({ id: traces.id });
      const traceId =
        inserted[0]?.id ??
        (await tx.select({ id: traces.id }).from(traces).where(eq(traces.runId, input.runId)))[0]!.id;
      await recordAck(tx, { runId: input.runId, action: START_TRACE, status: 'OK', resultId: traceId });
      if (inserted.length) {
        await writeEvents(tx, input, [{ topic: 'trace.started', dedupeKey: `${input.runId}:trace.started`, payload: { traceId } }]);
      }
      metrics.domainWrites.inc({ domain: 'logs', action: 'start_trace', result: inserted.length ? 'inserted' : 'existing' });
      return { traceId };
    });
  }

  /**
   * The observability guard's record of a trace that could not start: a FAILED ack in every mode
   * (so the reconciler sees it) and, in DEGRADED mode, the run marked degraded with the error.
   */
  async function recordTraceStartFailure(input: { runId: string; mode: ObservabilityMode; error: string }): Promise<void> {
    await db.transaction(async (tx) => {
      await recordAck(tx, {
        runId: input.runId,
        action: START_TRACE,
        status: 'FAILED',
        error: input.error,
        metadata: { observabilityMode: input.mode },
      });
      // Every mode keeps the error on the run; only DEGRADED runs on without a trace by design.
      await recordObservabilityError(tx, input.runId, input.error, input.mode === 'DEGRADED');
    });
  }

  /** One step's trace row and the run's running totals, together. */
  async function recordTraceStep(input: {
    runId: string;
    stepIndex: number;
    skill: string;
    result: StepResult;
    progress: RunProgress;
    /** Spend at which the run is flagged HIGH risk and `threshold.exceeded` recorded, once. */
    warningAtUsd?: number | null;
    tenantId?: string;
  }): Promise<{ thresholdCrossed: boolean }> {
    return db.transaction(async (tx) => {
      const inserted = await tx
        .insert(traceSteps)
        .values({
          runId: input.runId,
          stepIndex: input.stepIndex,
          skill: input.skill,
          model: input.result.model,
          tokensIn: input.result.tokensIn,
          tokensOut: input.result.tokensOut,
          costUsd: input.result.costUsd,
          durationMs: input.result.durationMs,
          outputPreview: input.result.outputPreview,
        })
        .onConflictDoNothing()
        .returning({ id: traceSteps.id });
      await setProgress(tx, input.runId, input.progress);
      if (inserted.length) {
        const { model, tokensIn, tokensOut, costUsd } = input.result;
        await addToCostRollup(tx, await runAttribution(tx, input.runId), { model, skill: input.skill, costUsd, tokensIn, tokensOut });
        metrics.costUsd.inc({ model: costMetricModel(model), skill: costMetricSkill(input.skill) }, costUsd);
      }
      metrics.domainWrites.inc({ domain: 'logs', action: 'trace_step', result: inserted.length ? 'inserted' : 'existing' });
      if (!input.tenantId) return { thresholdCrossed: false };
      const thresholdCrossed = await flagThresholdCrossed(tx, { runId: input.runId, tenantId: input.tenantId }, { costUsd: input.progress.costUsd, warningAtUsd: input.warningAtUsd, stepIndex: input.stepIndex });
      return { thresholdCrossed };
    });
  }

  /** The saga's last step: the trace closes and the outcome's events are written in the same commit. */
  async function completeTrace(input: {
    runId: string;
    tenantId: string;
    outcome: string;
    events: OutboundEvent[];
  }): Promise<{ traceId: string }> {
    return db.transaction(async (tx) => {
      const [trace] = await tx
        .insert(traces)
        .values({ runId: input.runId, tenantId: input.tenantId, status: 'completed', outcome: input.outcome, completedAt: sql`now()` })
        .onConflictDoUpdate({
          target: traces.runId,
          set: { status: 'completed', outcome: input.outcome, completedAt: sql`coalesce(${traces.completedAt}, now())` },
        })
        .returning({ id: traces.id });
      await recordAck(tx, { runId: input.runId, action: COMPLETE_TRACE, status: 'OK', resultId: trace!.id });
      await writeEvents(tx, input, input.events);
      metrics.domainWrites.inc({ domain: 'logs', action: 'complete_trace', result: 'upserted' });
      return { traceId: trace!.id };
    });
  }

  async function rollbackTraceCompletion(input: CompensationInput): Promise<{ undone: boolean }> {
    return db.transaction(async (tx) => {
      const [trace] = await tx
        .update(traces)
        .set({ rolledBack: true })
        .where(and(eq(traces.runId, input.runId), eq(traces.status, 'completed')))
        .returning({ id: traces.id });
      if (trace) {
        // The outcome events were committed with the completion: withdraw those not yet sent.
        await tx
          .update(outbox)
          .set({ retractedAt: sql`now()` })
          .where(
            and(
              eq(outbox.runId, input.runId),
              inArray(outbox.dedupeKey, SAGA_EVENT_TOPICS.map((topic) => sagaEventKey(input.runId, topic))),
              isNull(outbox.publishedAt),
            ),
          );
      }
      return ackRollback(tx, COMPLETE_TRACE, input, trace?.id);
    });
  }

  return { startTrace, recordTraceStartFailure, recordTraceStep, completeTrace, rollbackTraceCompletion };
}
