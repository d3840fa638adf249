import path from 'node:path';
import { NativeConnection, Worker, type WorkerDeploymentOptions, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { createReconcilerActivities } from '../activities/reconciler';
import { createRetentionActivities } from '../activities/retention';
import { ConfigError, type Config } from '../lib/config';
import type { FaultInjector } from './faults';
import { RetryBudgetInterceptor } from './interceptors';

export interface CreateWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  /** A bundle built by `npm run build:workflow`; without it the workflows are bundled at start-up. */
  workflowBundlePath?: string;
  /** Attempts before an activity's non-transient error becomes final. */
  maxDomainAttempts?: number;
  /** Tests only. */
  faults?: FaultInjector;
  tuning?: Pick<WorkerOptions, 'maxConcurrentActivityTaskExecutions' | 'maxConcurrentWorkflowTaskExecutions' | 'maxCachedWorkflows' | 'workflowThreadPoolSize'>;
  /**
   * The activities it registers: every one (the run worker; the tests' stack), or the audit loop's
   * alone with retention's (the auditor, `auditor/main.ts`, whose queue carries nothing else). The workflow bundle is
   * the same either way: a worker only gets tasks for workflows started on its queue.
   */
  activities?: 'all' | 'audit';
  /** The Worker Deployment version it serves (`workerVersioning`); absent, an unversioned worker. */
  deployment?: WorkerDeploymentOptions;
}

export type WorkerTuning = NonNullable<CreateWorkerOptions['tuning']>;

/**
 * The worker's bounds from its configuration. The workflow cache is the one that matters for
 * memory: the SDK's default (from the heap limit, 2,310 on a 4 GiB heap) kept every paused run in
 * the worker's memory for as long as it was paused.
 */
export function workerTuning(
  config: Pick<Config, 'WORKER_MAX_CACHED_WORKFLOWS' | 'WORKER_MAX_CONCURRENT_WORKFLOW_TASKS' | 'WORKER_MAX_CONCURRENT_ACTIVITIES' | 'WORKER_WORKFLOW_THREADS'>,
): WorkerTuning {
  const maxCachedWorkflows = config.WORKER_MAX_CACHED_WORKFLOWS;
  return {
    maxCachedWorkflows,
    // The SDK lowers it to the cache size anyway (with a warning); a disabled cache (0) bounds nothing.
    maxConcurrentWorkflowTaskExecutions:
      maxCachedWorkflows === 0 ? config.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS : Math.max(2, Math.min(config.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS, maxCachedWorkflows)),
    maxConcurrentActivityTaskExecutions: config.WORKER_MAX_CONCURRENT_ACTIVITIES,
    workflowThreadPoolSize: config.WORKER_WORKFLOW_THREADS,
  };
}

/**
 * The worker's deployment version from its configuration, or none (an unversioned worker, as
 * before). A versioned worker gets new runs only once its build is the deployment's current one
 * (`temporal worker deployment set-current-version`); with PINNED, a run stays on the build it
 * started on until it closes, so a release never meets a run of the one before.
 */
export function workerVersioning(
  config: Pick<Config, 'TEMPORAL_WORKER_DEPLOYMENT_NAME' | 'TEMPORAL_WORKER_BUILD_ID' | 'TEMPORAL_WORKER_VERSIONING_BEHAVIOR'>,
): WorkerDeploymentOptions | undefined {
  const { TEMPORAL_WORKER_DEPLOYMENT_NAME: deploymentName, TEMPORAL_WORKER_BUILD_ID: buildId } = config;
  if (!deploymentName && !buildId) return undefined;
  if (!deploymentName) throw new ConfigError('invalid configuration: TEMPORAL_WORKER_BUILD_ID needs TEMPORAL_WORKER_DEPLOYMENT_NAME (worker versioning takes both)');
  if (!buildId) throw new ConfigError('invalid configuration: TEMPORAL_WORKER_DEPLOYMENT_NAME needs TEMPORAL_WORKER_BUILD_ID (worker versioning takes both)');
  return { version: { deploymentName, buildId }, useWorkerVersioning: true, defaultVersioningBehavior: config.TEMPORAL_WORKER_VERSIONING_BEHAVIOR };
}

/** A directory, so webpack resolves its index whether the sources are .ts (tsx, vitest) or .js. */
export const WORKFLOWS_PATH = path.join(__dirname, '..', 'workflows');
/** The run's payload converter (`workflows/payload-converter.ts`), for the bundle and the worker alike. */
export const PAYLOAD_CONVERTER_PATH = path.join(__dirname, '..', 'workflows', 'payload-converter');

export async function createWorker(options: CreateWorkerOptions): Promise<Worker> {
  const maxAttempts = options.maxDomainAttempts ?? 5;
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    // A prebuilt bundle carries the run's payload converter; one bundled now is told where it is.
    ...(options.workflowBundlePath
      ? { workflowBundle: { codePath: options.workflowBundlePath } }
      : { workflowsPath: WORKFLOWS_PATH, dataConverter: { payloadConverterPath: PAYLOAD_CONVERTER_PATH } }),
    activities:
      options.activities === 'audit'
        ? { ...createReconcilerActivities(options.deps), ...createRetentionActivities(options.deps) }
        : createActivities(options.deps),
    interceptors: {
      activity: [(ctx) => ({ inbound: new RetryBudgetInterceptor(ctx, maxAttempts, options.faults) })],
    },
    ...options.tuning,
    ...(options.deployment ? { workerDeploymentOptions: options.deployment } : {}),
  });
}
