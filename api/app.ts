import express, { type Express } from 'express';
import type { Client } from '@temporalio/client';
import type Redis from 'ioredis';
import type { ObservabilityMode } from '../core/policy';
import type { Db } from '../db/client';
import type { Logger } from '../lib/logger';
import type { ApiMetrics } from '../lib/metrics';
import { alertHandlers } from './alerts';
import { approvalHandlers } from './approvals';
import { auditHandlers } from './audit';
import { authenticate } from './auth';
import { createAuthThrottle, type AuthLimits } from './auth-throttle';
import { boundTemporalCalls } from './deadline';
import { drainUnreadBodies } from './drain-body';
import { errorHandler, HttpError } from './errors';
import { auditPassAge, healthCheck, withinCheckTimeout } from './health';
import { costHandlers } from './costs';
import { httpMetrics } from './http-metrics';
import { incidentHandlers } from './incidents';
import { lessonHandlers } from './lessons';
import { openApiDocument } from './openapi';
import { outputHandlers } from './outputs';
import { policyHandlers } from './policies';
import { createControlGuards, limitControlsPerKey, type ControlLimits } from './rate-limit';
import { SharedControlState } from './shared-counters';
import { rejectUnsafeInput } from './request-guard';
import { limitRequestsPerKey } from './request-limit';
import { retentionHandlers } from './retention';
import { PUBLIC_ROUTES, TENANT_ROUTES, routerOf, type RouteHandlers } from './router';
import { runControlHandlers } from './run-controls';
import { runHandlers } from './runs';

export interface ApiDeps {
  db: Db;
  temporal: Client;
  redis: Redis;
  metrics: ApiMetrics;
  logger: Logger;
  taskQueue: string;
  bodyLimit: string;
  /** How long one request may wait on Temporal before it answers 503 (`api/deadline.ts`). */
  temporalDeadlineMs: number;
  defaultObservabilityMode: ObservabilityMode;
  runDeadlineSeconds: number;
  /**
   * How long a start or a push waits for Temporal before it is queued for the dispatcher; shorter
   * than `temporalDeadlineMs`, so such a request answers "queued", not 503.
   */
  temporalCallTimeoutMs: number;
  /** Signals a tenant-wide push has in flight at once (PUSH_CONCURRENCY); absent: its default. */
  pushConcurrency?: number;
  /** The reconciler's interval: `/healthz` turns degraded when no pass finished in three. */
  auditIntervalSeconds: number;
  /** Where reactors beat, for `/healthz`; absent when this deployment runs none. */
  reactors?: { stream: string; heartbeatIntervalMs: number; missThreshold: number };
  /** Rate limits and coalescing of control requests (`api/rate-limit.ts`; CONTROL_*). */
  controlLimits: ControlLimits;
  /** Requests per API key per minute, unless its tenant has its own (`api/request-limit.ts`; API_RATE_LIMIT_PER_MINUTE). */
  requestsPerMinute: number;
  /** Limits on failed API key lookups (`api/auth-throttle.ts`; AUTH_FAILURE*). */
  authLimits: AuthLimits;
  /** Express's `trust proxy` (API_TRUST_PROXY): whether the client's address is read from X-Forwarded-For. Default false. */
  trustProxy?: boolean | number | string;
}

export function createApp(deps: ApiDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.set('trust proxy', deps.trustProxy ?? false);

  // Every answer, errors included: a browser must never guess a type the API did not send.
  app.use((_req, res, next) => {
    res.set('X-Content-Type-Options', 'nosniff');
    next();
  });
  app.use(drainUnreadBodies());
  app.use(httpMetrics(deps.metrics));

  // Counters in Redis shared by every copy of the API, for the request, failed-key and control limits alike.
  const limitState = new SharedControlState(deps.redis, deps.logger, Date.now, { what: 'the request, control and failed API key limits and the coalescing of controls' });
  const controls = createControlGuards({ redis: deps.redis, logger: deps.logger, limits: deps.controlLimits, state: limitState });
  const health = healthCheck(deps);
  const openApi = openApiDocument();
  // Every route of the contract has its handler here, and nothing else does: the compiler holds them to it.
  const handlers: RouteHandlers = {
    health: async (_input, res, req) => {
      await health(req, res, () => undefined);
    },
    metrics: async (_input, res) => {
      deps.metrics.auditLastPassAge.set((await withinCheckTimeout(auditPassAge(deps.db)).catch(() => null)) ?? -1);
      res.set('content-type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
    },
    openApi: (_input, res) => {
      res.json(openApi);
    },
    ...runHandlers(deps),
    ...outputHandlers(deps),
    ...runControlHandlers({ ...deps, controls }),
    ...auditHandlers(deps),
    ...approvalHandlers(deps),
    ...policyHandlers(deps),
    ...incidentHandlers(deps),
    ...alertHandlers(deps),
    ...costHandlers(deps),
    ...retentionHandlers(deps),
    ...lessonHandlers(deps),
  };

  app.use(routerOf(PUBLIC_ROUTES, handlers));

  // Everything past here is a tenant's data (runs, outputs, approvals, audit, incidents, policies,
  // alerts) or an answer about a key: no cache, shared or private, may keep a copy.
  app.use('/api/v1', (_req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });
  const authThrottle = createAuthThrottle({ state: limitState, limits: deps.authLimits });
  // Who is asking first: authentication reads only the Authorization header, and nobody without
  // a key gets the body parser (decompression, a body up to the limit) to work for them.
  const requestLimit = limitRequestsPerKey(limitState, deps.requestsPerMinute);
  app.use('/api/v1', authenticate(deps.db, authThrottle), requestLimit, express.json({ limit: deps.bodyLimit, strict: true }));
  app.use('/api/v1', (req, _res, next) => {
    // req.is() is null when there is no body, false when the body is of another type.
    if (req.is('application/json') === false && req.get('content-length') !== '0') {
      throw new HttpError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
    }
    next();
  });
  app.use('/api/v1', rejectUnsafeInput(), boundTemporalCalls(deps.temporal.connection, deps.temporalDeadlineMs));
  // Each route's roles and input are checked as the contract says (`api/router.ts`). The tenant-wide
  // pause and resume count against the caller's control limit first, as a run's controls do once
  // their input is read (`api/run-controls.ts`).
  const controlLimit = [limitControlsPerKey(controls.limiter)];
  app.use(routerOf(TENANT_ROUTES, handlers, { pauseTenant: controlLimit, resumeTenant: controlLimit }));

  app.use((req, _res) => {
    throw new HttpError('ROUTE_NOT_FOUND', `no route for ${req.method} ${req.path}`);
  });
  app.use(
    errorHandler({
      unavailable: (err) => deps.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'dependency unavailable: answered 503'),
      unhandled: (err) => deps.logger.error({ err }, 'unhandled error'),
    }),
  );
  return app;
}
