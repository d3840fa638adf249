import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from '@temporalio/worker';
import { writeAttempt } from '../core/retry-budget';
import { isTransientError } from '../db/unavailable';
import type { FaultInjector } from './faults';

/**
 * Activities retry without limit so an outage only makes a run wait. An error that is not an
 * outage is a bug or bad data: after `maxAttempts` it becomes final, so the workflow can react
 * (the governance saga compensates).
 */
export class RetryBudgetInterceptor implements ActivityInboundCallsInterceptor {
  constructor(
    private readonly ctx: Context,
    private readonly maxAttempts: number,
    private readonly faults?: FaultInjector,
  ) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    try {
      await this.faults?.beforeActivity(this.ctx.info.activityType, input.args);
      const result = await next(input);
      this.faults?.afterActivity(this.ctx.info.activityType, input.args);
      return result;
    } catch (err) {
      if (err instanceof ApplicationFailure || err instanceof CancelledFailure || isTransientError(err)) throw err;
      const attempt = writeAttempt(this.ctx.info.attempt, input.args[0]);
      if (attempt >= this.maxAttempts) {
        const message = err instanceof Error ? err.message : String(err);
        throw ApplicationFailure.nonRetryable(
          `${this.ctx.info.activityType} gave up after ${attempt} attempts: ${message}`,
          err instanceof Error ? err.name : 'Error',
        );
      }
      throw err;
    }
  }
}
