import type { FailedStatus } from './phases';

/** Why a run failed; stored on the run and carried by its incident. */
export type FailureCode =
  | 'AUTHORIZATION_DENIED'
  | 'STEP_FAILED'
  | 'BUDGET_EXCEEDED'
  | 'OBSERVABILITY_REQUIRED'
  | 'GOVERNANCE_ERROR'
  | 'POLICY_TERMINATED'
  | 'PAUSE_TIMEOUT'
  | 'STOPPED'
  /** The run could not record its own progress (a write that failed for good); see `runWorkflow`. */
  | 'RECORDING_FAILED'
  /** The run's workflow could not finalize it; written by its last-resort activity. */
  | 'RUN_NOT_FINALIZED'
  /** The API could not start the run's workflow (before the starter existed); kept for old rows. */
  | 'WORKFLOW_START_FAILED'
  /** A step's output was over `MAX_STEP_OUTPUT_BYTES`: it is refused whole, never truncated. */
  | 'OUTPUT_TOO_LARGE'
  /** A step's reference to an earlier output could not be resolved (no output, not JSON, nothing at the pointer). */
  | 'REFERENCE_UNRESOLVED'
  /** An agent used all its `maxTurns` without answering. */
  | 'AGENT_TURNS_EXHAUSTED'
  /** An agent asked for more tool calls than the policy's `maxCallsPerRun`. */
  | 'TOOL_CALL_LIMIT'
  /** A tool call was refused or denied under a policy whose `onDenied` is FAIL_RUN. */
  | 'TOOL_DENIED'
  /**
   * The provider's token usage was missing or not a count (negative, fractional, over 10,000,000):
   * the call's cost cannot be accounted, so the run cannot be governed past it.
   */
  | 'LLM_USAGE_INVALID';

export type RunOutcome =
  | { kind: 'succeeded' }
  | { kind: 'failed'; status: FailedStatus; code: FailureCode; message: string };

export const FAILURE_SEVERITY: Readonly<Record<FailureCode, 'LOW' | 'MEDIUM' | 'HIGH' | 'CRITICAL'>> = {
  AUTHORIZATION_DENIED: 'MEDIUM',
  STEP_FAILED: 'HIGH',
  BUDGET_EXCEEDED: 'HIGH',
  OBSERVABILITY_REQUIRED: 'HIGH',
  GOVERNANCE_ERROR: 'CRITICAL',
  POLICY_TERMINATED: 'HIGH',
  PAUSE_TIMEOUT: 'HIGH',
  STOPPED: 'LOW',
  RECORDING_FAILED: 'CRITICAL',
  RUN_NOT_FINALIZED: 'CRITICAL',
  WORKFLOW_START_FAILED: 'HIGH',
  OUTPUT_TOO_LARGE: 'MEDIUM',
  REFERENCE_UNRESOLVED: 'MEDIUM',
  AGENT_TURNS_EXHAUSTED: 'MEDIUM',
  TOOL_CALL_LIMIT: 'HIGH',
  TOOL_DENIED: 'MEDIUM',
  LLM_USAGE_INVALID: 'HIGH',
};
