import { AUDITOR_STARTED } from '../../auditor/main';
import { startProductProcess, type WorkerProcess } from '../../testing/worker-process';

export interface AuditorProcess extends WorkerProcess {
  /** SIGTERM, the way `npm start` stops it, and its exit. */
  stop(): Promise<void>;
}

/**
 * The production auditor (`auditor/main.ts`) as a process of its own, started like `npm start`
 * starts it. Resolves once it logged that it polls its queue.
 */
export async function startAuditorProcess(env: NodeJS.ProcessEnv, options: { startTimeoutMs?: number } = {}): Promise<AuditorProcess> {
  const started = await startProductProcess('auditor/main.ts', AUDITOR_STARTED, env, { startTimeoutMs: options.startTimeoutMs ?? 90_000 });
  return {
    ...started,
    async stop() {
      if (started.process.exitCode !== null || started.process.signalCode !== null) return;
      started.process.kill('SIGTERM');
      await started.exited;
    },
  };
}
