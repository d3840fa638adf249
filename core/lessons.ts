/**
 * Lessons learned (seed FIX-002, §6.1 G-005), pure: what a run that failed or came close has to
 * teach, how lessons group into a tenant's patterns, and which patterns propose a policy change.
 * The governance saga records the lesson (activities/lessons.ts); an admin accepts or dismisses a
 * proposal (api/lessons.ts). Nothing here changes a policy: it only says what a change would be.
 */
import type { FailureCode, RunOutcome } from './outcome';
import type { RunPhase } from './phases';
import { policyRules, type PolicyRules } from './policy';
import type { ToolCallResolution } from './tool-calls';
import { matchesAnyToolPattern } from './tools';

export { RECORD_LESSON } from './audit';

/** What happened short of a failure that still deserves a lesson. */
export const NEAR_MISS_CODES = ['BUDGET_WARNING', 'PAUSE_TIMEOUT', 'TOOL_DENIED', 'TOOL_CALL_LIMIT', 'OUTCOME_UNKNOWN'] as const;
export type NearMissCode = (typeof NEAR_MISS_CODES)[number];
export type LessonCode = FailureCode | NearMissCode;

/**
 * A person's stop is their decision, not something the run got wrong; every other failure teaches.
 * (GOVERNANCE_ERROR included: it is the outcome of a saga that could not stand, so its lesson,
 * rolled back with the saga, is reported missing with the incident and the evaluation.)
 */
const NOTHING_TO_LEARN: ReadonlySet<FailureCode> = new Set(['STOPPED']);

/** The rule of the policy document a code is about; null when no single rule is. */
const RULE_OF: Partial<Record<LessonCode, string>> = {
  AUTHORIZATION_DENIED: 'enabled',
  BUDGET_EXCEEDED: 'budgetPerRunUsd',
  BUDGET_WARNING: 'warningThresholdPct',
  POLICY_TERMINATED: 'maxSteps',
  PAUSE_TIMEOUT: 'pauseSlaSeconds',
  TOOL_CALL_LIMIT: 'tools.maxCallsPerRun',
  TOOL_DENIED: 'tools.allow',
  OUTCOME_UNKNOWN: 'tools.allow',
  OBSERVABILITY_REQUIRED: 'observabilityMode',
};

/** Tool call resolutions that are near misses, and the code each teaches. */
const TOOL_NEAR_MISSES: Partial<Record<ToolCallResolution, NearMissCode>> = {
  not_allowed: 'TOOL_DENIED',
  denied: 'TOOL_DENIED',
  limit: 'TOOL_CALL_LIMIT',
  outcome_unknown: 'OUTCOME_UNKNOWN',
};

/** One thing that went wrong or nearly did, in a structured form. */
export interface Observation {
  code: LessonCode;
  /** The run's phase when it happened (the phase a failure ended the run in). */
  phase: RunPhase | null;
  stepIndex: number | null;
  skill: string | null;
  /** `server.tool` for a tool call's near miss. */
  tool: string | null;
  policyRule: string | null;
  /** What the run had spent when it happened. */
  spendUsd: number | null;
  /** For a tool call: how it was resolved (`not_allowed`, `denied`, …); for a pause: its reason. */
  detail: string | null;
}

/** What the database holds of a run that may be a near miss (db/lessons.ts reads it). */
export interface NearMissFacts {
  toolCalls: { stepIndex: number; tool: string | null; resolution: string; spendUsd: number }[];
  /** The run crossed its warning threshold (`threshold.exceeded`). */
  budgetWarning: { stepIndex: number | null; spendUsd: number | null } | null;
  /** Pauses whose SLA ran out (whatever the behaviour: CONTINUE, ESCALATE or TERMINATE). */
  pauseTimeouts: { detail: string | null }[];
}

/** Where the run stood when its outcome was decided. */
export interface EndPoint {
  phase: RunPhase;
  stepIndex: number;
  costUsd: number;
  /** The plan's skills, by step. */
  skills: readonly string[];
}

