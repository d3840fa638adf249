import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from '@temporalio/worker';
import type { FaultInjector } from './faults';

/** postgres.js connection error codes and SQLSTATEs that mean "try again later", not "this is wrong". */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '53300', // too_many_connections
  '57P01', // admin_shutdown
  '57P03', // cannot_connect_now
]);

export function isTransientError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (TRANSIENT_CODES.has(code) || code.startsWith('08'))) return true;
  }
  return false;
}

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
      if (this.ctx.info.attempt >= this.maxAttempts) {
        const message = err instanceof Error ? err.message : String(err);
        throw ApplicationFailure.nonRetryable(
          `${this.ctx.info.activityType} gave up after ${this.ctx.info.attempt} attempts: ${message}`,
          err instanceof Error ? err.name : 'Error',
        );
      }
      throw err;
    }
  }
}
