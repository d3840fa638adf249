import { describe, expect, it } from 'vitest';
import { authorizeRun } from '../../core/authorization';
import { submitRunBody, toPlan } from '../../core/plan';
import { DEFAULT_POLICY, policyRules } from '../../core/policy';
import { addUsd, costUsd } from '../../core/pricing';
import { finalEvaluation } from '../../activities/policies';
import { simulateCompletion } from '../../activities/skills/sim';
import { isTransientError } from '../../db/unavailable';

const plan = toPlan(submitRunBody.parse({ plan: [{ skill: 'sim.llm', input: { prompt: 'hi' } }] }));

describe('authorizeRun', () => {
  const base = { role: 'member' as const, tenantStatus: 'active' as const, policy: DEFAULT_POLICY, plan, budgetUsd: 1 };

  it('allows a member of an active tenant within policy', () => {
    expect(authorizeRun(base)).toEqual({ decision: 'ALLOWED', reason: null });
  });

  it.each([
    [{ role: 'viewer' as const }, /viewer/],
    [{ tenantStatus: 'suspended' as const }, /suspended/],
    [{ policy: { ...DEFAULT_POLICY, enabled: false } }, /disabled/],
    [{ policy: { ...DEFAULT_POLICY, allowedSkills: ['llm.chat' as const] } }, /not allowed by policy: sim\.llm/],
    [{ policy: { ...DEFAULT_POLICY, maxSteps: 0 } }, /1 steps, policy allows 0/],
    [{ budgetUsd: 50 }, /above the policy/],
  ])('denies %j', (override, reason) => {
    const result = authorizeRun({ ...base, ...override });
    expect(result.decision).toBe('DENIED');
    expect(result.reason).toMatch(reason);
  });

  it('gives every reason at once', () => {
    const result = authorizeRun({ ...base, role: 'viewer', tenantStatus: 'suspended' });
    expect(result.reason).toMatch(/viewer.*suspended/);
  });
});

describe('run body validation', () => {
  it('checks each step input against its skill', () => {
    expect(submitRunBody.safeParse({ plan: [{ skill: 'llm.chat', input: { messages: [] } }] }).success).toBe(false);
    expect(submitRunBody.safeParse({ plan: [{ skill: 'llm.chat', input: { messages: [{ role: 'user', content: 'x' }] } }] }).success).toBe(true);
    expect(submitRunBody.safeParse({ plan: [{ skill: 'sim.llm', input: { prompt: 'x', extra: 1 } }] }).success).toBe(false);
  });
});

describe('policy rules', () => {
  it('accepts the default and refuses a warning lead longer than the SLA', () => {
    expect(policyRules.safeParse(DEFAULT_POLICY).success).toBe(true);
    const bad = policyRules.safeParse({ ...DEFAULT_POLICY, pauseSlaSeconds: 10, pauseWarningSeconds: 20 });
    expect(bad.success).toBe(false);
  });
});

describe('the simulator and prices', () => {
  it('reports the same usage for the same input, and more for a longer prompt', () => {
    const a = simulateCompletion({ prompt: 'the same prompt' });
    expect(simulateCompletion({ prompt: 'the same prompt' })).toEqual(a);
    const long = simulateCompletion({ prompt: 'x'.repeat(4000), completionTokens: 10 });
    expect(long.tokensIn).toBe(1000);
    expect(long.costUsd).toBe(costUsd('sim-1', 1000, 10));
  });

  it('prices per 1k tokens, prices unknown models at the dearest known rate, and sums in micro-dollars', () => {
    expect(costUsd('sim-1', 1000, 1000)).toBe(0.008);
    expect(costUsd('no-such-model', 1000, 0)).toBe(0.0025);
    expect(addUsd(0.1, 0.2)).toBe(0.3);
  });
});

describe('final policy evaluation', () => {
  it('marks policy failures as violations and other outcomes as compliant', () => {
    expect(finalEvaluation({ kind: 'succeeded' }).decision).toBe('COMPLIANT');
    expect(finalEvaluation({ kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: 'm' })).toMatchObject({
      decision: 'VIOLATION',
      violations: ['BUDGET_EXCEEDED'],
    });
    expect(finalEvaluation({ kind: 'failed', status: 'failed', code: 'STEP_FAILED', message: 'm' }).decision).toBe('COMPLIANT');
  });
});

describe('transient error classification', () => {
  it('treats connection loss as an outage and everything else as final-after-budget', () => {
    expect(isTransientError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('gone'), { code: 'CONNECTION_CLOSED' }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('x'), { code: '08006' }))).toBe(true);
    expect(isTransientError(new Error('wrapped', { cause: Object.assign(new Error('r'), { code: 'ECONNRESET' }) }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('x'), { code: '57P03' }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('lost a race'), { code: '40001' }))).toBe(true);
    expect(isTransientError(Object.assign(new Error('dup'), { code: '23505' }))).toBe(false);
    expect(isTransientError(new Error('plain'))).toBe(false);
  });
});

describe("the driver's write-after-close race", () => {
  it('is told apart from every other TypeError', async () => {
    const { isDriverWriteAfterClose } = await import('../../db/driver-races');
    const race = new TypeError("Cannot read properties of null (reading 'write')");
    race.stack = `TypeError: Cannot read properties of null (reading 'write')\n    at Immediate.nextWrite (/app/node_modules/postgres/src/connection.js:255:22)`;
    expect(isDriverWriteAfterClose(race)).toBe(true);
    const ours = new TypeError("Cannot read properties of null (reading 'write')");
    ours.stack = `TypeError: Cannot read properties of null (reading 'write')\n    at write (/app/lib/thing.ts:1:1)`;
    expect(isDriverWriteAfterClose(ours)).toBe(false);
    expect(isDriverWriteAfterClose(new Error('x'))).toBe(false);
  });
});
