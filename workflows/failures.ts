import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { FailureCode, RunOutcome } from '../core/outcome';
import type { FailedStatus } from '../core/phases';

export function failed(status: FailedStatus, code: FailureCode, message: string): RunOutcome {
  return { kind: 'failed', status, code, message };
}

/** The reason to record: an activity's own failure, not the wrapper that says an activity failed. */
export function describeFailure(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** Step failures an activity names with a code of the run's own; any other is `fallback`. */
const STEP_FAILURE_CODES: ReadonlySet<FailureCode> = new Set(['OUTPUT_TOO_LARGE', 'REFERENCE_UNRESOLVED', 'RECORDING_FAILED', 'LLM_USAGE_INVALID']);

export function failureCodeOf(err: unknown, fallback: FailureCode): FailureCode {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  const type = cause instanceof ApplicationFailure ? cause.type : undefined;
  return type && STEP_FAILURE_CODES.has(type as FailureCode) ? (type as FailureCode) : fallback;
}
