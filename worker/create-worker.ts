import path from 'node:path';
import { NativeConnection, Worker, type WorkerDeploymentOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { createReconcilerActivities } from '../activities/reconciler';
import { createRetentionActivities } from '../activities/retention';
import type { WorkerTuning } from '../compose/worker';
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
  tuning?: WorkerTuning;
  /**
   * The activities it registers: every one (the run worker; the tests' stack), or the audit loop's
   * alone with retention's (the auditor, `auditor/main.ts`, whose queue carries nothing else). The workflow bundle is
   * the same either way: a worker only gets tasks for workflows started on its queue.
   */
  activities?: 'all' | 'audit';
  /** The Worker Deployment version it serves (`compose/worker.ts`, `workerVersioning`); absent, an unversioned worker. */
  deployment?: WorkerDeploymentOptions;
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
