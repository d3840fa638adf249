import { addUsd } from './pricing';

/**
 * The one budget rule. A run may spend up to its budget, inclusive: a step may start only while
 * something is left, and a run that spent more than its budget has overrun it (which only the
 * step that crossed it can reveal). Pure: used by the policy decision, the workflow and its query.
 */

/** The most a run may spend: its own budget, or the lower one its accepted policy sets. */
export function effectiveBudgetUsd(runBudgetUsd: number, policyBudgetUsd?: number): number {
  return policyBudgetUsd === undefined ? runBudgetUsd : Math.min(runBudgetUsd, policyBudgetUsd);
}

/** What is left; negative once the run has overrun its budget. */
export function budgetLeftUsd(spentUsd: number, budgetUsd: number): number {
  return budgetUsd - spentUsd;
}

/** Nothing left to start another step with. */
export function isBudgetSpent(spentUsd: number, budgetUsd: number): boolean {
  return budgetLeftUsd(spentUsd, budgetUsd) <= 0;
}

/** More spent than the budget allows. */
export function hasOverrunBudget(spentUsd: number, budgetUsd: number): boolean {
  return budgetLeftUsd(spentUsd, budgetUsd) < 0;
}

/**
 * Reservation: a step may start only when what was spent plus what the step may cost stays within
 * the budget. With upper-bound predictions a run that passes this before every step never overruns.
 */
export function wouldOverrunBudget(spentUsd: number, predictedStepUsd: number, budgetUsd: number): boolean {
  return hasOverrunBudget(addUsd(spentUsd, predictedStepUsd), budgetUsd);
}

/** The spend at which a run is warned (and, with `pauseOnThreshold`, paused). */
export function budgetWarningAtUsd(budgetUsd: number, warningThresholdPct: number): number {
  return (budgetUsd * warningThresholdPct) / 100;
}
