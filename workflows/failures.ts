import { ActivityFailure } from '@temporalio/workflow';
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
