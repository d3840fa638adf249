import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { isTransientError } from '../db/unavailable';

/** Tries of a write that fails for another reason than an outage before the step's record is given up. */
const RECORD_TRIES = 3;
const FIRST_WAIT_MS = 500;
const LONGEST_WAIT_MS = 10_000;

/**
 * The database work of a step activity (a plan step, a model turn, a tool call), which holds a
 * result that cost money or had effects: an outage is waited out inside the activity, beating with
 * what it waits for (visible as the pending activity's heartbeat details), so the step is never run
 * again because its record could not be written. A write that keeps failing for another reason
 * ends the step RECORDING_FAILED, as a failed domain write ends a run.
 */
export async function recorded<T>(what: string, write: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  let failures = 0;
  for (let outageTries = 0; ; ) {
    try {
      return await write();
    } catch (err) {
      const message = innermostMessage(err);
      if (err instanceof ApplicationFailure) throw err;
      if (!isTransientError(err)) {
        failures += 1;
        if (failures >= RECORD_TRIES) throw ApplicationFailure.nonRetryable(`${what} failed ${failures} times: ${message}`, 'RECORDING_FAILED');
        continue;
      }
      outageTries += 1;
      ctx.heartbeat({ waitingFor: 'database', what, tries: outageTries, lastError: message });
      // Cancellable: a run stopped or a worker shut down does not wait out the outage here.
      await ctx.sleep(Math.min(LONGEST_WAIT_MS, FIRST_WAIT_MS * 2 ** (outageTries - 1)));
    }
  }
}

/** What the database said, not the query builder's wrapper around it ("Failed query: …"). */
function innermostMessage(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && e.cause instanceof Error && depth < 8; depth += 1) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
