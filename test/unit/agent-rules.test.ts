import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { actionLimitReached, offeredTools, ruleOnToolCall } from '../../core/agent';
import { wouldOverrunBudget } from '../../core/budget';
import { DEFAULT_TOOL_POLICY, type ToolPolicy } from '../../core/policy';
import { PRICE_TABLE, addUsd, costUsd } from '../../core/pricing';
import { checkPlanReferences, referencedSteps, resolvePointer, resolveReferences } from '../../core/references';
import { chatCompletionBoundUsd } from '../../core/step-cost';
import { matchesToolPattern, splitToolId } from '../../core/tools';

const policy = (changes: Partial<ToolPolicy> = {}): ToolPolicy => ({ ...DEFAULT_TOOL_POLICY, allow: ['fs.*'], ...changes });
const call = (tool: string | null) => ({ tool, functionName: tool?.replace('.', '__') ?? 'ghost' });

describe('tool patterns', () => {
  it('match a tool, a server or everything', () => {
    expect(matchesToolPattern('fs.read_file', 'fs.read_file')).toBe(true);
    expect(matchesToolPattern('fs.*', 'fs.read_file')).toBe(true);
    expect(matchesToolPattern('fs.*', 'fsx.read_file')).toBe(false);
    expect(matchesToolPattern('*', 'any.thing')).toBe(true);
    expect(splitToolId('everything.trigger-long-running-operation')).toEqual({ server: 'everything', tool: 'trigger-long-running-operation' });
    expect(splitToolId('nodot')).toBeNull();
  });
});

describe("a tool call's ruling", () => {
  it('runs an allowed call at its price, with approval when a pattern asks for it', () => {
    const p = policy({ requireApproval: ['fs.write_file'], prices: [{ pattern: 'fs.write_file', usd: 0.5 }, { pattern: 'fs.*', usd: 0.01 }] });
    expect(ruleOnToolCall(p, undefined, call('fs.write_file'), 0)).toEqual({ ruling: 'run', priceUsd: 0.5, needsApproval: true });
    expect(ruleOnToolCall(p, undefined, call('fs.read_file'), 0)).toEqual({ ruling: 'run', priceUsd: 0.01, needsApproval: false });
  });

  it('refuses what the policy or the step does not allow, an unknown tool, and a call past the limit', () => {
    expect(ruleOnToolCall(policy(), undefined, call('shell.exec'), 0)).toMatchObject({ ruling: 'refuse', code: 'TOOL_NOT_ALLOWED' });
    expect(ruleOnToolCall(policy(), ['fs.read_file'], call('fs.write_file'), 0)).toMatchObject({ ruling: 'refuse', code: 'TOOL_NOT_ALLOWED' });
    expect(ruleOnToolCall(policy(), undefined, call(null), 0)).toMatchObject({ ruling: 'refuse', code: 'UNKNOWN_TOOL' });
    expect(ruleOnToolCall(policy({ maxCallsPerRun: 3 }), undefined, call('fs.read_file'), 3)).toMatchObject({ ruling: 'refuse', code: 'TOOL_CALL_LIMIT' });
    // A step can narrow the policy, never widen it.
    expect(offeredTools(policy(), ['*'], ['fs.a', 'shell.b'])).toEqual(['fs.a']);
    expect(offeredTools(policy({ allow: [] }), ['fs.*'], ['fs.a'])).toEqual([]);
  });

  it('ends the run at the policy limits it holds', () => {
    const limits = { maxSteps: 10, maxTokens: 1000, budgetUsd: 1 };
    expect(actionLimitReached(limits, { actionsCompleted: 9, tokens: 999, costUsd: 0.99 })).toBeNull();
    expect(actionLimitReached(limits, { actionsCompleted: 10, tokens: 0, costUsd: 0 })).toMatch(/governed steps/);
    expect(actionLimitReached(limits, { actionsCompleted: 0, tokens: 1000, costUsd: 0 })).toMatch(/tokens/);
    expect(actionLimitReached(limits, { actionsCompleted: 0, tokens: 0, costUsd: 1 })).toMatch(/budget/);
  });
});

