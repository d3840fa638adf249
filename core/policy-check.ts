import { effectiveBudgetUsd, isBudgetSpent } from './budget';
import type { SkillName } from './plan';
import type { PolicyRules } from './policy';

/** Seed FIX-005 / §11.2: what a mid-run check can find, and what each finding makes the run do. */
export const VIOLATION_TYPES = [
  'BUDGET_EXCEEDED',
  'POLICY_DISABLED',
  'MANUAL_STOP',
  'TENANT_SUSPENDED',
  'LIMIT_CHANGED',
  'APPROVAL_REQUIRED',
] as const;
export type ViolationType = (typeof VIOLATION_TYPES)[number];

export const POLICY_DECISIONS = ['CONTINUE', 'PAUSE', 'TERMINATE', 'SKIP'] as const;
export type PolicyDecision = (typeof POLICY_DECISIONS)[number];

export const PAUSE_REASONS = ['POLICY_CHANGE', 'BUDGET_WARNING', 'APPROVAL_REQUIRED', 'RATE_LIMIT_SOFT', 'MANUAL_PAUSE', 'TOOL_APPROVAL'] as const;
export type PauseReason = (typeof PAUSE_REASONS)[number];

/** The pauses a person may ask for; a TOOL_APPROVAL pause is made by the run itself, for one tool call. */
export const REQUESTABLE_PAUSE_REASONS = ['POLICY_CHANGE', 'BUDGET_WARNING', 'APPROVAL_REQUIRED', 'RATE_LIMIT_SOFT', 'MANUAL_PAUSE'] as const satisfies readonly PauseReason[];

export const RESUME_AUTHORITIES = ['TENANT_ADMIN', 'TENANT_USER', 'SYSTEM_AUTO', 'API_KEY_OWNER', 'FOUNDER_ONLY'] as const;
export type ResumeAuthority = (typeof RESUME_AUTHORITIES)[number];

export const VIOLATION_DECISION: Readonly<Record<ViolationType, Exclude<PolicyDecision, 'CONTINUE' | 'SKIP'>>> = {
  BUDGET_EXCEEDED: 'TERMINATE',
  POLICY_DISABLED: 'PAUSE',
  MANUAL_STOP: 'TERMINATE',
  TENANT_SUSPENDED: 'TERMINATE',
  LIMIT_CHANGED: 'PAUSE',
  APPROVAL_REQUIRED: 'PAUSE',
};

/** Why a PAUSE decision pauses, as the run records it. */
export const VIOLATION_PAUSE_REASON: Partial<Record<ViolationType, PauseReason>> = {
  POLICY_DISABLED: 'POLICY_CHANGE',
  LIMIT_CHANGED: 'POLICY_CHANGE',
  APPROVAL_REQUIRED: 'APPROVAL_REQUIRED',
};

/**
 * Who may lift any pause, whoever set it: a pause whose sender named other authorities only still
 * admits these, so no signal can lock the tenant's admin and the founder out of their own run.
 */
export const ALWAYS_MAY_RESUME = ['TENANT_ADMIN', 'FOUNDER_ONLY'] as const satisfies readonly ResumeAuthority[];

/** Who may resume a pause of each kind (seed §13.5); the founder always may. */
export const DEFAULT_RESUME_AUTHORITIES: Readonly<Record<PauseReason, readonly ResumeAuthority[]>> = {
  POLICY_CHANGE: ['TENANT_ADMIN', 'FOUNDER_ONLY'],
  BUDGET_WARNING: ['TENANT_ADMIN', 'API_KEY_OWNER', 'FOUNDER_ONLY'],
  APPROVAL_REQUIRED: ['TENANT_ADMIN', 'FOUNDER_ONLY'],
  RATE_LIMIT_SOFT: ['SYSTEM_AUTO', 'TENANT_ADMIN', 'TENANT_USER', 'FOUNDER_ONLY'],
  MANUAL_PAUSE: ['TENANT_ADMIN', 'TENANT_USER', 'API_KEY_OWNER', 'FOUNDER_ONLY'],
  // Not the submitter: whoever started an agent does not approve what it does on their behalf.
  TOOL_APPROVAL: ['TENANT_ADMIN', 'FOUNDER_ONLY'],
};

export interface Violation {
  type: ViolationType;
  detail: string;
}

export interface PolicyCheckInput {
  /** The tenant's policy now, and the version the run last accepted. */
  current: { version: number; rules: PolicyRules };
  known: { version: number; rules: PolicyRules };
  tenantStatus: 'active' | 'suspended';
  stopRequested: boolean;
  /** The run's own budget, fixed at submit. */
  runBudgetUsd: number;
  costUsd: number;
  tokens: number;
  stepsCompleted: number;
  /** Skills of the steps not yet run, the next one first. */
  remainingSkills: readonly SkillName[];
  /** The next step was already approved by a resume. */
  nextStepApproved: boolean;
  /** Governed steps taken (plan steps, an agent's model turns and tool calls); `stepsCompleted` when absent. */
  actionsCompleted?: number;
}

