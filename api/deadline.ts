import type { ConnectionLike } from '@temporalio/client';
import type { RequestHandler } from 'express';

/**
 * Bounds every Temporal call a request makes, together, by one deadline. The SDK keeps the
 * deadline in AsyncLocalStorage, so the route and everything it awaits inherit it without being
 * told; a route that sets one of its own (two seconds for the live state of a run) uses its own.
 *
 * Without it a call to an unreachable Temporal is retried by the SDK's gRPC interceptor for
 * 20-40 s before it fails. With it the call ends at the deadline with DEADLINE_EXCEEDED, which
 * the error handler answers 503 with Retry-After. The deadline comes from API_TEMPORAL_DEADLINE_MS
 * (5 s by default): a healthy start, signal or update takes tens of milliseconds, and the budget
 * also covers the database work a route does before its Temporal call, so it leaves room for a
 * loaded server and a transient retry or two, yet a caller hears "retry later" before its own
 * HTTP client or proxy would give up (commonly 10-30 s).
 *
 * Mount it after the body parser: the body arrives on socket events, which run outside the
 * context it sets.
 */
export function boundTemporalCalls(connection: ConnectionLike, deadlineMs: number): RequestHandler {
  return (_req, _res, next) => {
    void connection.withDeadline(Date.now() + deadlineMs, async () => next());
  };
}
