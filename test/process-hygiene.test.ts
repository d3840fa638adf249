import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from '../lib/listen';
import { descendants, isListening, occupyPort, processesWithEnv, type ProcessInfo } from './helpers/processes';
import { waitFor } from './helpers/wait';

const root = path.join(__dirname, '..');
/** Every process a test starts carries this variable, so one left behind is found wherever it went. */
const MARK = 'GOVERNED_HYGIENE_TEST';

interface Launched {
  child: ChildProcess;
  mark: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ports: { api: number; workerMetrics: number; sdkMetrics: number; auditorMetrics: number };
}

const launched: Launched[] = [];

// A failed assertion must not leave a worker polling or a port taken for the next test.
afterEach(() => {
  for (const { mark } of launched.splice(0)) {
    for (const { pid } of processesWithEnv(MARK, mark)) process.kill(pid, 'SIGKILL');
  }
});

/** `npm start` (or the script itself) with its setup skipped, on free ports and the test's Temporal. */
async function launch(how: 'script' | 'npm' | 'worker' | 'auditor', env: Record<string, string> = {}): Promise<Launched> {
  const ports = { api: await freePort(), workerMetrics: await freePort(), sdkMetrics: await freePort(), auditorMetrics: await freePort() };
  const mark = randomUUID();
  const [command, args] = {
    script: ['bash', ['scripts/up.sh']],
    npm: ['npm', ['start', '--silent']],
    worker: [process.execPath, ['--import', 'tsx', 'worker/main.ts']],
    auditor: [process.execPath, ['--import', 'tsx', 'auditor/main.ts']],
  }[how] as [string, string[]];
  const child = spawn(command, args, {
    cwd: root,
    env: {
      ...process.env,
      [MARK]: mark,
      UP_SKIP_SETUP: '1',
      STOP_GRACE_SECONDS: '10',
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      DATABASE_URL: inject('databaseUrl'),
      WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
      TEMPORAL_TASK_QUEUE: `hygiene-${mark}`,
      TEMPORAL_AUDIT_TASK_QUEUE: `hygiene-audit-${mark}`,
      API_PORT: String(ports.api),
      WORKER_METRICS_PORT: String(ports.workerMetrics),
      WORKER_SDK_METRICS_PORT: String(ports.sdkMetrics),
      AUDITOR_METRICS_PORT: String(ports.auditorMetrics),
      // The shared test database's events stay off the default stream.
      EVENTS_IN_WORKER: 'false',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const started = { child, mark, output: () => output, exited, ports };
  launched.push(started);
  return started;
}

/** The three processes up: the worker and the auditor poll their queues and the API answers. */
async function running(up: Launched): Promise<{ worker: ProcessInfo; auditor: ProcessInfo; api: ProcessInfo }> {
  // Generous: on a busy machine tsx alone takes tens of seconds to compile each entry point.
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void up.exited.then((e) => (exit = e));
  await waitFor(
    'the worker, the auditor and the API to start',
    async () => {
      // One that failed to start stops the others: no use waiting out the timeout.
      if (exit) throw new Error(`it exited (${exit.code ?? exit.signal}) before all three started`);
      return ['"worker started"', '"auditor started"', '"api listening"'].every((line) => up.output().includes(line));
    },
    120_000,
  ).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; its output:\n${up.output()}`);
  });
  const tree = descendants(up.child.pid!);
  const [worker, auditor, api] = ['worker/main.ts', 'auditor/main.ts', 'api/main.ts'].map((entry) => tree.find((p) => p.command.includes(entry)));
  expect(worker, up.output()).toBeDefined();
  expect(auditor, up.output()).toBeDefined();
  expect(api, up.output()).toBeDefined();
  return { worker: worker!, auditor: auditor!, api: api! };
}

async function exitOf(up: Launched, timeoutMs = 60_000) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs}ms:\n${up.output()}`)), timeoutMs);
  });
  try {
    return await Promise.race([up.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function expectNothingLeft(up: Launched): Promise<void> {
  expect(processesWithEnv(MARK, up.mark), up.output()).toEqual([]);
  for (const port of Object.values(up.ports)) expect(await isListening(port), `port ${port}`).toBe(false);
}

describe('npm start', () => {
  it('stops the API and exits non-zero when the worker is SIGKILLed', { timeout: 180_000 }, async () => {
    const up = await launch('script');
    const { worker } = await running(up);
    process.kill(worker.pid, 'SIGKILL');
    const exit = await exitOf(up);
    expect(exit.code).not.toBe(0);
    expect(up.output()).toMatch(new RegExp(`the worker \\(pid ${worker.pid}\\) exited with status 137`));
    await expectNothingLeft(up);
  });

  it('stops the worker and the API and exits non-zero when the auditor is SIGKILLed', { timeout: 180_000 }, async () => {
    const up = await launch('script');
    const { auditor } = await running(up);
    process.kill(auditor.pid, 'SIGKILL');
    const exit = await exitOf(up);
    expect(exit.code).not.toBe(0);
    expect(up.output()).toMatch(new RegExp(`the auditor \\(pid ${auditor.pid}\\) exited with status 137`));
    // The others were stopped, not killed: each drained and said so.
    expect(up.output()).toContain('"worker stopped"');
    await expectNothingLeft(up);
  });

  it('stops all three processes and exits 0 on SIGTERM to the script', { timeout: 180_000 }, async () => {
    const up = await launch('script');
    await running(up);
    up.child.kill('SIGTERM');
    const exit = await exitOf(up);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(up.output()).toContain('"worker stopped"');
    expect(up.output()).toContain('"auditor stopped"');
    await expectNothingLeft(up);
  });

  it('leaves no process behind on SIGTERM to npm', { timeout: 180_000 }, async () => {
    const up = await launch('npm');
    await running(up);
    up.child.kill('SIGTERM');
    await exitOf(up);
    await expectNothingLeft(up);
  });

  it('fails, naming the port, when the API port is taken, and stops the worker and the auditor', { timeout: 180_000 }, async () => {
    const taken = await occupyPort();
    try {
      const up = await launch('script', { API_PORT: String(taken.port) });
      const exit = await exitOf(up);
      expect(exit.code).not.toBe(0);
      expect(up.output()).toContain(`API port ${taken.port} is already in use (API_PORT)`);
      expect(up.output()).not.toContain('"api listening"');
      expect(processesWithEnv(MARK, up.mark)).toEqual([]);
    } finally {
      await taken.release();
    }
  });
});

describe('a process whose port is taken', () => {
  it.each([
    ['worker', 'WORKER_METRICS_PORT', 'worker metrics port'],
    ['worker', 'WORKER_SDK_METRICS_PORT', 'worker SDK metrics port'],
    ['auditor', 'AUDITOR_METRICS_PORT', 'auditor metrics port'],
  ] as const)('the %s exits 1 naming %s', { timeout: 180_000 }, async (program, variable, name) => {
    const taken = await occupyPort();
    try {
      const up = await launch(program, { [variable]: String(taken.port) });
      const exit = await exitOf(up);
      expect(exit.code).toBe(1);
      expect(up.output()).toContain(`${name} ${taken.port} is already in use (${variable})`);
    } finally {
      await taken.release();
    }
  });
});