export interface Lesson {
  kind: 'failure' | 'near_miss';
  /** The observation the lesson is filed under (the failure, else the first near miss). */
  primary: Observation;
  /** Everything the run had to teach, the primary first. */
  observations: Observation[];
}

export function nearMisses(facts: NearMissFacts, skills: readonly string[]): Observation[] {
  const observations: Observation[] = [];
  for (const call of facts.toolCalls) {
    const code = TOOL_NEAR_MISSES[call.resolution as ToolCallResolution];
    if (!code) continue;
    observations.push({
      code,
      phase: 'EXECUTING',
      stepIndex: call.stepIndex,
      skill: skills[call.stepIndex] ?? null,
      tool: call.tool,
      policyRule: code === 'TOOL_DENIED' && call.resolution === 'denied' ? 'tools.requireApproval' : (RULE_OF[code] ?? null),
      spendUsd: call.spendUsd,
      detail: call.resolution,
    });
  }
  if (facts.budgetWarning) {
    const { stepIndex, spendUsd } = facts.budgetWarning;
    observations.push({
      code: 'BUDGET_WARNING',
      phase: 'EXECUTING',
      stepIndex,
      skill: stepIndex === null ? null : (skills[stepIndex] ?? null),
      tool: null,
      policyRule: RULE_OF.BUDGET_WARNING!,
      spendUsd,
      detail: null,
    });
  }
  for (const pause of facts.pauseTimeouts) {
    observations.push({ code: 'PAUSE_TIMEOUT', phase: 'EXECUTING', stepIndex: null, skill: null, tool: null, policyRule: RULE_OF.PAUSE_TIMEOUT!, spendUsd: null, detail: pause.detail });
  }
  return observations;
}

/** Whether a run's failure teaches anything (before the near misses are looked at). */
export function failureTeaches(code: FailureCode): boolean {
  return !NOTHING_TO_LEARN.has(code);
}

/**
 * The lesson of a run, or null when it has nothing to teach (it succeeded cleanly, or a person
 * stopped it and nothing nearly went wrong before). A failure that a tool call caused is filed
 * under that tool, so its runs and the near misses of the same tool make one pattern.
 */
export function lessonOf(outcome: RunOutcome, end: EndPoint, facts: NearMissFacts): Lesson | null {
  const observed = nearMisses(facts, end.skills);
  if (outcome.kind === 'failed' && failureTeaches(outcome.code)) {
    const cause = observed.find((o) => o.code === outcome.code && o.tool);
    const failure: Observation = {
      code: outcome.code,
      phase: end.phase,
      stepIndex: cause?.stepIndex ?? (end.stepIndex < end.skills.length ? end.stepIndex : null),
      skill: cause?.skill ?? end.skills[end.stepIndex] ?? null,
      tool: cause?.tool ?? null,
      policyRule: cause?.policyRule ?? RULE_OF[outcome.code] ?? null,
      spendUsd: end.costUsd,
      detail: cause?.detail ?? null,
    };
    return { kind: 'failure', primary: failure, observations: [failure, ...observed] };
  }
  if (observed.length === 0) return null;
  return { kind: 'near_miss', primary: observed[0]!, observations: observed };
}

/** Whether the run owes a lesson: the same rule the saga's lesson step follows, for its audit contract. */
export function owesLesson(outcome: RunOutcome, facts: NearMissFacts): boolean {
  if (outcome.kind === 'failed' && failureTeaches(outcome.code)) return true;
  return nearMisses(facts, []).length > 0;
}

/** A plan's identity across runs: its skills in order. */
export function planKeyOf(skills: readonly string[]): string {
  return skills.join('>');
}

/**
 * The same code at the same tool (for a tool's lesson) or at the same step and skill (for any
 * other): the identity of a pattern within a tenant.
 */
export function patternKeyOf(o: Pick<Observation, 'code' | 'stepIndex' | 'skill' | 'tool'>): string {
  return o.tool ? `${o.code}:tool:${o.tool}` : `${o.code}:step:${o.stepIndex ?? '-'}:${o.skill ?? '-'}`;
}

