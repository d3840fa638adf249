import { isBudgetSpent } from './budget';
import type { ToolPolicy } from './policy';
import { matchesAnyToolPattern, matchesToolPattern, type ToolId } from './tools';

/**
 * The rules an agent's loop is governed by, pure: which tool calls the tenant's policy lets run,
 * at what price and with whose approval, and the run's hard limits checked before every model
 * turn and tool call from the policy the run holds (no round trip).
 */

/** A tool call the model asked for, as the workflow sees it: its arguments stay in the store. */
export interface RequestedToolCall {
  callIndex: number;
  /** The provider's id for the call, which the tool's result must quote. */
  callId: string;
  /** `server.tool`; null when the model named a function no configured server offers. */
  tool: ToolId | null;
  functionName: string;
  /** sha256 of `tool`, a newline and the arguments exactly as the model wrote them: what an approval quotes. */
  argsSha256: string;
  argsBytes: number;
  /** The arguments' first characters, for people (the live view, the approval pause). */
  argsPreview: string;
}

export type ToolRefusalCode = 'UNKNOWN_TOOL' | 'TOOL_NOT_ALLOWED' | 'TOOL_CALL_LIMIT';

export type ToolCallRuling =
  | { ruling: 'run'; priceUsd: number; needsApproval: boolean }
  | { ruling: 'refuse'; code: ToolRefusalCode; reason: string };

/** A call's price: the first price pattern that matches it, else nothing. */
export function toolPriceUsd(policy: ToolPolicy, tool: ToolId): number {
  return policy.prices.find((p) => matchesToolPattern(p.pattern, tool))?.usd ?? 0;
}

/**
 * What the policy says of one call. `narrowedTo` is the agent step's own `tools` list, which can
 * only narrow the policy; `callsSoFar` counts the run's calls that ran or were refused before it.
 */
export function ruleOnToolCall(
  policy: ToolPolicy,
  narrowedTo: readonly string[] | undefined,
  call: Pick<RequestedToolCall, 'tool' | 'functionName'>,
  callsSoFar: number,
): ToolCallRuling {
  if (callsSoFar >= policy.maxCallsPerRun) {
    return { ruling: 'refuse', code: 'TOOL_CALL_LIMIT', reason: `the run has made ${callsSoFar} tool calls, its policy allows ${policy.maxCallsPerRun}` };
  }
  const { tool } = call;
  if (tool === null) return { ruling: 'refuse', code: 'UNKNOWN_TOOL', reason: `no tool server offers a tool named '${call.functionName}'` };
  if (!matchesAnyToolPattern(policy.allow, tool) || (narrowedTo !== undefined && !matchesAnyToolPattern(narrowedTo, tool))) {
    return { ruling: 'refuse', code: 'TOOL_NOT_ALLOWED', reason: `tool ${tool} is not allowed for this run` };
  }
  return { ruling: 'run', priceUsd: toolPriceUsd(policy, tool), needsApproval: matchesAnyToolPattern(policy.requireApproval, tool) };
}

/** The tools a run may be offered: allowed by the policy and, when the step names some, by the step. */
export function offeredTools(policy: ToolPolicy, narrowedTo: readonly string[] | undefined, available: readonly ToolId[]): ToolId[] {
  return available.filter((tool) => matchesAnyToolPattern(policy.allow, tool) && (narrowedTo === undefined || matchesAnyToolPattern(narrowedTo, tool)));
}

export interface ActionLimits {
  maxSteps: number;
  maxTokens: number;
  budgetUsd: number;
}

export interface ActionProgress {
  /** Governed steps taken: plan steps, model turns and tool calls. */
  actionsCompleted: number;
  tokens: number;
  costUsd: number;
}

/**
 * Why the run may not take another governed step, or null: the same limits a policy check
 * enforces, read from the policy the run holds, so a fast loop meets them at once and not at its
 * next scheduled check.
 */
export function actionLimitReached(limits: ActionLimits, progress: ActionProgress): string | null {
  if (isBudgetSpent(progress.costUsd, limits.budgetUsd)) return `spent $${progress.costUsd} of a $${limits.budgetUsd} budget`;
  if (progress.tokens >= limits.maxTokens) return `used ${progress.tokens} tokens of ${limits.maxTokens}`;
  if (progress.actionsCompleted >= limits.maxSteps) return `took ${progress.actionsCompleted} governed steps, the policy allows ${limits.maxSteps}`;
  return null;
}
