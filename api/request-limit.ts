import type { RequestHandler } from 'express';
import { callerOf } from './auth';
import { rateLimitHeaders, tooManyRequests, type SharedControlState } from './shared-counters';

/** What a 429 from this limit names (`limit` in the problem). */
export const REQUEST_LIMIT_NAME = 'requests_per_key';

const WINDOW_SECONDS = 60;

/**
 * Every authenticated request counts against its key's allowance per minute: the tenant's own
 * (`tenants.requests_per_minute`) or the deployment's. Every answer says where the key stands
 * (RateLimit-* headers); past the allowance, 429 with Retry-After. One runaway client then slows
 * only itself, whichever copy of the API it reaches.
 */
export function limitRequestsPerKey(state: SharedControlState, defaultPerMinute: number): RequestHandler {
  return async (_req, res, next) => {
    const caller = callerOf(res);
    const allowance = caller.requestsPerMinute ?? defaultPerMinute;
    const { count, resetInMs } = await state.count(`requests:${caller.apiKeyId}`, WINDOW_SECONDS * 1000);
    res.set(rateLimitHeaders({ limit: allowance, windowSeconds: WINDOW_SECONDS, remaining: allowance - count, resetInMs }));
    if (count > allowance) throw tooManyRequests(REQUEST_LIMIT_NAME, `this API key made ${allowance} requests in ${WINDOW_SECONDS} s`, resetInMs);
    next();
  };
}
