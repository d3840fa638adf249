import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { RUN_SEARCH_ATTRIBUTES } from '../core/search-attributes';
import { devServerHealthy, devServerTuningArgs, temporalCliPath } from '../testing/dev-server';
import { freePort } from '../lib/listen';

export interface DevServer {
  readonly address: string;
  /** The server process now, or null while it is stopped. */
  readonly pid: number | null;
  /** SIGTERM, as `./temporal-dev.sh stop` does; resolves once the process has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and, when file-backed, the same SQLite file. */
  start(): Promise<void>;
  close(): Promise<void>;
}

const HEALTHY_WITHIN_MS = 60_000;
const FIRST_START_ATTEMPTS = 3;

/**
 * A Temporal dev server of the drill's own, run by the temporal CLI as a child process so that it
 * can be stopped and started again mid-drill. Every port is pinned (a restart must come back where
 * the worker and the API expect it), with the queue tuning of `temporal-dev.sh` and our search
 * attributes. With `dbFile` it keeps its state in SQLite, as `temporal-dev.sh` does; without, in memory.
 */
export async function startDevServer(options: { dbFile?: string; logFile: string }): Promise<DevServer> {
  const cli = temporalCliPath();
  let address = '';
  let args: string[] = [];
  async function choosePorts(): Promise<void> {
    const [port, httpPort, metricsPort, uiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    address = `127.0.0.1:${port}`;
    args = [
      'server', 'start-dev', '--headless',
      '--ip', '127.0.0.1', '--port', String(port), '--http-port', String(httpPort),
      '--metrics-port', String(metricsPort), '--ui-port', String(uiPort),
      '--namespace', 'default', '--log-level', 'warn',
      ...(options.dbFile
        ? ['--db-filename', options.dbFile, '--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal']
        : []),
      ...devServerTuningArgs(),
      ...RUN_SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]),
    ];
  }
  const log = createWriteStream(options.logFile, { flags: 'a' });
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  async function start(): Promise<void> {
    const proc = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.pipe(log, { end: false });
    proc.stderr!.pipe(log, { end: false });
    child = proc;
    // 'close', not 'exit': its output is through the pipes before the log is ended.
    exited = new Promise((resolve) => proc.once('close', () => resolve()));
    const deadline = Date.now() + HEALTHY_WITHIN_MS;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the Temporal dev server exited at start; see ${options.logFile}`);
      if (await devServerHealthy(address)) return;
      if (Date.now() > deadline) throw new Error(`the Temporal dev server was not healthy in ${HEALTHY_WITHIN_MS / 1000}s; see ${options.logFile}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(killer);
    child = null;
  }

  // The CLI picks its inner services' ports itself at start; another process may take one in the
  // same instant ("bind: address already in use", seen in CI). A first start that exits is tried
  // again on fresh ports; once up, the ports stay pinned for restarts.
  for (let attempt = 1; ; attempt += 1) {
    await choosePorts();
    try {
      await start();
      break;
    } catch (err) {
      if (attempt >= FIRST_START_ATTEMPTS || !/exited at start/.test(String(err))) throw err;
      log.write(`\n[drill] the dev server exited at start (attempt ${attempt} of ${FIRST_START_ATTEMPTS}); trying again on other ports\n`);
    }
  }
  return {
    address,
    get pid() {
      return child?.pid ?? null;
    },
    stop,
    start,
    async close() {
      await stop();
      log.end();
    },
  };
}