// ---- proposals ----

/** The thresholds at which a pattern proposes a policy change. */
export const PROPOSAL_THRESHOLDS = {
  /** Calls of one tool refused (by the policy, or by a person) across runs. */
  toolDenials: 20,
  /** Approvals of one tool, every one approved. */
  toolApprovals: 20,
  /** Share of one plan's finished runs that ended BUDGET_EXCEEDED … */
  budgetExceededShare: 0.3,
  /** … out of at least this many runs. */
  budgetExceededMinRuns: 10,
} as const;

export const PROPOSAL_KINDS = ['allow_tool_with_approval', 'disallow_tool', 'drop_tool_approval', 'raise_budget'] as const;
export type ProposalKind = (typeof PROPOSAL_KINDS)[number];

/** One edit of the policy document, re-applied to the current version when accepted. */
export type PolicyChange =
  | { op: 'add'; path: 'tools.allow' | 'tools.requireApproval'; value: string }
  | { op: 'remove'; path: 'tools.allow' | 'tools.requireApproval'; value: string }
  | { op: 'set'; path: 'budgetPerRunUsd'; value: number };

export interface ProposalDraft {
  kind: ProposalKind;
  patternKey: string;
  reason: string;
  changes: PolicyChange[];
  /** The counts that crossed the threshold. */
  evidence: Record<string, number | string>;
}

/** A tool's refusals across the tenant's lessons, by who refused. */
export interface ToolDenialStats {
  tool: string;
  byPolicy: number;
  byPerson: number;
  /** Approvals of the tool a person granted (any run). */
  approved: number;
}

export function proposeForToolDenials(stats: ToolDenialStats, policy: PolicyRules): ProposalDraft | null {
  const patternKey = patternKeyOf({ code: 'TOOL_DENIED', stepIndex: null, skill: null, tool: stats.tool });
  const evidence = { tool: stats.tool, byPolicy: stats.byPolicy, byPerson: stats.byPerson, approved: stats.approved };
  const { allow, requireApproval } = policy.tools;
  // People refuse it every time they are asked: stop offering it (when the policy names it on its own).
  if (stats.byPerson >= PROPOSAL_THRESHOLDS.toolDenials && stats.approved === 0 && allow.includes(stats.tool)) {
    const changes: PolicyChange[] = [{ op: 'remove', path: 'tools.allow', value: stats.tool }];
    if (requireApproval.includes(stats.tool)) changes.push({ op: 'remove', path: 'tools.requireApproval', value: stats.tool });
    return { kind: 'disallow_tool', patternKey, evidence, changes, reason: `${stats.tool} was denied by a person ${stats.byPerson} times and never approved: stop offering it to agents` };
  }
  // Agents keep asking for a tool the policy does not allow: let a person decide each call.
  if (stats.byPolicy >= PROPOSAL_THRESHOLDS.toolDenials && !matchesAnyToolPattern(allow, stats.tool)) {
    const changes: PolicyChange[] = [{ op: 'add', path: 'tools.allow', value: stats.tool }];
    if (!matchesAnyToolPattern(requireApproval, stats.tool)) changes.push({ op: 'add', path: 'tools.requireApproval', value: stats.tool });
    return {
      kind: 'allow_tool_with_approval',
      patternKey,
      evidence,
      changes,
      reason: `agents asked for ${stats.tool} ${stats.byPolicy} times and the policy refused it each time: allow it, with a person approving each call`,
    };
  }
  return null;
}

/** A tool's approvals: how many a person granted, denied, or let run out. */
export interface ToolApprovalStats {
  tool: string;
  approved: number;
  denied: number;
  expired: number;
}

