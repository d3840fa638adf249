import { surviveDriverWriteAfterClose } from '../db/driver-races';
import { apiRedisOf, apiSettingsOf, serverLimitsOf } from '../compose/api';
import { databaseOf } from '../compose/database';
import { loadConfig } from '../lib/config';
import { listen } from '../lib/listen';
import { createLogger } from '../lib/logger';
import { createApiMetrics } from '../lib/metrics';
import { lazyClient, startupFailure } from '../lib/temporal';
import { createApp } from './app';
import { createApiServer } from './server';

async function main(): Promise<void> {
  const config = loadConfig();
  // Connects on first use, but its certificates are read and checked now, before anything opens.
  const temporal = lazyClient(config);
  const logger = createLogger('api', config.LOG_LEVEL);
  surviveDriverWriteAfterClose((message) => logger.warn(message));
  const database = databaseOf(config, 'api');
  const redis = apiRedisOf(config, logger);
  const app = createApp({ db: database.db, temporal, redis, metrics: createApiMetrics(), logger, ...apiSettingsOf(config) });
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
