import Redis from 'ioredis';
import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';

/** Limits on failed API key lookups (`api/auth-throttle.ts`). */
export function authLimitsOf(config: Pick<Config, 'AUTH_FAILURE_WINDOW_SECONDS' | 'AUTH_FAILURES_PER_ADDRESS' | 'AUTH_FAILURES_PER_KEY'>) {
  return { windowSeconds: config.AUTH_FAILURE_WINDOW_SECONDS, perAddress: config.AUTH_FAILURES_PER_ADDRESS, perKey: config.AUTH_FAILURES_PER_KEY };
}

/** Rate limits and coalescing of control requests (`api/rate-limit.ts`). */
export function controlLimitsOf(
  config: Pick<Config, 'CONTROL_RATE_LIMIT_WINDOW_SECONDS' | 'CONTROL_RATE_LIMIT_PER_KEY' | 'CONTROL_RATE_LIMIT_PER_RUN' | 'CONTROL_COALESCE_SECONDS'>,
) {
  return {
    windowSeconds: config.CONTROL_RATE_LIMIT_WINDOW_SECONDS,
    perKey: config.CONTROL_RATE_LIMIT_PER_KEY,
    perRun: config.CONTROL_RATE_LIMIT_PER_RUN,
    coalesceSeconds: config.CONTROL_COALESCE_SECONDS,
  };
}

/** What the HTTP server holds a client to (`api/server.ts`): the headers' timeout is at most the whole request's. */
export function serverLimitsOf(config: Pick<Config, 'API_REQUEST_TIMEOUT_MS' | 'API_HEADERS_TIMEOUT_MS' | 'API_MAX_CONNECTIONS'>) {
  return {
    requestTimeoutMs: config.API_REQUEST_TIMEOUT_MS,
    headersTimeoutMs: Math.min(config.API_HEADERS_TIMEOUT_MS, config.API_REQUEST_TIMEOUT_MS),
    maxConnections: config.API_MAX_CONNECTIONS,
  };
}

/** API_TRUST_PROXY as express takes it: `true`/`false`, a hop count, or the proxies' addresses. */
export function trustProxyOf(value: string): boolean | number | string {
  if (value === 'true' || value === 'false') return value === 'true';
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** Where the reactors beat, for `/healthz`. */
export function reactorsOf(config: Pick<Config, 'EVENT_STREAM' | 'REACTOR_HEARTBEAT_INTERVAL_SECONDS' | 'REACTOR_HEARTBEAT_MISS_THRESHOLD'>) {
  return {
    stream: config.EVENT_STREAM,
    heartbeatIntervalMs: config.REACTOR_HEARTBEAT_INTERVAL_SECONDS * 1000,
    missThreshold: config.REACTOR_HEARTBEAT_MISS_THRESHOLD,
  };
}

/**
 * Everything of the API's dependencies (`createApp`) that its configuration decides; the caller
 * adds its connections, its logger and its metrics. `watchReactors: false` for an API whose
 * deployment runs no reactor it could see beat (a test stack without events, a bench, a drill's
 * in-process API): `/healthz` then does not wait for them.
 */
export function apiSettingsOf(config: Config, { watchReactors = true }: { watchReactors?: boolean } = {}) {
  return {
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    bodyLimit: config.API_BODY_LIMIT,
    temporalDeadlineMs: config.API_TEMPORAL_DEADLINE_MS,
    defaultObservabilityMode: config.OBSERVABILITY_MODE,
    runDeadlineSeconds: config.RUN_TIMEOUT_SECONDS + config.RUN_DEADLINE_GRACE_SECONDS,
    auditIntervalSeconds: config.AUDIT_RECONCILE_INTERVAL,
    temporalCallTimeoutMs: config.TEMPORAL_CALL_TIMEOUT_MS,
    pushConcurrency: config.PUSH_CONCURRENCY,
    ...(watchReactors ? { reactors: reactorsOf(config) } : {}),
    controlLimits: controlLimitsOf(config),
    authLimits: authLimitsOf(config),
    requestsPerMinute: config.API_RATE_LIMIT_PER_MINUTE,
    trustProxy: trustProxyOf(config.API_TRUST_PROXY),
  };
}

/** The API's Redis (its shared limits and counters): a command waits through two reconnects at most, and an outage is a warning, not a crash. */
export function apiRedisOf(config: Pick<Config, 'REDIS_URL'>, logger: Logger): Redis {
  const redis = new Redis(config.REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 2 });
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis error'));
  return redis;
}
