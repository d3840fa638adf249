import type { RequestedToolCall } from './agent';
import type { OutboundEvent } from './events';
import type { FailureCode } from './outcome';
import type { OutputRef } from './outputs';
import type { RunPhase, RunStatus } from './phases';
import type { PlanStep, SkillName } from './plan';
import type { PolicyRules } from './policy';
import type { PolicyCheckResult } from './policy-check';
import type { PriceTable } from './pricing';
import type { SagaPhase } from './saga';
import type { ToolCallResolution } from './tool-calls';

/**
 * The contracts between the run workflow and its activities: what each activity is given and what
 * it answers. Types only, so workflow code imports them without importing an implementation.
 */

/** A move of the run's phase machine, as the workflow asks the stored run to make it. */
export interface TransitionInput {
  runId: string;
  from: RunPhase;
  to: RunPhase;
  status: RunStatus;
}

/** One tool call: the `callIndex`-th the model asked for in `turn` of agent step `stepIndex`. */
export interface ToolCallKey {
  stepIndex: number;
  turn: number;
  callIndex: number;
}

/** A tool call's resolution as recorded, what the workflow keeps of it. */
export interface ToolCallRecord {
  resolution: ToolCallResolution;
  output: OutputRef;
  costUsd: number;
  durationMs: number;
  thresholdCrossed: boolean;
}

/** A call the run decided not to run (refused by policy, denied by a person, cut off by the run's end), and what the model is told. */
export interface UnrunToolCall extends ToolCallKey {
  tool: string | null;
  argsSha256: string;
  resolution: Extract<ToolCallResolution, 'unknown_tool' | 'not_allowed' | 'denied' | 'limit' | 'not_run' | 'failed'>;
  message: string;
}

/** Phase moves the workflow made since its last write, recorded first in the transaction of the write that carries them. */
export interface CarriedMoves {
  transitions?: TransitionInput[];
}

export interface FinalizeRunInput extends TransitionInput, CarriedMoves {
  tenantId: string;
  sagaPhase: SagaPhase;
  error?: { code: FailureCode; message: string } | null;
  events?: OutboundEvent[];
}

export interface PolicyCheckRequest extends CarriedMoves {
  runId: string;
  tenantId: string;
  /** The run's n-th check; keys its evaluation row. */
  checkNumber: number;
  stepIndex: number;
  knownPolicyVersion: number;
  runBudgetUsd: number;
  costUsd: number;
  tokens: number;
  stepsCompleted: number;
  remainingSkills: SkillName[];
  nextStepApproved: boolean;
  stopRequested: boolean;
  /** Governed steps taken, an agent's turns and tool calls included (absent in runs without agents). */
  actionsCompleted?: number;
}

export interface PolicyCheckResponse extends PolicyCheckResult {
  policyVersion: number;
  rules: PolicyRules;
}

/** What the legacy `executeStep` returns to runs started before outputs were stored. */
export interface StepResult {
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
  durationMs: number;
  outputPreview: string;
}

export interface RunStepInput {
  runId: string;
  tenantId: string;
  stepIndex: number;
  step: PlanStep;
  /** The earlier steps this step's input refers to, by name (`core/references.ts`). */
  references: Record<string, number>;
  /** Spend at which the run is flagged HIGH risk and `threshold.exceeded` recorded (null: no policy held yet). */
  warningAtUsd: number | null;
}

/** A plan step as recorded: its usage and the reference to its stored output. */
export interface StepRecord {
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
  durationMs: number;
  output: OutputRef | null;
  /** Set when the step ran (and was paid for) but its result cannot stand. */
  failure: { code: 'OUTPUT_TOO_LARGE'; message: string } | null;
  thresholdCrossed: boolean;
}

export interface AgentTurnInput {
  runId: string;
  tenantId: string;
  stepIndex: number;
  turn: number;
  /** The tool patterns the tenant's policy allows (the step's own `tools` can only narrow them). */
  allowedTools: string[];
  /** The run's spend and budget, to refuse a turn whose bound would overrun it (unless accepted). */
  spentUsd: number;
  budgetUsd: number;
  acceptOverrun: boolean;
  prices?: PriceTable;
  warningAtUsd: number | null;
}

/** The model's reply, recorded; or the turn refused before the model was asked. */
export type AgentTurnResult =
  | { kind: 'refused'; predictedUsd: number; reason: string }
  | {
      /** `answered`: no tool call, the reply is the step's output. `tools`: it asks for calls. */
      kind: 'answered' | 'tools';
      model: string;
      tokensIn: number;
      tokensOut: number;
      costUsd: number;
      durationMs: number;
      /** The assistant message as stored (JSON). */
      output: OutputRef;
      /** The step's output, when the agent answered. */
      stepOutput: OutputRef | null;
      toolCalls: RequestedToolCall[];
      failure: { code: 'OUTPUT_TOO_LARGE'; message: string } | null;
      thresholdCrossed: boolean;
    };

export interface ToolCallInput {
  runId: string;
  tenantId: string;
  stepIndex: number;
  turn: number;
  callIndex: number;
  /** What the policy charges for the call. */
  priceUsd: number;
  warningAtUsd: number | null;
}