export function proposeForToolApprovals(stats: ToolApprovalStats, policy: PolicyRules): ProposalDraft | null {
  if (stats.approved < PROPOSAL_THRESHOLDS.toolApprovals || stats.denied > 0 || stats.expired > 0) return null;
  if (!policy.tools.requireApproval.includes(stats.tool)) return null;
  return {
    kind: 'drop_tool_approval',
    patternKey: `APPROVED:tool:${stats.tool}`,
    evidence: { tool: stats.tool, approved: stats.approved, denied: 0, expired: 0 },
    changes: [{ op: 'remove', path: 'tools.requireApproval', value: stats.tool }],
    reason: `${stats.tool} was approved ${stats.approved} times out of ${stats.approved}: drop its approval`,
  };
}

/** One plan's finished runs, and those that ended BUDGET_EXCEEDED with what they had spent. */
export interface PlanBudgetStats {
  planKey: string;
  runs: number;
  budgetExceeded: number;
  highestSpendUsd: number;
}

export function proposeForBudget(stats: PlanBudgetStats, policy: PolicyRules): ProposalDraft | null {
  const { budgetExceededShare, budgetExceededMinRuns } = PROPOSAL_THRESHOLDS;
  if (stats.runs < budgetExceededMinRuns || stats.budgetExceeded < stats.runs * budgetExceededShare) return null;
  // Half as much again, or a quarter over the most any of them spent, whichever is more; in cents.
  const proposed = Math.min(1_000_000, Math.ceil(Math.max(policy.budgetPerRunUsd * 1.5, stats.highestSpendUsd * 1.25) * 100) / 100);
  if (proposed <= policy.budgetPerRunUsd) return null;
  const pct = Math.round((stats.budgetExceeded / stats.runs) * 100);
  return {
    kind: 'raise_budget',
    patternKey: `BUDGET_EXCEEDED:plan:${stats.planKey}`,
    evidence: { planKey: stats.planKey, runs: stats.runs, budgetExceeded: stats.budgetExceeded, highestSpendUsd: stats.highestSpendUsd },
    changes: [{ op: 'set', path: 'budgetPerRunUsd', value: proposed }],
    reason: `${stats.budgetExceeded} of ${stats.runs} runs (${pct}%) of plan ${stats.planKey} ran out of budget: raise the budget per run`,
  };
}

/** The policy with the changes made; null when they change nothing (already made, or undone since). */
export function applyChanges(rules: PolicyRules, changes: readonly PolicyChange[]): PolicyRules | null {
  const next: PolicyRules = { ...rules, tools: { ...rules.tools, allow: [...rules.tools.allow], requireApproval: [...rules.tools.requireApproval] } };
  let changed = false;
  for (const change of changes) {
    if (change.op === 'set') {
      if (next[change.path] !== change.value) {
        next[change.path] = change.value;
        changed = true;
      }
      continue;
    }
    const list = change.path === 'tools.allow' ? next.tools.allow : next.tools.requireApproval;
    const at = list.indexOf(change.value);
    if (change.op === 'add' && at < 0) {
      list.push(change.value);
      changed = true;
    } else if (change.op === 'remove' && at >= 0) {
      list.splice(at, 1);
      changed = true;
    }
  }
  if (!changed) return null;
  const parsed = policyRules.safeParse(next);
  return parsed.success ? parsed.data : null;
}

/** One line of a policy's diff: a rule, before and after (arrays compared whole). */
export interface PolicyDiffLine {
  path: string;
  before: unknown;
  after: unknown;
}

function leaves(value: unknown, prefix: string, out: Map<string, unknown>): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) leaves(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, value);
  }
}

export function policyDiff(before: PolicyRules, after: PolicyRules): PolicyDiffLine[] {
  const a = new Map<string, unknown>();
  const b = new Map<string, unknown>();
  leaves(before, '', a);
  leaves(after, '', b);
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  return paths.filter((p) => JSON.stringify(a.get(p)) !== JSON.stringify(b.get(p))).map((path) => ({ path, before: a.get(path), after: b.get(path) }));
}

/** The diff as text, `-` the rule now and `+` as the proposal would make it. */
export function diffText(lines: readonly PolicyDiffLine[]): string {
  return lines.flatMap((l) => [`- ${l.path}: ${JSON.stringify(l.before)}`, `+ ${l.path}: ${JSON.stringify(l.after)}`]).join('\n');
}
