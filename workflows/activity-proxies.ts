import { ActivityFailure, ApplicationFailure, isCancellation, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { DomainActivities, SkillActivities } from '../activities';
import { LOCAL_WRITE_ATTEMPTS, type HandedOnWrite } from '../core/retry-budget';
import { STEP_HEARTBEAT_TIMEOUT_MS } from '../core/step-heartbeat';
import type { RunPatches } from './patches';

/**
 * Domain writes are one short transaction each (milliseconds on a healthy database), but under a
 * burst a started write may wait for one of the pool's connections behind a hundred others; ten
 * seconds timed such writes out on a loaded 2-core machine and the retries fed the load. Thirty
 * bounds how long a write lost with its worker holds the run. They retry until the database
 * answers: an outage makes the run wait, not fail. A write that keeps failing for another reason
 * is made final by the worker's interceptor.
 */
const DOMAIN_WRITE_OPTIONS = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
} as const;

export const domain = proxyActivities<DomainActivities>(DOMAIN_WRITE_OPTIONS);
export type DomainWrites = typeof domain;

/**
 * The same writes as local activities: run by the worker that runs the workflow task and recorded
 * as one marker each, without a round trip through the server's task queues per write. Every write
 * is idempotent (keyed by run, step or action), so one repeated after a lost workflow task is a
 * no-op. Two quick attempts only: a write that still fails is handed to the task-queue activity,
 * where an outage is waited out in the open (a pending activity with its attempts and last
 * failure, queries answered meanwhile) and the retry budget of a non-transient error applies,
 * counting the local attempts (`core/retry-budget.ts`).
 */
const localDomain = proxyLocalActivities<DomainActivities>({
  startToCloseTimeout: DOMAIN_WRITE_OPTIONS.startToCloseTimeout,
  retry: { initialInterval: '200 milliseconds', maximumAttempts: LOCAL_WRITE_ATTEMPTS },
});

/** A local activity's failure comes bare or wrapped: only a cancellation or a final failure stops here. */
function handedOn(err: unknown): boolean {
  const failure = err instanceof ActivityFailure ? err.cause : err;
  return !isCancellation(err) && !(failure instanceof ApplicationFailure && failure.nonRetryable);
}

type Write = (input: object) => Promise<unknown>;

/** Each write as a local activity first and as a task-queue activity when that did not succeed. */
const localFirstDomain = new Proxy({} as DomainWrites, {
  get(_, name: string) {
    const queued = domain[name as keyof DomainWrites] as Write;
    const local = localDomain[name as keyof DomainWrites] as Write;
    return async (input: object) => {
      try {
        return await local(input);
      } catch (err) {
        if (!handedOn(err)) throw err;
        return queued({ ...input, localAttemptsBefore: LOCAL_WRITE_ATTEMPTS } satisfies HandedOnWrite);
      }
    };
  },
});

/** The run workflow's writes; called once, at the start of the run, so the choice is recorded there. */
export function runDomainWrites(patches: RunPatches): DomainWrites {
  return patches.has('localDomainWrites') ? localFirstDomain : domain;
}

/**
 * A skill call may legitimately take minutes (a long completion), so its start-to-close is long;
 * a lost worker is detected by the step's heartbeat instead (`core/step-heartbeat.ts`). It is
 * retried a few times, then the step (and the run) fails.
 */
export const skills = proxyActivities<SkillActivities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: STEP_HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 3 },
});
