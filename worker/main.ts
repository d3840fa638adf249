import { surviveDriverWriteAfterClose } from '../db/driver-races';
import v8 from 'node:v8';
import { Client } from '@temporalio/client';
import { Runtime, makeTelemetryFilterString, type Worker } from '@temporalio/worker';
import { Gauge, type Registry } from 'prom-client';
import { databaseOf } from '../compose/database';
import { activityDepsOf, dispatcherOf, runWorkerOf } from '../compose/worker';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createEventMetrics, createWorkerMetrics } from '../lib/metrics';
import { startDispatcher } from '../dispatch/service';
import { startEventServices } from '../events/service';
import { PortInUseError } from '../lib/listen';
import { serveMetrics } from '../lib/metrics-server';
import { connectWorkerConnection, startupFailure, temporalConnectionSettings } from '../lib/temporal';
import { loadToolServersConfig } from '../activities/tools/config';
import { ToolServers } from '../activities/tools/servers';
import { createWorker } from './create-worker';

async function main(): Promise<void> {
  const config = loadConfig();
  // Checked before anything starts: a bad certificate setting stops the worker here, named.
  const temporalSettings = temporalConnectionSettings(config);
  const runWorker = runWorkerOf(config);
  const { deployment } = runWorker;
  const logger = createLogger('worker', config.LOG_LEVEL);
  installRuntime(config.WORKER_SDK_METRICS_PORT);

  surviveDriverWriteAfterClose((message) => logger.warn(message));

  const database = databaseOf(config, 'worker');
  const metrics = createWorkerMetrics();
  const metricsServer = await serveMetrics(metrics.registry, config.WORKER_METRICS_PORT, { name: 'worker metrics port', variable: 'WORKER_METRICS_PORT' });
  // The operator's tool servers: started (stdio) or reached (HTTP) by this worker, never by a tenant.
  const tools = await ToolServers.connect(loadToolServersConfig(process.env), { logger });
  const connection = await connectWorkerConnection(temporalSettings);
  const temporal = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  // The runs' queue alone: the audit loop runs on TEMPORAL_AUDIT_TASK_QUEUE, served by the auditor
  // (`npm run auditor`), so that it outlives this worker. The bundle still holds its workflows and
  // the reconciler's activities are still registered, so a pass started on this queue before the
  // loop moved (`npm run audit:schedules` moves it) can finish here.
  const worker = await createWorker({ ...runWorker, connection, deps: activityDepsOf(config, { db: database.db, metrics, logger, temporal, tools }) });
  observeWorkerMemory(metrics.registry, worker);
  logger.info(
    {
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      temporal: `${temporalSettings.address} ${temporalSettings.describe}`,
      versioning: deployment
        ? `deployment ${deployment.version.deploymentName}, build ${deployment.version.buildId}, ${deployment.defaultVersioningBehavior}`
        : 'unversioned',
      // As the SDK compiled them (it may lower one to fit another).
      maxCachedWorkflows: worker.options.maxCachedWorkflows,
      maxConcurrentWorkflowTaskExecutions: worker.options.maxConcurrentWorkflowTaskExecutions,
      maxConcurrentActivityTaskExecutions: worker.options.maxConcurrentActivityTaskExecutions,
      bundle: config.WORKFLOW_BUNDLE_PATH ?? 'bundled at start-up',
      metrics: `:${config.WORKER_METRICS_PORT}/metrics`,
      sdkMetrics: `:${config.WORKER_SDK_METRICS_PORT}/metrics`,
      tools: tools.tools().map((t) => t.id),
    },
    'worker started',
  );
  const events =
    config.EVENTS_IN_WORKER === 'true'
      ? await startEventServices({ database, temporal, config, logger, metrics: createEventMetrics(metrics.registry) })
      : null;
  const dispatcher =
    config.DISPATCHER_IN_WORKER === 'true'
      ? startDispatcher(dispatcherOf(config, { db: database.db, temporal, logger }))
      : null;
  // Worker.run resolves after SIGINT/SIGTERM once in-flight tasks have drained.
  await worker.run();
  await dispatcher?.stop();
  await events?.stop();
  metricsServer.close();
  await tools.close();
  await connection.close();
  await database.close();
  logger.info('worker stopped');
}

/**
 * What holds the worker's memory, on its metrics port: the workflows in its cache (the SDK's own
 * count, `worker.getStatus()`) and the process's memory by kind (`process.memoryUsage()`: RSS, the
 * V8 heap, memory outside it such as the workflow context's buffers). Beside the default process
 * metrics, which report RSS and the heap but neither the cache nor array buffers.
 */
function observeWorkerMemory(registry: Registry, worker: Worker): void {
  new Gauge({
    name: 'governed_worker_cached_workflows',
    help: 'Workflow executions held in the worker\'s cache (bounded by WORKER_MAX_CACHED_WORKFLOWS)',
    registers: [registry],
    collect() {
      this.set(worker.getStatus().numCachedWorkflows);
    },
  });
  new Gauge({
    name: 'governed_worker_memory_bytes',
    help: "The worker process's memory (process.memoryUsage()), by kind",
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      for (const [kind, bytes] of Object.entries(process.memoryUsage())) this.set({ kind }, bytes);
    },
  });
  new Gauge({
    name: 'governed_worker_heap_space_bytes',
    help: "What the main thread's V8 heap holds, by space (v8.getHeapSpaceStatistics(), used bytes); the workflow threads' heaps are not in it",
    labelNames: ['space'] as const,
    registers: [registry],
    collect() {
      for (const space of v8.getHeapSpaceStatistics()) this.set({ space: space.space_name }, space.space_used_size);
    },
  });
}

/**
 * Installs the SDK runtime, which binds its Prometheus port at once: a taken port is named as
 * the setting to change rather than left as the SDK's "Failed to start prometheus metrics exporter".
 */
function installRuntime(sdkMetricsPort: number): void {
  try {
    Runtime.install({
      telemetryOptions: {
        logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} },
        metrics: { prometheus: { bindAddress: `127.0.0.1:${sdkMetricsPort}` } },
      },
    });
  } catch (err) {
    if (String(err).includes('Address already in use')) {
      throw new PortInUseError({ name: 'worker SDK metrics port', variable: 'WORKER_SDK_METRICS_PORT' }, sdkMetricsPort);
    }
    throw err;
  }
}

main().catch((err: unknown) => {
  console.error(`worker failed: ${startupFailure(err)}`);
  process.exit(1);
});
