import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { simulateCompletion } from '../../activities/skills/sim';
import { wouldOverrunBudget } from '../../core/budget';
import type { PlanStep, SimLlmInput } from '../../core/plan';
import { PRICE_TABLE, addUsd, costUsd } from '../../core/pricing';
import { predictStepCost } from '../../core/step-cost';

const simInput: fc.Arbitrary<SimLlmInput> = fc.record(
  { prompt: fc.string({ minLength: 1, maxLength: 400 }), completionTokens: fc.integer({ min: 0, max: 50_000 }) },
  { requiredKeys: ['prompt'] },
);
const nothingSpent = { costUsd: 0, stepsCompleted: 0 };

describe('a step\'s predicted cost', () => {
  it('is an upper bound of what the simulator charges, for any input', () => {
    fc.assert(
      fc.property(simInput, (input) => {
        const prediction = predictStepCost({ skill: 'sim.llm', input }, nothingSpent)!;
        expect(prediction.basis).toBe('upper-bound');
        expect(prediction.usd).toBeGreaterThanOrEqual(simulateCompletion(input).costUsd);
      }),
    );
  });

  it('bounds a chat completion with maxTokens by the dearest price, named or not (a provider may bill a name the table does not know)', () => {
    const messages = [{ role: 'user' as const, content: 'x'.repeat(1000) }];
    const named = predictStepCost({ skill: 'llm.chat', input: { messages, maxTokens: 500, model: 'gpt-4o-mini' } }, nothingSpent)!;
    const unnamed = predictStepCost({ skill: 'llm.chat', input: { messages, maxTokens: 500 } }, nothingSpent)!;
    // Whatever the provider counts up to one token per character, at most 500 out, is within the bound.
    expect(named.usd).toBeGreaterThanOrEqual(costUsd('gpt-4o-mini', 1000 + 16, 500));
    for (const model of Object.keys(PRICE_TABLE)) expect(unnamed.usd).toBeGreaterThanOrEqual(costUsd(model, 1000 + 16, 500));
    // An unknown billed name is priced at the dearest known rate, so a named model reserves it too.
    expect(unnamed.usd).toBe(named.usd);
    expect(named.usd).toBeGreaterThanOrEqual(costUsd('a-model-nobody-listed', 1000 + 16, 500));
  });

  it('bounds a prompt by its UTF-8 bytes, so no byte-level tokenizer can count more', () => {
    const hindi = 'नमस्ते दुनिया '.repeat(100);
    const prediction = predictStepCost({ skill: 'llm.chat', input: { messages: [{ role: 'user', content: hindi }], maxTokens: 1, model: 'gpt-4o' } }, nothingSpent)!;
    const bytes = new TextEncoder().encode(hindi).length;
    expect(bytes).toBeGreaterThan(2 * hindi.length);
    expect(prediction.usd).toBeGreaterThanOrEqual(costUsd('gpt-4o', bytes, 1));
  });

  it('prices with the table the run started with, not the code\'s of the day', () => {
    const input = { messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 1000, model: 'gpt-4o' };
    const dearer = { ...PRICE_TABLE, 'gpt-4o': { inputPer1k: 1, outputPer1k: 1 } };
    expect(predictStepCost({ skill: 'llm.chat', input }, nothingSpent, dearer)!.usd).toBeGreaterThan(predictStepCost({ skill: 'llm.chat', input }, nothingSpent)!.usd * 10);
  });

  it('falls back to the run\'s average step for a skill without a bound, and to nothing on the first step', () => {
    const unbounded: PlanStep = { skill: 'llm.chat', input: { messages: [{ role: 'user', content: 'hi' }] } };
    expect(predictStepCost(unbounded, nothingSpent)).toBeNull();
    expect(predictStepCost(unbounded, { costUsd: 0.3, stepsCompleted: 3 })).toEqual({ usd: 0.1, basis: 'average' });
  });
});

describe('budget reservation', () => {
  it('never lets a run of upper-bounded steps spend more than its budget', () => {
    fc.assert(
      fc.property(fc.array(simInput, { minLength: 1, maxLength: 30 }), fc.double({ min: 0.000_01, max: 2, noNaN: true }), (plan, budget) => {
        let spent = 0;
        let stepsCompleted = 0;
        for (const input of plan) {
          const prediction = predictStepCost({ skill: 'sim.llm', input }, { costUsd: spent, stepsCompleted })!;
          if (wouldOverrunBudget(spent, prediction.usd, budget)) break;
          spent = addUsd(spent, simulateCompletion(input).costUsd);
          stepsCompleted += 1;
        }
        expect(spent).toBeLessThanOrEqual(budget);
      }),
    );
  });

  it('lets a step that lands exactly on the budget run, and refuses one a micro-dollar over', () => {
    expect(wouldOverrunBudget(0.04, 0.06, 0.1)).toBe(false);
    expect(wouldOverrunBudget(0.04, 0.060001, 0.1)).toBe(true);
  });
});
