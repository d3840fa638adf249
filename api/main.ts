import { surviveDriverWriteAfterClose } from '../db/driver-races';
import Redis from 'ioredis';
import { connectDatabase } from '../db/client';
import { loadConfig } from '../lib/config';
import { listen } from '../lib/listen';
import { createLogger } from '../lib/logger';
import { createApiMetrics } from '../lib/metrics';
import { lazyClient, startupFailure } from '../lib/temporal';
import { createApp, trustProxyOf } from './app';
import { authLimitsOf } from './auth-throttle';
import { createApiServer, serverLimitsOf } from './server';

async function main(): Promise<void> {
  const config = loadConfig();
  // Connects on first use, but its certificates are read and checked now, before anything opens.
  const temporal = lazyClient(config);
  const logger = createLogger('api', config.LOG_LEVEL);
  surviveDriverWriteAfterClose((message) => logger.warn(message));
  const database = connectDatabase(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, connectTimeoutSeconds: config.API_DATABASE_CONNECT_TIMEOUT_SECONDS });
  const redis = new Redis(config.REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 2 });
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis error'));
  const app = createApp({
    db: database.db,
    temporal,
    redis,
    metrics: createApiMetrics(),
    logger,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    bodyLimit: config.API_BODY_LIMIT,
    temporalDeadlineMs: config.API_TEMPORAL_DEADLINE_MS,
    defaultObservabilityMode: config.OBSERVABILITY_MODE,
    runDeadlineSeconds: config.RUN_TIMEOUT_SECONDS + config.RUN_DEADLINE_GRACE_SECONDS,
    auditIntervalSeconds: config.AUDIT_RECONCILE_INTERVAL,
    temporalCallTimeoutMs: config.TEMPORAL_CALL_TIMEOUT_MS,
    pushConcurrency: config.PUSH_CONCURRENCY,
    reactors: {
      stream: config.EVENT_STREAM,
      heartbeatIntervalMs: config.REACTOR_HEARTBEAT_INTERVAL_SECONDS * 1000,
      missThreshold: config.REACTOR_HEARTBEAT_MISS_THRESHOLD,
    },
    authLimits: authLimitsOf(config),
    requestsPerMinute: config.API_RATE_LIMIT_PER_MINUTE,
    trustProxy: trustProxyOf(config.API_TRUST_PROXY),
  });
  // Timeouts for requests that never finish arriving, and a cap on connections (`api/server.ts`).
  const server = createApiServer(app, serverLimitsOf(config), logger);
  await listen(server, config.API_PORT, config.API_HOST, { name: 'API port', variable: 'API_PORT' });
  logger.info({ url: `http://${config.API_HOST}:${config.API_PORT}` }, 'api listening');
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'api shutting down');
    server.close(() => {
      void Promise.allSettled([database.close(), redis.quit(), temporal.connection.close()]).then(() => process.exit(0));
    });
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((err: unknown) => {
  console.error(`api failed: ${startupFailure(err)}`);
  process.exit(1);
});
