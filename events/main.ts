import { surviveDriverWriteAfterClose } from '../db/driver-races';
import { Registry } from 'prom-client';
import { databaseOf } from '../compose/database';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createEventMetrics } from '../lib/metrics';
import { serveMetrics } from '../lib/metrics-server';
import { connectClient, startupFailure, temporalConnectionSettings } from '../lib/temporal';
import { startEventServices } from './service';

/** The relay and the reactor on their own, for deployments that run them apart from the worker. */
async function main(): Promise<void> {
  const config = loadConfig();
  const temporalSettings = temporalConnectionSettings(config);
  const logger = createLogger('events', config.LOG_LEVEL);
  surviveDriverWriteAfterClose((message) => logger.warn(message));
  const database = databaseOf(config, 'events');
  const temporal = await connectClient(temporalSettings);
  const registry = new Registry();
  const metricsServer = await serveMetrics(registry, config.EVENTS_METRICS_PORT, { name: 'events metrics port', variable: 'EVENTS_METRICS_PORT' });
  const services = await startEventServices({ database, temporal, config, logger, metrics: createEventMetrics(registry) });
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'events shutting down');
    void services
      .stop()
      .then(() => Promise.allSettled([database.close(), temporal.connection.close()]))
      .finally(() => {
        metricsServer.close();
        process.exit(0);
      });
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((err: unknown) => {
  console.error(`events failed: ${startupFailure(err)}`);
  process.exit(1);
});
