import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { inject } from 'vitest';

const root = path.join(__dirname, '..', '..');

/**
 * The production worker (`worker/main.ts`) as a process of its own, so a test can SIGKILL it the
 * way a machine dies: no shutdown, no drained tasks.
 */
export async function startWorkerProcess(options: { databaseUrl: string; taskQueue: string }): Promise<{ process: ChildProcess; kill(): Promise<void> }> {
  // Node itself with tsx's loader, not the tsx launcher: the launcher runs the worker as a child of
  // its own, and a SIGKILL of the launcher would leave that worker running.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'worker', 'main.ts')], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: options.databaseUrl,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: options.taskQueue,
      WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
      WORKER_METRICS_PORT: '0',
      WORKER_SDK_METRICS_PORT: '0',
      // Its relay and reactor would publish a test database's events to the real default stream.
      EVENTS_IN_WORKER: 'false',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker process did not start in 30s:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"worker started"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker process exited (${code}) before it started:\n${output}`));
    });
  });
  return {
    process: child,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