describe('one budget for the whole loop (property)', () => {
  /**
   * The governor's reservation as an agent meets it: a turn runs only if its bound (from the prompt
   * it is about to send and its max_tokens) fits what is left, and whatever the provider bills
   * within that bound is spent; each call runs only if its price fits with the turn's other calls
   * promised. Whatever the model asks, the run never spends more than its budget.
   */
  it('never spends over the budget, for any sequence of bounded turns and priced calls', () => {
    const turn = fc.record({
      promptBytes: fc.integer({ min: 0, max: 200_000 }),
      messages: fc.integer({ min: 1, max: 200 }),
      maxTokens: fc.integer({ min: 1, max: 4096 }),
      model: fc.constantFrom(undefined, 'gpt-4o-mini', 'gpt-4o', 'unknown-model'),
      usedIn: fc.double({ min: 0, max: 1, noNaN: true }),
      usedOut: fc.double({ min: 0, max: 1, noNaN: true }),
      calls: fc.array(fc.double({ min: 0, max: 0.5, noNaN: true }), { maxLength: 6 }),
    });
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 5, noNaN: true }), fc.array(turn, { maxLength: 40 }), (budget, turns) => {
        let spent = 0;
        for (const t of turns) {
          const bound = chatCompletionBoundUsd(t, PRICE_TABLE);
          if (wouldOverrunBudget(spent, bound, budget)) break;
          // The provider bills at most the prompt's bound and max_tokens, at the model it names (or the default's price).
          const promptTokens = Math.floor(t.usedIn * t.promptBytes);
          const completion = Math.floor(t.usedOut * t.maxTokens);
          const billed = costUsd(t.model ?? 'gpt-4o', promptTokens, completion);
          expect(billed).toBeLessThanOrEqual(bound);
          spent = addUsd(spent, billed);
          let reserved = 0;
          for (const price of t.calls) {
            const usd = Math.round(price * 1e6) / 1e6;
            if (wouldOverrunBudget(addUsd(spent, reserved), usd, budget)) continue;
            reserved = addUsd(reserved, usd);
          }
          spent = addUsd(spent, reserved);
          expect(spent).toBeLessThanOrEqual(budget);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('references to earlier outputs', () => {
  it('resolves whole outputs and JSON pointers, escaping ~0 and ~1', () => {
    const outputs = new Map([
      ['plan', { content: 'step one', contentType: 'text/plain' }],
      ['data', { content: JSON.stringify({ 'a/b': { '~x': [1, { t: 'deep' }] } }), contentType: 'application/json' }],
    ]);
    expect(resolveReferences({ prompt: 'do {{steps.plan.output}} now', n: 3 }, outputs)).toEqual({ prompt: 'do step one now', n: 3 });
    expect(resolveReferences({ p: '{{ steps.data.output#/a~1b/~0x/1/t }}' }, outputs)).toEqual({ p: 'deep' });
    expect(resolveReferences({ p: '{{steps.data.output#/a~1b/~0x}}' }, outputs)).toEqual({ p: '[1,{"t":"deep"}]' });
    expect(() => resolveReferences({ p: '{{steps.plan.output#/x}}' }, outputs)).toThrow(/did not produce JSON/);
    expect(resolvePointer([1, 2], '/01')).toBeUndefined();
  });

  it('finds the steps an input refers to, earlier ones only', () => {
    const plan = [{ name: 'a', input: {} }, { name: 'b', input: { x: '{{steps.a.output}} {{steps.b.output}}' } }];
    expect(referencedSteps(plan, 1, plan[1]!.input)).toEqual({ a: 0 });
    expect(checkPlanReferences(plan).map((i) => i.message)).toEqual(["{{steps.b.output}} refers to step 'b': a step cannot use its own output"]);
  });
});
