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
  | 'WORKFLOW_START_FAILED';

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
};
