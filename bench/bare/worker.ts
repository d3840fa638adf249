import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { ToolServers } from '../../activities/tools/servers';
import { DEFAULT_MAX_STEP_OUTPUT_BYTES } from '../../core/outputs';
import { connectDatabase } from '../../db/client';
import { loadConfig } from '../../lib/config';
import { createLogger } from '../../lib/logger';
import { createWorkerMetrics } from '../../lib/metrics';
import { lazyClient } from '../../lib/temporal';

/**
 * The bare baseline's worker (`bench/bare/workflows.ts`) as a process of its own, as the product's
 * worker runs in `npm run bench`: the same skill activities, no interceptors, no tuning, on
 * TEMPORAL_TASK_QUEUE. Its database pool is never used by the bare runs (postgres.js connects on
 * first use); the activities want one.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const logger = createLogger('bare-worker', config.LOG_LEVEL);
  const database = connectDatabase(config.DATABASE_URL, { max: 1 });
  const worker = await Worker.create({
    connection: await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS }),
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    workflowsPath: require.resolve('./workflows'),
    activities: createActivities({
      db: database.db,
      metrics: createWorkerMetrics(),
      logger,
      llm: { baseUrl: 'http://127.0.0.1:9/v1', model: 'x', timeoutMs: 1000 },
      temporal: lazyClient(config),
      tools: await ToolServers.connect({}, { logger }),
      limits: { maxStepOutputBytes: DEFAULT_MAX_STEP_OUTPUT_BYTES },
    }),
  });
  logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE }, 'bare worker started');
  // Resolves after SIGINT/SIGTERM once in-flight tasks have drained.
  await worker.run();
  await database.close();
}

main().catch((err: unknown) => {
  console.error(`bare worker failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
