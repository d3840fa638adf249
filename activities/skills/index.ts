import type { StepResult, RunStepInput, StepRecord } from '../../core/contracts';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { stepRecordAction } from '../../core/audit';
import { costMetricModel, costMetricSkill } from '../../core/costs';
import type { OutputRef } from '../../core/outputs';
import type { PlanStep } from '../../core/plan';
import { PRICED_AT_DEAREST_RATE } from '../../core/pricing';
import { ReferenceError, resolveReferences, type ReferencedOutput } from '../../core/references';
import { SIM_MODEL } from '../../core/step-cost';
import { STEP_HEARTBEAT_INTERVAL_MS } from '../../core/step-heartbeat';
import { toSafeText } from '../../core/text-safety';
import { recordAck } from '../../db/acks';
import { addToCostRollup } from '../../db/costs';
import { contentTypeOf } from '../../db/content-type';
import type { DbOrTx } from '../../db/client';
import { addRunProgress, flagThresholdCrossed, insertTraceRow, outputOf, planStepOutputs, sha256Hex, storeOutput, traceRowOf, type TraceRow } from '../../db/steps';
import type { ActivityDeps } from '../deps';
import { recorded as untilRecorded } from '../recording';
import { chatCompletion, pricingNote, type ChatResult } from './chat';
import { simulateCompletion } from './sim';

const PREVIEW_CHARS = 200;

function stepRecordOf(row: TraceRow, output: OutputRef | null): StepRecord {
  return {
    model: row.model,
    tokensIn: row.tokensIn,
    tokensOut: row.tokensOut,
    costUsd: row.costUsd,
    durationMs: row.durationMs,
    output,
    failure: row.status === 'failed' && row.errorCode === 'OUTPUT_TOO_LARGE' ? { code: 'OUTPUT_TOO_LARGE', message: row.outputPreview ?? 'output too large' } : null,
    thresholdCrossed: false,
  };
}

