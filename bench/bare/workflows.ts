import type { PlanStep } from '../../core/plan';
import { skills } from '../../workflows/activity-proxies';

/**
 * The baseline the governed run is measured against: the same plan's skill activities through the
 * same proxy (same timeouts and retries), one after another, and nothing around them — no phases,
 * writes, policy or audit.
 */
export async function bareRunWorkflow(input: { runId: string; plan: PlanStep[] }): Promise<number> {
  let costUsd = 0;
  for (const [stepIndex, step] of input.plan.entries()) {
    costUsd += (await skills.executeStep({ runId: input.runId, stepIndex, step })).costUsd;
  }
  return costUsd;
}
