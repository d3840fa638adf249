import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const root = path.join(__dirname, '..');
/** Enough of a process's output to say why it failed to start. */
const KEPT_OUTPUT_CHARS = 20_000;

export interface ProcessOptions {
  startTimeoutMs?: number;
  onOutput?: (chunk: string) => void;
  /** Node's own flags (V8's among them), before the entry. */
  nodeFlags?: readonly string[];
}

export interface WorkerProcess {
  readonly process: ChildProcess;
  readonly pid: number;
  /** The last of what it printed. */
  output(): string;
  /** Resolves when it has exited, however. */
  readonly exited: Promise<void>;
  /** SIGKILL, the way a machine dies: no shutdown, no drained tasks. */
  kill(): Promise<void>;
  /** SIGTERM, the way an operator stops it (what it writes on exit, a `--cpu-prof` profile, gets written); SIGKILL after `graceMs`. */
  stop(graceMs: number): Promise<void>;
}

/**
 * One of the product's processes (`worker/main.ts`, `auditor/main.ts`) on its own, started with
 * `node --import tsx` so that the pid held here is the process itself (`tsx` would run it in a child
 * that a signal to tsx may miss and a SIGKILL orphans). Resolves once it logged `startedLine`.
 */
export async function startProductProcess(
  entry: string,
  startedLine: string,
  env: NodeJS.ProcessEnv,
  options: ProcessOptions = {},
): Promise<WorkerProcess> {
  const name = path.basename(path.dirname(entry));
  // Compiled JavaScript runs with node alone; TypeScript through tsx's loader.
  const loader = entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), ...loader, path.isAbsolute(entry) ? entry : path.join(root, entry)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    output = (output + text).slice(-KEPT_OUTPUT_CHARS);
    options.onOutput?.(text);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} process did not start in ${startTimeoutMs}ms:\n${output}`));
    }, startTimeoutMs);
    const check = () => {
      if (!output.includes(`"${startedLine}"`)) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      resolve();
    };
    child.stdout!.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${name} process exited (${child.exitCode ?? child.signalCode}) before it started:\n${output}`));
    });
  });

  return {
    process: child,
    pid: child.pid!,
    output: () => output,
    exited,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop(graceMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The production worker (`worker/main.ts`), once it logged "worker started". */
export function startWorkerProcess(env: NodeJS.ProcessEnv, options: ProcessOptions & { entry?: string } = {}): Promise<WorkerProcess> {
  return startProductProcess(options.entry ?? path.join('worker', 'main.ts'), 'worker started', env, options);
}
