import { surviveDriverWriteAfterClose } from '../db/driver-races';
import { Client } from '@temporalio/client';
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { ToolServers } from '../activities/tools/servers';
import { databaseOf } from '../compose/database';
import { activityDepsOf, auditWorkerOf } from '../compose/worker';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createWorkerMetrics } from '../lib/metrics';
import { connectWorkerConnection, startupFailure, temporalConnectionSettings } from '../lib/temporal';
import { createWorker } from '../worker/create-worker';
import { serveAuditorMetrics } from './metrics';

/** What the auditor logs once it polls its queue (tests and `npm start` wait for it). */
export const AUDITOR_STARTED = 'auditor started';

/**
 * The auditor (`npm run auditor`): a worker of the audit loop alone — `reconcileAuditWorkflow`
 * (the `audit-reconciler` Schedule) and `staleRunReportWorkflow` (the `stale-run-report` cron) and
 * the reconciler's activities — on `TEMPORAL_AUDIT_TASK_QUEUE`, a queue no run worker polls. It
 * shares nothing with the run workers but Postgres and Temporal, so when every one of them is dead
 * or wedged it still reconciles their runs and reports them stale.
 */
export async function runAuditor(): Promise<void> {
  const config = loadConfig();
  const temporalSettings = temporalConnectionSettings(config);
  const logger = createLogger('auditor', config.LOG_LEVEL);
  const auditWorker = auditWorkerOf(config);
  const { taskQueue } = auditWorker;
  // No SDK metrics port: the audit loop's health is watched from outside it (the API's
  // governed_audit_last_pass_age_seconds), which is what still answers when this process is down.
  Runtime.install({ telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } } });

  surviveDriverWriteAfterClose((message) => logger.warn(message));

  const database = databaseOf(config, 'auditor');
  const metrics = createWorkerMetrics();
  const metricsServer = await serveAuditorMetrics(metrics, database.db, config.AUDITOR_METRICS_PORT);
  // The reconciler calls no skill and no tool: an auditor starts no tool server.
  const tools = await ToolServers.connect({}, { logger });
  const connection = await connectWorkerConnection(temporalSettings);
  const temporal = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const worker = await createWorker({ ...auditWorker, connection, deps: activityDepsOf(config, { db: database.db, metrics, logger, temporal, tools }) });
  logger.info(
    {
      taskQueue,
      watches: config.TEMPORAL_TASK_QUEUE,
      bundle: config.WORKFLOW_BUNDLE_PATH ?? 'bundled at start-up',
      metrics: `:${config.AUDITOR_METRICS_PORT}/metrics`,
    },
    AUDITOR_STARTED,
  );
  // Worker.run resolves after SIGINT/SIGTERM once in-flight tasks have drained.
  await worker.run();
  metricsServer.close();
  await tools.close();
  await connection.close();
  await database.close();
  logger.info('auditor stopped');
}

if (require.main === module) {
  runAuditor().catch((err: unknown) => {
    console.error(`auditor failed: ${startupFailure(err)}`);
    process.exit(1);
  });
}
