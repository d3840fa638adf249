import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { budgetWarningAtUsd, effectiveBudgetUsd, hasOverrunBudget, isBudgetSpent } from '../../core/budget';

const usd = fc.double({ min: 0, max: 1e6, noNaN: true });

describe('the budget rule', () => {
  it('lets a run spend up to its budget: at the budget nothing is left, past it the run has overrun', () => {
    expect(isBudgetSpent(0.5, 0.5)).toBe(true);
    expect(hasOverrunBudget(0.5, 0.5)).toBe(false);
    expect(isBudgetSpent(0.499999, 0.5)).toBe(false);
    expect(hasOverrunBudget(0.500001, 0.5)).toBe(true);
  });

  it('decides as the comparisons it replaced, for any spend and budget', () => {
    fc.assert(
      fc.property(usd, usd, (spent, budget) => {
        expect(isBudgetSpent(spent, budget)).toBe(spent >= budget);
        expect(hasOverrunBudget(spent, budget)).toBe(spent > budget);
        // An overrun budget is always spent.
        if (hasOverrunBudget(spent, budget)) expect(isBudgetSpent(spent, budget)).toBe(true);
      }),
    );
  });

  it('takes the lower of the run budget and the policy budget, and warns at a share of it', () => {
    expect(effectiveBudgetUsd(2)).toBe(2);
    expect(effectiveBudgetUsd(2, 5)).toBe(2);
    expect(effectiveBudgetUsd(2, 0.5)).toBe(0.5);
    expect(budgetWarningAtUsd(effectiveBudgetUsd(2, 1), 80)).toBeCloseTo(0.8, 12);
  });
});