export interface PolicyCheckResult {
  decision: PolicyDecision;
  reason: string;
  violations: Violation[];
  pauseReason: PauseReason | null;
}

/** Limits the new version tightened, relative to what the run accepted. */
function tightenedLimits(known: PolicyRules, current: PolicyRules, remaining: readonly SkillName[]): string[] {
  const changes: string[] = [];
  if (current.budgetPerRunUsd < known.budgetPerRunUsd) changes.push(`budget per run $${known.budgetPerRunUsd} -> $${current.budgetPerRunUsd}`);
  if (current.maxSteps < known.maxSteps) changes.push(`max steps ${known.maxSteps} -> ${current.maxSteps}`);
  if (current.maxTokens < known.maxTokens) changes.push(`max tokens ${known.maxTokens} -> ${current.maxTokens}`);
  const removed = [...new Set(remaining.filter((s) => known.allowedSkills.includes(s) && !current.allowedSkills.includes(s)))];
  if (removed.length) changes.push(`skills no longer allowed: ${removed.join(', ')}`);
  return changes;
}

/**
 * The decision table. A stop always terminates; with checks switched off nothing else is looked
 * at; otherwise any TERMINATE finding wins over any PAUSE finding, and no finding is CONTINUE.
 */
export function decidePolicy(input: PolicyCheckInput): PolicyCheckResult {
  if (input.stopRequested) {
    return summarizeViolations([{ type: 'MANUAL_STOP', detail: 'an operator asked the run to stop' }]);
  }
  const { rules } = input.current;
  if (!rules.midRunChecks) {
    return { decision: 'SKIP', reason: 'mid-run policy checks are disabled by the policy', violations: [], pauseReason: null };
  }

  const violations: Violation[] = [];
  if (input.tenantStatus === 'suspended') violations.push({ type: 'TENANT_SUSPENDED', detail: 'the tenant is suspended' });

  const budget = effectiveBudgetUsd(input.runBudgetUsd, rules.budgetPerRunUsd);
  if (isBudgetSpent(input.costUsd, budget)) {
    violations.push({ type: 'BUDGET_EXCEEDED', detail: `spent $${input.costUsd} of a $${budget} budget` });
  }
  if (input.tokens >= rules.maxTokens) {
    violations.push({ type: 'BUDGET_EXCEEDED', detail: `used ${input.tokens} tokens of ${rules.maxTokens}` });
  }
  const taken = input.actionsCompleted ?? input.stepsCompleted;
  if (input.remainingSkills.length > 0 && taken >= rules.maxSteps) {
    violations.push({ type: 'BUDGET_EXCEEDED', detail: `ran ${taken} steps, policy allows ${rules.maxSteps}` });
  }

  if (!rules.enabled) violations.push({ type: 'POLICY_DISABLED', detail: `policy version ${input.current.version} is disabled` });
  if (input.current.version !== input.known.version) {
    const changes = tightenedLimits(input.known.rules, rules, input.remainingSkills);
    if (changes.length) {
      violations.push({ type: 'LIMIT_CHANGED', detail: `policy v${input.known.version} -> v${input.current.version}: ${changes.join('; ')}` });
    }
  }
  const next = input.remainingSkills[0];
  if (next && rules.approvalSkills.includes(next) && !input.nextStepApproved) {
    violations.push({ type: 'APPROVAL_REQUIRED', detail: `skill ${next} needs approval before it runs` });
  }
  return summarizeViolations(violations);
}

/** The decision a set of findings makes (also used to rebuild a recorded decision). */
export function summarizeViolations(violations: Violation[]): PolicyCheckResult {
  if (violations.length === 0) return { decision: 'CONTINUE', reason: 'no violation', violations, pauseReason: null };
  const terminating = violations.filter((v) => VIOLATION_DECISION[v.type] === 'TERMINATE');
  const deciding = terminating.length ? terminating : violations;
  const decision = terminating.length ? 'TERMINATE' : 'PAUSE';
  return {
    decision,
    reason: deciding.map((v) => `${v.type}: ${v.detail}`).join('; '),
    violations,
    pauseReason: decision === 'PAUSE' ? (VIOLATION_PAUSE_REASON[deciding[0]!.type] ?? 'POLICY_CHANGE') : null,
  };
}

/** A pause's resume is allowed when any authority the caller holds is one the pause accepts. */
export function canResume(allowed: readonly ResumeAuthority[], held: readonly string[]): boolean {
  return held.some((a) => allowed.includes(a as ResumeAuthority));
}
