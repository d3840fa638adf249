import type { ConnectionLike } from '@temporalio/client';
import type { RequestHandler } from 'express';

/**
 * Bounds every Temporal call a request makes, together, by one deadline. The SDK keeps the
 * deadline in AsyncLocalStorage, so the route and everything it awaits inherit it without being
 * told; a route that sets a shorter one of its own (the live state of a run) keeps the shorter.
 *
 * Without it a call to an unreachable Temporal is retried by the SDK's gRPC interceptor for
 * 20-40 s before it fails. With it the call ends at the deadline with DEADLINE_EXCEEDED, which
 * the error handler answers 503 with Retry-After. The deadline comes from API_TEMPORAL_DEADLINE_MS
 * (4 s by default): a healthy start, signal or update takes tens of milliseconds, so it leaves
 * room for a transient retry or two, yet a caller hears "retry later" before its own HTTP client
 * or proxy would give up.
 *
 * Mount it after the body parser: the body arrives on socket events, which run outside the
 * context it sets.
 */
export function boundTemporalCalls(connection: ConnectionLike, deadlineMs: number): RequestHandler {
  return (_req, _res, next) => {
    void connection.withDeadline(Date.now() + deadlineMs, async () => next());
  };
}
