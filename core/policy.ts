import { z } from 'zod';
import { SKILL_NAMES, type SkillName } from './plan';
import { DEFAULT_TOOL_POLICY, TOOL_DENIAL_BEHAVIORS, TOOL_PATTERN, type ToolDenialBehavior, type ToolPolicy } from './tools';

export const OBSERVABILITY_MODES = ['STRICT', 'DEGRADED', 'PERMISSIVE'] as const;
export type ObservabilityMode = (typeof OBSERVABILITY_MODES)[number];

export const PAUSE_TIMEOUT_BEHAVIORS = ['TERMINATE', 'CONTINUE', 'ESCALATE'] as const;
export type PauseTimeoutBehavior = (typeof PAUSE_TIMEOUT_BEHAVIORS)[number];

/** What a run does before a step whose predicted cost would take it over its budget. */
export const PREDICTED_OVERRUN_BEHAVIORS = ['TERMINATE', 'PAUSE'] as const;
export type PredictedOverrunBehavior = (typeof PREDICTED_OVERRUN_BEHAVIORS)[number];

const skillName = z.enum(SKILL_NAMES as [SkillName, ...SkillName[]]);

const toolPattern = z.string().regex(TOOL_PATTERN, "a tool pattern: 'server.tool', 'server.*' or '*'");

/**
 * Which tools an agent may call, per tenant. Tools are declared by the operator on the worker; the
 * policy only ever narrows them. Nothing is allowed until the tenant says so.
 */
export const toolPolicy = z
  .object({
    allow: z.array(toolPattern).max(200).default([]),
    /** Calls that pause for a person (TOOL_APPROVAL), who approves the exact arguments. */
    requireApproval: z.array(toolPattern).max(200).default([]),
    maxCallsPerRun: z.number().int().min(0).max(100_000).default(100),
    /** USD per call, by pattern (the first match counts); a tool not listed costs nothing. */
    prices: z.array(z.object({ pattern: toolPattern, usd: z.number().min(0).max(1_000) }).strict()).max(200).default([]),
    /** A call refused by this policy (not allowed, over the limit, denied by a person). */
    onDenied: z.enum(TOOL_DENIAL_BEHAVIORS).default('RETURN_TO_MODEL'),
  })
  .strict();

// The schema and core/tools.ts's plain type must describe the same document, both ways.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const toolPolicyTypesAgree: Same<z.infer<typeof toolPolicy>, ToolPolicy> = true;
void toolPolicyTypesAgree;

export { DEFAULT_TOOL_POLICY, TOOL_DENIAL_BEHAVIORS, type ToolDenialBehavior, type ToolPolicy };

/** A tenant's policy document; each accepted change is stored as a new version. */
export const policyRules = z
  .object({
    enabled: z.boolean(),
    budgetPerRunUsd: z.number().positive().max(1_000_000),
    maxSteps: z.number().int().positive().max(10_000),
    maxTokens: z.number().int().positive().max(1_000_000_000),
    allowedSkills: z.array(skillName).min(1),
    approvalSkills: z.array(skillName),
    /** Percent of the run's budget at which the run is flagged and `threshold.exceeded` recorded. */
    warningThresholdPct: z.number().min(1).max(100),
    midRunChecks: z.boolean(),
    checkIntervalSeconds: z.number().min(0).max(86_400),
    pauseSlaSeconds: z.number().positive().max(30 * 86_400),
    pauseWarningSeconds: z.number().min(0).max(30 * 86_400),
    pauseTimeoutBehavior: z.enum(PAUSE_TIMEOUT_BEHAVIORS),
    /** Overrides the environment's default mode when set. */
    observabilityMode: z.enum(OBSERVABILITY_MODES).nullable(),
    /** Pause a run (BUDGET_WARNING) when it crosses the warning threshold, not only alert. */
    pauseOnThreshold: z.boolean().default(false),
    /** TERMINATE (BUDGET_EXCEEDED) or PAUSE (BUDGET_WARNING) a run before a step predicted to overrun its budget. */
    onPredictedOverrun: z.enum(PREDICTED_OVERRUN_BEHAVIORS).default('TERMINATE'),
    tools: toolPolicy.default(DEFAULT_TOOL_POLICY),
  })
  .strict()
  .refine((p) => p.pauseWarningSeconds < p.pauseSlaSeconds, {
    message: 'pauseWarningSeconds must be shorter than pauseSlaSeconds',
    path: ['pauseWarningSeconds'],
  });

export type PolicyRules = z.infer<typeof policyRules>;

export const DEFAULT_POLICY: PolicyRules = {
  enabled: true,
  budgetPerRunUsd: 5,
  maxSteps: 50,
  maxTokens: 2_000_000,
  allowedSkills: [...SKILL_NAMES],
  approvalSkills: [],
  warningThresholdPct: 80,
  midRunChecks: true,
  checkIntervalSeconds: 30,
  pauseSlaSeconds: 3600,
  pauseWarningSeconds: 300,
  pauseTimeoutBehavior: 'TERMINATE',
  observabilityMode: null,
  pauseOnThreshold: false,
  onPredictedOverrun: 'TERMINATE',
  tools: DEFAULT_TOOL_POLICY,
};

/** JSON with every object's keys in order and undefined members left out: equal documents, equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * True when two policies say the same thing, each read with the schema's defaults (a rule added
 * since a version was stored counts as its default): a PUT of such a policy changes nothing.
 */
export function samePolicyRules(a: PolicyRules, b: PolicyRules): boolean {
  const normal = (rules: PolicyRules) => {
    const parsed = policyRules.safeParse(rules);
    return canonicalJson(parsed.success ? parsed.data : rules);
  };
  return normal(a) === normal(b);
}
