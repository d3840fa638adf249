import { inject } from 'vitest';
import { startWorkerProcess as start, type WorkerProcess } from '../../testing/worker-process';

/**
 * The production worker (`worker/main.ts`) as a process of its own on the test's Temporal server,
 * so a test can SIGKILL it the way a machine dies.
 */
export function startWorkerProcess(options: { databaseUrl: string; taskQueue: string }): Promise<WorkerProcess> {
  return start({
    DATABASE_URL: options.databaseUrl,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_TASK_QUEUE: options.taskQueue,
    WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
    WORKER_METRICS_PORT: '0',
    WORKER_SDK_METRICS_PORT: '0',
    // Its relay and reactor would publish a test database's events to the real default stream.
    EVENTS_IN_WORKER: 'false',
    LOG_LEVEL: 'info',
  });
}
