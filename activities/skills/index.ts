import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { PlanStep } from '../../core/plan';
import { STEP_HEARTBEAT_INTERVAL_MS } from '../../core/step-heartbeat';
import { toSafeText } from '../../core/text-safety';
import type { ActivityDeps } from '../deps';
import { chatCompletion } from './chat';
import { SIM_MODEL } from '../../core/step-cost';
import { simulateCompletion } from './sim';

export interface StepResult {
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
  durationMs: number;
  outputPreview: string;
}

const PREVIEW_CHARS = 200;

export function createSkillActivities({ llm, metrics }: ActivityDeps) {
  async function runSimulator(step: Extract<PlanStep, { skill: 'sim.llm' }>): Promise<Omit<StepResult, 'durationMs'>> {
    const { input } = step;
    const ctx = Context.current();
    if (input.latencyMs) await ctx.sleep(input.latencyMs);
    if (input.fail || (input.failAttempts !== undefined && ctx.info.attempt <= input.failAttempts)) {
      throw ApplicationFailure.retryable(`simulated failure on attempt ${ctx.info.attempt}`, 'SimulatedStepFailure');
    }
    const completion = simulateCompletion(input);
    return { model: SIM_MODEL, ...completion, outputPreview: completion.text };
  }

  async function runChat(step: Extract<PlanStep, { skill: 'llm.chat' }>): Promise<Omit<StepResult, 'durationMs'>> {
    const completion = await chatCompletion(llm, step.input, Context.current().cancellationSignal);
    // What a provider sends is data we store: it must not be able to fail the write that records it.
    return { ...completion, model: toSafeText(completion.model, 200) ?? '', outputPreview: toSafeText(completion.text, PREVIEW_CHARS) ?? '' };
  }

  /** Runs one plan step's skill. Writes nothing: the workflow records the result in its own activity. */
  async function executeStep(input: { runId: string; stepIndex: number; step: PlanStep }): Promise<StepResult> {
    const started = performance.now();
    const { step } = input;
    const ctx = Context.current();
    // A step waits on a provider for seconds to minutes; beating while it does lets Temporal retry
    // the step elsewhere within the heartbeat timeout when this worker dies, not its start-to-close.
    const heartbeat = setInterval(() => ctx.heartbeat({ stepIndex: input.stepIndex }), STEP_HEARTBEAT_INTERVAL_MS);
    try {
      const result = step.skill === 'sim.llm' ? await runSimulator(step) : await runChat(step);
      const durationMs = Math.round(performance.now() - started);
      metrics.stepDuration.observe({ skill: step.skill, outcome: 'ok' }, durationMs / 1000);
      metrics.stepCost.inc({ skill: step.skill }, result.costUsd);
      return { ...result, durationMs };
    } catch (err) {
      const outcome = err instanceof CancelledFailure ? 'cancelled' : 'error';
      metrics.stepDuration.observe({ skill: step.skill, outcome }, (performance.now() - started) / 1000);
      throw err;
    } finally {
      clearInterval(heartbeat);
    }
  }

  return { executeStep };
}