export function createSkillActivities({ db, llm, metrics, limits }: ActivityDeps) {
  async function skillOutput(step: PlanStep, signal: AbortSignal): Promise<ChatResult> {
    if (step.skill === 'sim.llm') {
      const { input } = step;
      const ctx = Context.current();
      if (input.latencyMs) await ctx.sleep(input.latencyMs);
      if (input.fail || (input.failAttempts !== undefined && ctx.info.attempt <= input.failAttempts)) {
        throw ApplicationFailure.retryable(`simulated failure on attempt ${ctx.info.attempt}`, 'SimulatedStepFailure');
      }
      return { model: SIM_MODEL, pricing: 'listed', redactedSecrets: 0, ...simulateCompletion(input) };
    }
    if (step.skill === 'llm.chat') {
      // The reply arrives with the worker's secrets redacted and its usage checked (`./chat.ts`).
      const completion = await chatCompletion(llm, step.input, signal);
      // What a provider sends is data we store: it must not be able to fail the write that records it.
      return { ...completion, model: toSafeText(completion.model, 200) ?? '', text: toSafeText(completion.text, Number.MAX_SAFE_INTEGER) ?? '' };
    }
    throw ApplicationFailure.nonRetryable(`skill ${step.skill} is not a single call`, 'NotASingleCall');
  }

  /** Beats while `work` runs: a lost worker is found within the heartbeat timeout, not the start-to-close. */
  async function withHeartbeat<T>(details: unknown, skill: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const ctx = Context.current();
    const heartbeat = setInterval(() => ctx.heartbeat(details), STEP_HEARTBEAT_INTERVAL_MS);
    try {
      const result = await work();
      metrics.stepDuration.observe({ skill, outcome: 'ok' }, (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      const outcome = err instanceof CancelledFailure ? 'cancelled' : 'error';
      metrics.stepDuration.observe({ skill, outcome }, (performance.now() - started) / 1000);
      throw err;
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** The outputs of the earlier steps a step's input refers to, by name. */
  async function referencedOutputs(runId: string, references: Record<string, number>): Promise<Map<string, ReferencedOutput>> {
    const stored = await planStepOutputs(db, runId, Object.values(references));
    const outputs = new Map<string, ReferencedOutput>();
    for (const [name, index] of Object.entries(references)) {
      const output = stored.get(index);
      if (output) outputs.set(name, output);
    }
    return outputs;
  }

  /**
   * Runs one plan step and records it: its references resolved from the stored outputs, its skill
   * called, then its whole output, trace row, the run's totals and its ack in one transaction. A
   * retry of a step that was recorded returns the record without calling the skill again.
   */
  async function runStep(input: RunStepInput): Promise<StepRecord> {
    const { runId, tenantId, stepIndex, step } = input;
    const item = { stepIndex };
    const recorded = await untilRecorded('reading the step record', () => traceRowOf(db, runId, item));
    if (recorded) return stepRecordOf(recorded, recorded.outputId ? await outputRefById(recorded) : null);

    const outputs = await untilRecorded('reading the outputs the step refers to', () => referencedOutputs(runId, input.references));
    let resolved: PlanStep;
    try {
      resolved = { ...step, input: resolveReferences(step.input, outputs) } as PlanStep;
    } catch (err) {
      if (err instanceof ReferenceError) throw ApplicationFailure.nonRetryable(err.message, 'REFERENCE_UNRESOLVED');
      throw err;
    }
    const inputSha256 = sha256Hex(JSON.stringify(resolved.input));
    const started = performance.now();
    const result = await withHeartbeat({ stepIndex }, step.skill, () => skillOutput(resolved, Context.current().cancellationSignal));
    const durationMs = Math.round(performance.now() - started);
    const bytes = Buffer.byteLength(result.text, 'utf8');
    const tooLarge = bytes > limits.maxStepOutputBytes;
    const failure = tooLarge
      ? { code: 'OUTPUT_TOO_LARGE' as const, message: `step ${stepIndex + 1} (${step.skill}) produced ${bytes} bytes, over the limit of ${limits.maxStepOutputBytes} (MAX_STEP_OUTPUT_BYTES)` }
      : null;

    return untilRecorded(`recording step ${stepIndex + 1}`, () => db.transaction(async (tx): Promise<StepRecord> => {
      const output = tooLarge ? null : await storeOutput(tx, { runId, tenantId, item, kind: 'step', contentType: contentTypeOf(result.text), content: result.text });
      const inserted = await insertTraceRow(tx, runId, item, {
        kind: 'step',
        skill: step.skill,
        model: result.model,
        tokensIn: result.tokensIn,
        tokensOut: result.tokensOut,
        costUsd: result.costUsd,
        durationMs,
        status: failure ? 'failed' : 'ok',
        // A billed model the price table does not know: priced at the dearest known rate, and said so.
        errorCode: failure?.code ?? (result.pricing === 'dearest' ? PRICED_AT_DEAREST_RATE : null),
        outputPreview: failure ? failure.message : (toSafeText(result.text, PREVIEW_CHARS) ?? ''),
        outputId: output?.id ?? null,
        inputSha256,
      });
      if (!inserted) {
        // A concurrent attempt of the same step recorded it first: its record is the step's.
        const first = (await traceRowOf(tx, runId, item))!;
        return stepRecordOf(first, first.outputId ? await outputRefById(first, tx) : null);
      }
      const totals = await addRunProgress(tx, runId, { costUsd: result.costUsd, tokens: result.tokensIn + result.tokensOut, ...(failure ? {} : { stepsCompleted: stepIndex + 1 }) });
      await addToCostRollup(tx, totals, { model: result.model, skill: step.skill, costUsd: result.costUsd, tokensIn: result.tokensIn, tokensOut: result.tokensOut });
      await recordAck(tx, {
        runId,
        action: stepRecordAction(stepIndex),
        status: failure ? 'FAILED' : 'OK',
        resultId: output?.id ?? null,
        error: failure?.message ?? null,
        metadata: { skill: step.skill, bytes, inputSha256, ...pricingNote(result) },
      });
      const thresholdCrossed = await flagThresholdCrossed(tx, { runId, tenantId }, { costUsd: totals.costUsd, warningAtUsd: input.warningAtUsd, stepIndex });
      metrics.stepCost.inc({ skill: step.skill }, result.costUsd);
      metrics.costUsd.inc({ model: costMetricModel(result.model), skill: costMetricSkill(step.skill) }, result.costUsd);
      metrics.domainWrites.inc({ domain: 'logs', action: 'record_step', result: 'inserted' });
      return { model: result.model, tokensIn: result.tokensIn, tokensOut: result.tokensOut, costUsd: result.costUsd, durationMs, output, failure, thresholdCrossed };
    }));
  }

  async function outputRefById(row: TraceRow, tx: DbOrTx = db): Promise<OutputRef | null> {
    const output = await outputOf(tx, row.runId, { stepIndex: row.stepIndex, turn: row.turn, callIndex: row.callIndex });
    return output ? { id: output.id, sha256: output.sha256, bytes: output.bytes, contentType: output.contentType } : null;
  }

  /**
   * Runs a step's skill for runs started before outputs were stored (their workflow records the
   * result in an activity of its own). Kept until no such run can be open.
   */
  async function executeStep(input: { runId: string; stepIndex: number; step: PlanStep }): Promise<StepResult> {
    const { step } = input;
    const started = performance.now();
    const result = await withHeartbeat({ stepIndex: input.stepIndex }, step.skill, () => skillOutput(step, Context.current().cancellationSignal));
    metrics.stepCost.inc({ skill: step.skill }, result.costUsd);
    const { model, tokensIn, tokensOut, costUsd, text } = result;
    return { model, tokensIn, tokensOut, costUsd, durationMs: Math.round(performance.now() - started), outputPreview: toSafeText(text, PREVIEW_CHARS) ?? '' };
  }

  return { runStep, executeStep };
}
