import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { STEP_HEARTBEAT_TIMEOUT_MS } from '../core/step-heartbeat';

/**
 * Domain writes are one short transaction each (milliseconds on a healthy database), but under a
 * burst a started write may wait for one of the pool's connections behind a hundred others; ten
 * seconds timed such writes out on a loaded 2-core machine and the retries fed the load. Thirty
 * bounds how long a write lost with its worker holds the run. They retry until the database
 * answers: an outage makes the run wait, not fail. A write that keeps failing for another reason
 * is made final by the worker's interceptor.
 */
export const domain = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

/**
 * A skill call may legitimately take minutes (a long completion), so its start-to-close is long;
 * a lost worker is detected by the step's heartbeat instead (`core/step-heartbeat.ts`). It is
 * retried a few times, then the step (and the run) fails.
 */
export const skills = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: STEP_HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 3 },
});
