import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

/**
 * Domain writes retry until the database answers: an outage makes the run wait, not fail.
 * A write that keeps failing for another reason is made final by the worker's interceptor.
 */
export const domain = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

/** A skill call is retried a few times, then the step (and the run) fails. */
export const skills = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 3 },
});
