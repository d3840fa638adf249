import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, type PolicyRules } from '../../core/policy';
import { canResume, decidePolicy, type PolicyCheckInput } from '../../core/policy-check';

function input(overrides: Partial<PolicyCheckInput> = {}, rules: Partial<PolicyRules> = {}): PolicyCheckInput {
  const policy = { version: 1, rules: { ...DEFAULT_POLICY, ...rules } };
  return {
    current: policy,
    known: policy,
    tenantStatus: 'active',
    stopRequested: false,
    runBudgetUsd: 1,
    costUsd: 0.1,
    tokens: 100,
    stepsCompleted: 1,
    remainingSkills: ['sim.llm', 'sim.llm'],
    nextStepApproved: false,
    ...overrides,
  };
}

describe('the mid-run decision table (seed §11.2)', () => {
  const table: [string, PolicyCheckInput, string, string | null, string | null][] = [
    ['no violation', input(), 'CONTINUE', null, null],
    ['BUDGET_EXCEEDED (spend reached the budget)', input({ costUsd: 1 }), 'TERMINATE', 'BUDGET_EXCEEDED', null],
    ['BUDGET_EXCEEDED (policy budget cut below spend)', input({}, { budgetPerRunUsd: 0.05 }), 'TERMINATE', 'BUDGET_EXCEEDED', null],
    ['BUDGET_EXCEEDED (tokens)', input({ tokens: 5000 }, { maxTokens: 5000 }), 'TERMINATE', 'BUDGET_EXCEEDED', null],
    ['POLICY_DISABLED', input({}, { enabled: false }), 'PAUSE', 'POLICY_DISABLED', 'POLICY_CHANGE'],
    ['MANUAL_STOP', input({ stopRequested: true }), 'TERMINATE', 'MANUAL_STOP', null],
    ['TENANT_SUSPENDED', input({ tenantStatus: 'suspended' }), 'TERMINATE', 'TENANT_SUSPENDED', null],
    [
      'LIMIT_CHANGED',
      input({ current: { version: 2, rules: { ...DEFAULT_POLICY, maxSteps: 10 } }, known: { version: 1, rules: DEFAULT_POLICY } }),
      'PAUSE',
      'LIMIT_CHANGED',
      'POLICY_CHANGE',
    ],
    ['APPROVAL_REQUIRED', input({}, { approvalSkills: ['sim.llm'] }), 'PAUSE', 'APPROVAL_REQUIRED', 'APPROVAL_REQUIRED'],
    ['checks disabled', input({ tenantStatus: 'suspended' }, { midRunChecks: false }), 'SKIP', null, null],
  ];

  it.each(table)('%s', (_name, given, decision, violation, pauseReason) => {
    const result = decidePolicy(given);
    expect(result.decision).toBe(decision);
    expect(result.pauseReason).toBe(pauseReason);
    if (violation) expect(result.violations.map((v) => v.type)).toContain(violation);
    else expect(result.violations).toEqual([]);
    expect(result.reason.length).toBeGreaterThan(0);
  });

  it('lets a stop win even with checks disabled', () => {
    expect(decidePolicy(input({ stopRequested: true }, { midRunChecks: false })).decision).toBe('TERMINATE');
  });

  it('prefers TERMINATE over PAUSE and names only the deciding violations in the reason', () => {
    const result = decidePolicy(input({ tenantStatus: 'suspended' }, { enabled: false }));
    expect(result.decision).toBe('TERMINATE');
    expect(result.violations.map((v) => v.type).sort()).toEqual(['POLICY_DISABLED', 'TENANT_SUSPENDED']);
    expect(result.reason).toMatch(/^TENANT_SUSPENDED/);
    expect(result.reason).not.toMatch(/POLICY_DISABLED/);
  });

  it('continues after a loosened policy and after an approval', () => {
    const loosened = input({ current: { version: 2, rules: { ...DEFAULT_POLICY, budgetPerRunUsd: 50 } }, known: { version: 1, rules: DEFAULT_POLICY } });
    expect(decidePolicy(loosened).decision).toBe('CONTINUE');
    expect(decidePolicy(input({ nextStepApproved: true }, { approvalSkills: ['sim.llm'] })).decision).toBe('CONTINUE');
  });

  it('sees a skill removed from the allowed list as a tightened limit', () => {
    const result = decidePolicy(
      input({ current: { version: 3, rules: { ...DEFAULT_POLICY, allowedSkills: ['llm.chat'] } }, known: { version: 2, rules: DEFAULT_POLICY } }),
    );
    expect(result.decision).toBe('PAUSE');
    expect(result.reason).toMatch(/skills no longer allowed: sim\.llm/);
  });
});

describe('resume authority (seed §13.5)', () => {
  it('accepts any held authority the pause allows', () => {
    expect(canResume(['TENANT_ADMIN', 'FOUNDER_ONLY'], ['TENANT_USER', 'TENANT_ADMIN'])).toBe(true);
    expect(canResume(['TENANT_ADMIN', 'FOUNDER_ONLY'], ['TENANT_USER', 'API_KEY_OWNER'])).toBe(false);
    expect(canResume(['FOUNDER_ONLY'], [])).toBe(false);
  });
});
