import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_TOKENS_PER_CALL, PRICE_TABLE, checkUsage, costUsd, dearestPrice, pricingOf } from '../../core/pricing';
import { chatCompletionBoundUsd, predictStepCost } from '../../core/step-cost';

describe('pricing a billed model', () => {
  it('prices a listed model at its own rate', () => {
    expect(pricingOf('gpt-4o-mini')).toEqual({ price: PRICE_TABLE['gpt-4o-mini'], basis: 'listed' });
  });

  it('prices a name the table does not know at the dearest known rate: the highest input and output prices, each on its own', () => {
    const table = { cheap: { inputPer1k: 0.001, outputPer1k: 0.5 }, dear: { inputPer1k: 2, outputPer1k: 0.1 } };
    expect(dearestPrice(table)).toEqual({ inputPer1k: 2, outputPer1k: 0.5 });
    expect(pricingOf('mystery-model', table)).toEqual({ price: { inputPer1k: 2, outputPer1k: 0.5 }, basis: 'dearest' });
    expect(pricingOf('mystery-model')).toEqual({ price: { inputPer1k: 0.0025, outputPer1k: 0.01 }, basis: 'dearest' });
    expect(costUsd('mystery-model', 1000, 1000)).toBe(0.0125);
  });

  it("never finds Object's members or the `default` entry as a model", () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'default', '']) {
      expect(pricingOf(name).basis).toBe('dearest');
      expect(Number.isFinite(costUsd(name, 10, 10))).toBe(true);
    }
  });

  it('prices a dated snapshot of the requested model as that model, and of any other model at the dearest rate', () => {
    expect(pricingOf('gpt-4o-mini-2024-07-18', PRICE_TABLE, 'gpt-4o-mini')).toEqual({ price: PRICE_TABLE['gpt-4o-mini'], basis: 'snapshot' });
    expect(pricingOf('gpt-4o-mini-0613', PRICE_TABLE, 'gpt-4o-mini').basis).toBe('snapshot');
    // A snapshot the call did not ask for, or a name that only starts like one: not known.
    expect(pricingOf('gpt-4o-mini-2024-07-18', PRICE_TABLE, 'gpt-4o').basis).toBe('dearest');
    expect(pricingOf('gpt-4o-mini-2024-07-18').basis).toBe('dearest');
    expect(pricingOf('gpt-4o-mini-turbo', PRICE_TABLE, 'gpt-4o-mini').basis).toBe('dearest');
  });

  it('keeps the reservation bound an upper bound of whatever name the provider bills (property)', () => {
    const name = fc.oneof(fc.constantFrom(...Object.keys(PRICE_TABLE), 'gpt-4o-mini-2024-07-18', 'constructor'), fc.string({ maxLength: 20 }));
    fc.assert(
      fc.property(
        fc.record({
          promptBytes: fc.integer({ min: 0, max: 200_000 }),
          messages: fc.integer({ min: 1, max: 50 }),
          maxTokens: fc.integer({ min: 1, max: 100_000 }),
          requested: fc.option(name, { nil: undefined }),
          billed: name,
          usedIn: fc.double({ min: 0, max: 1, noNaN: true }),
          usedOut: fc.double({ min: 0, max: 1, noNaN: true }),
        }),
        ({ promptBytes, messages, maxTokens, requested, billed, usedIn, usedOut }) => {
          const bound = chatCompletionBoundUsd({ promptBytes, messages, maxTokens, model: requested });
          const cost = costUsd(billed, Math.floor(usedIn * promptBytes), Math.floor(usedOut * maxTokens), PRICE_TABLE, requested);
          expect(cost).toBeLessThanOrEqual(bound);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('the reservation rule a run replays with', () => {
  it('reserves a named chat step at the dearest rate, and at the named-or-default rate for a run that decided with it', () => {
    const step = { skill: 'llm.chat' as const, input: { messages: [{ role: 'user' as const, content: 'x'.repeat(1000) }], maxTokens: 500, model: 'gpt-4o-mini' } };
    const nothingSpent = { costUsd: 0, stepsCompleted: 0 };
    // 1,016 prompt tokens (1,000 bytes, one message's framing, the reply's priming) and 500 out.
    expect(predictStepCost(step, nothingSpent)).toEqual({ usd: 0.00754, basis: 'upper-bound' });
    expect(predictStepCost(step, nothingSpent, PRICE_TABLE, 'named-or-default')).toEqual({ usd: 0.002016, basis: 'upper-bound' });
  });
});

describe("checking a provider's usage", () => {
  it('accepts whole counts from 0 to the limit', () => {
    expect(checkUsage({ prompt_tokens: 0, completion_tokens: MAX_TOKENS_PER_CALL, total_tokens: 'ignored' })).toEqual({ ok: true, tokensIn: 0, tokensOut: MAX_TOKENS_PER_CALL });
  });

  it.each([
    [undefined, 'usage', 'the response carries no token usage (usage is missing)'],
    [null, 'usage', 'the response carries no token usage (usage is null)'],
    [[1, 2], 'usage', 'the response carries no token usage (usage is a list, not a number)'],
    [{ completion_tokens: 1 }, 'usage.prompt_tokens', 'usage.prompt_tokens is missing: a token count must be a whole number from 0 to 10000000'],
    [{ prompt_tokens: -1, completion_tokens: 1 }, 'usage.prompt_tokens', 'usage.prompt_tokens is -1: a token count must be a whole number from 0 to 10000000'],
    [{ prompt_tokens: 1, completion_tokens: 0.5 }, 'usage.completion_tokens', 'usage.completion_tokens is 0.5: a token count must be a whole number from 0 to 10000000'],
    [{ prompt_tokens: 10_000_001, completion_tokens: 1 }, 'usage.prompt_tokens', 'usage.prompt_tokens is 10000001: a token count must be a whole number from 0 to 10000000'],
    [{ prompt_tokens: Infinity, completion_tokens: 1 }, 'usage.prompt_tokens', 'usage.prompt_tokens is Infinity: a token count must be a whole number from 0 to 10000000'],
    [{ prompt_tokens: '12', completion_tokens: 1 }, 'usage.prompt_tokens', 'usage.prompt_tokens is a string, not a number: a token count must be a whole number from 0 to 10000000'],
    [{ prompt_tokens: 1, completion_tokens: { n: 1 } }, 'usage.completion_tokens', 'usage.completion_tokens is an object, not a number: a token count must be a whole number from 0 to 10000000'],
  ])('refuses %j, naming %s', (usage, field, problem) => {
    expect(checkUsage(usage)).toEqual({ ok: false, field, problem });
  });
});
