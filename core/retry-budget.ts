/**
 * A domain write is tried as a local activity first, a few times, then handed to the task-queue
 * activity. Its retry budget (for errors that are not an outage) covers both: the handed-on
 * activity is told how many local attempts came before it and counts them as its own.
 */
export const LOCAL_WRITE_ATTEMPTS = 2;

/** What a handed-on write carries beside its input. */
export interface HandedOnWrite {
  localAttemptsBefore?: number;
}

/** The attempt a write is on, counting the local attempts that came before it was handed on. */
export function writeAttempt(activityAttempt: number, input: unknown): number {
  const before = (input as HandedOnWrite | undefined)?.localAttemptsBefore;
  return activityAttempt + (typeof before === 'number' && before > 0 ? before : 0);
}
