import { surviveDriverWriteAfterClose } from '../db/driver-races';
import { existsSync } from 'node:fs';
import { Client } from '@temporalio/client';
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { ToolServers } from '../activities/tools/servers';
import { connectDatabase } from '../db/client';
import { loadConfig } from '../lib/config';
import { runExportOf } from '../activities/retention';
import { createLogger } from '../lib/logger';
import { createWorkerMetrics } from '../lib/metrics';
import { connectWorkerConnection, startupFailure, temporalConnectionSettings } from '../lib/temporal';
import { auditTaskQueue } from '../worker/audit-schedules';
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
  const taskQueue = auditTaskQueue(config);
  // No SDK metrics port: the audit loop's health is watched from outside it (the API's
  // governed_audit_last_pass_age_seconds), which is what still answers when this process is down.
  Runtime.install({ telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } } });
  if (config.WORKFLOW_BUNDLE_PATH && !existsSync(config.WORKFLOW_BUNDLE_PATH)) {
    throw new Error(`WORKFLOW_BUNDLE_PATH ${config.WORKFLOW_BUNDLE_PATH} does not exist; run 'npm run build:workflow'`);
  }

  surviveDriverWriteAfterClose((message) => logger.warn(message));

  const database = connectDatabase(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX });
  const metrics = createWorkerMetrics();
  const metricsServer = await serveAuditorMetrics(metrics, database.db, config.AUDITOR_METRICS_PORT);
  // The reconciler calls no skill and no tool: an auditor starts no tool server.
  const tools = await ToolServers.connect({}, { logger });
  const connection = await connectWorkerConnection(temporalSettings);
  const temporal = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const worker = await createWorker({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue,
    workflowBundlePath: config.WORKFLOW_BUNDLE_PATH,
    maxDomainAttempts: config.DOMAIN_MAX_ATTEMPTS,
    activities: 'audit',
    // A pass at a time (two pages in flight) and a report every few minutes: a small cache will do.
    tuning: { maxCachedWorkflows: 50 },
    deps: {
      db: database.db,
      metrics,
      logger,
      llm: { baseUrl: config.LLM_BASE_URL, apiKey: config.LLM_API_KEY, model: config.LLM_MODEL, timeoutMs: config.LLM_TIMEOUT_MS },
      temporal,
      tools,
      limits: { maxStepOutputBytes: config.MAX_STEP_OUTPUT_BYTES },
      runExport: runExportOf(config.RETENTION_EXPORT_TO),
    },
  });
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
