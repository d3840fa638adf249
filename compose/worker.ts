import { existsSync } from 'node:fs';
import type { WorkerDeploymentOptions, WorkerOptions } from '@temporalio/worker';
import type { ActivityDeps } from '../activities/deps';
import { runExportOf } from '../activities/retention';
import { committerGraceMs } from '../dispatch/control-pusher';
import type { DispatcherDeps } from '../dispatch/service';
import { ConfigError, type Config } from '../lib/config';

export type WorkerTuning = Pick<WorkerOptions, 'maxConcurrentActivityTaskExecutions' | 'maxConcurrentWorkflowTaskExecutions' | 'maxCachedWorkflows' | 'workflowThreadPoolSize'>;

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

/**
 * The auditor's queue from the configuration. It must not be the runs' queue: the run workers would
 * then serve the audit loop, and it would die with them.
 */
export function auditTaskQueue(config: Pick<Config, 'TEMPORAL_AUDIT_TASK_QUEUE' | 'TEMPORAL_TASK_QUEUE'>): string {
  if (config.TEMPORAL_AUDIT_TASK_QUEUE === config.TEMPORAL_TASK_QUEUE) {
    throw new Error(
      `TEMPORAL_AUDIT_TASK_QUEUE must not be the runs' task queue (TEMPORAL_TASK_QUEUE=${config.TEMPORAL_TASK_QUEUE}): ` +
        'the audit loop must outlive the run workers it watches',
    );
  }
  return config.TEMPORAL_AUDIT_TASK_QUEUE;
}

/** A prebuilt bundle that is not there stops the process at start, with the command that builds it. */
function workflowBundlePathOf(config: Pick<Config, 'WORKFLOW_BUNDLE_PATH'>): string | undefined {
  if (config.WORKFLOW_BUNDLE_PATH && !existsSync(config.WORKFLOW_BUNDLE_PATH)) {
    throw new Error(`WORKFLOW_BUNDLE_PATH ${config.WORKFLOW_BUNDLE_PATH} does not exist; run 'npm run build:workflow'`);
  }
  return config.WORKFLOW_BUNDLE_PATH;
}

/** The connections a worker process opens itself; its configuration decides the rest of what its activities are bound to. */
export type ActivityParts = Pick<ActivityDeps, 'db' | 'metrics' | 'logger' | 'temporal' | 'tools'>;

/** What the activities are bound to: the process's connections, and the model, limits and export its configuration names. */
export function activityDepsOf(config: Config, parts: ActivityParts): ActivityDeps {
  return {
    ...parts,
    llm: { baseUrl: config.LLM_BASE_URL, apiKey: config.LLM_API_KEY, model: config.LLM_MODEL, timeoutMs: config.LLM_TIMEOUT_MS },
    limits: { maxStepOutputBytes: config.MAX_STEP_OUTPUT_BYTES },
    runExport: runExportOf(config.RETENTION_EXPORT_TO),
  };
}

/**
 * The run worker (`worker/main.ts`): the runs' queue alone, bounded and versioned as configured;
 * `createWorker` takes it with the process's connection and activity deps. Checked when called: a
 * bad versioning setting or a missing bundle stops the process before anything opens.
 */
export function runWorkerOf(config: Config) {
  return {
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    workflowBundlePath: workflowBundlePathOf(config),
    maxDomainAttempts: config.DOMAIN_MAX_ATTEMPTS,
    tuning: workerTuning(config),
    deployment: workerVersioning(config),
  };
}

/**
 * The auditor's worker (`auditor/main.ts`): the audit loop's queue, its activities alone, and a
 * small cache: a pass at a time (two pages in flight) and a report every few minutes.
 */
export function auditWorkerOf(config: Config) {
  return {
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: auditTaskQueue(config),
    workflowBundlePath: workflowBundlePathOf(config),
    maxDomainAttempts: config.DOMAIN_MAX_ATTEMPTS,
    activities: 'audit' as const,
    tuning: { maxCachedWorkflows: 50 },
  };
}

/**
 * The dispatcher in the worker: it starts the runs and delivers the pushes the API could not, on the
 * runs' queue, and leaves the API's own attempt alone for two of its Temporal call timeouts.
 */
export function dispatcherOf(config: Config, parts: Pick<DispatcherDeps, 'db' | 'temporal' | 'logger'>): DispatcherDeps {
  return {
    ...parts,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    intervalMs: config.DISPATCH_INTERVAL_MS,
    temporalTimeoutMs: config.TEMPORAL_CALL_TIMEOUT_MS,
    startGraceMs: committerGraceMs(config.TEMPORAL_CALL_TIMEOUT_MS),
    pushConcurrency: config.PUSH_CONCURRENCY,
    pushSliceMs: config.PUSH_SLICE_MS,
  };
}
