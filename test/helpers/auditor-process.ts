import { spawn } from 'node:child_process';
import path from 'node:path';
import { AUDITOR_STARTED } from '../../auditor/main';
import type { WorkerProcess } from '../../testing/worker-process';

const root = path.join(__dirname, '..', '..');
const KEPT_OUTPUT_CHARS = 20_000;

export interface AuditorProcess extends WorkerProcess {
  /** SIGTERM, the way `npm start` stops it, and its exit. */
  stop(): Promise<void>;
}

/**
 * The production auditor (`auditor/main.ts`) as a process of its own, started like `npm start`
 * starts it (`node --import tsx`, so the pid held here is the auditor itself). Resolves once it
 * logged that it polls its queue.
 */
export async function startAuditorProcess(env: NodeJS.ProcessEnv, options: { startTimeoutMs?: number } = {}): Promise<AuditorProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'auditor', 'main.ts')], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const onData = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-KEPT_OUTPUT_CHARS);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const startTimeoutMs = options.startTimeoutMs ?? 90_000;

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`auditor process did not start in ${startTimeoutMs}ms:\n${output}`));
    }, startTimeoutMs);
    const check = () => {
      if (!output.includes(`"${AUDITOR_STARTED}"`)) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      resolve();
    };
    child.stdout!.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`auditor process exited (${child.exitCode ?? child.signalCode}) before it started:\n${output}`));
    });
  });

  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    process: child,
    pid: child.pid!,
    output: () => output,
    exited,
    async kill() {
      if (!running()) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!running()) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}
