/**
 * The relay and the reactor as a process of their own, as `npm run events` runs them, with the
 * drill's counting handler beside the product's: a drill can SIGKILL it. Each delivery is written
 * to Redis (`deliveryLogKey`), which outlives the process, so the drill still counts what a killed
 * copy handled. Configured only by environment, like `events/main.ts`.
 */
import Redis from 'ioredis';
import { Registry } from 'prom-client';
import { surviveDriverWriteAfterClose } from '../db/driver-races';
import { databaseOf } from '../compose/database';
import { startEventServices } from '../events/service';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createEventMetrics } from '../lib/metrics';
import { connectClient } from '../lib/temporal';
import { DRILL_RECORDER, deliveryLogKey } from './deliveries';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('events', config.LOG_LEVEL);
  surviveDriverWriteAfterClose((message) => logger.warn(message));
  const database = databaseOf(config, 'events');
  const temporal = await connectClient(config);
  const recorder = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 2 });
  recorder.on('error', () => {});
  const consumer = config.REACTOR_CONSUMER ?? `drill-events-${process.pid}`;
  await startEventServices({
    database,
    temporal,
    config: { ...config, REACTOR_CONSUMER: consumer },
    logger,
    metrics: createEventMetrics(new Registry()),
    extraHandlers: {
      '*': {
        [DRILL_RECORDER]: async (event) => {
          await recorder.rpush(deliveryLogKey(config.EVENT_STREAM), `${event.id} ${consumer}`);
        },
      },
    },
    reactorTiming: { retryBaseMs: 200, blockMs: 500 },
  });
}

main().catch((err: unknown) => {
  console.error(`drill events process failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
