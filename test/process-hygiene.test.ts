import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createNamedTenant } from '../cli/operator/tenant-admin';
import { connectDatabase } from '../db/client';
import { freePort } from '../lib/listen';
import { freshDatabase } from './helpers/fresh-database';
import { descendants, isAlive, isListening, occupyPort, processesWithEnv, type ProcessInfo } from './helpers/processes';
import { waitFor } from './helpers/wait';

const root = path.join(__dirname, '..');
/** Every process a test starts carries this variable, so one left behind is found wherever it went. */
const MARK = 'GOVERNED_HYGIENE_TEST';

type Ports = { api: number; workerMetrics: number; sdkMetrics: number; auditorMetrics: number };

interface Launched {
  child: ChildProcess;
  mark: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ports: Ports;
}

interface LaunchOptions {
  /** The ports of another launch, to start a second system where one runs. */
  ports?: Ports;
  /** Its own process group, as a terminal runs a command: `process.kill(-pid, …)` is the terminal's Ctrl-C. */
  detached?: boolean;
}

const launched: Launched[] = [];

// A failed assertion must not leave a worker polling or a port taken for the next test.
afterEach(() => {
  for (const { mark } of launched.splice(0)) {
    for (const { pid } of processesWithEnv(MARK, mark)) process.kill(pid, 'SIGKILL');
  }
});

/**
 * `npm start` (or the script itself) with its setup skipped, on free ports and the test's Temporal.
 * A variable given as `undefined` in `env` is unset.
 */
async function launch(how: 'script' | 'npm' | 'worker' | 'auditor', env: Record<string, string | undefined> = {}, options: LaunchOptions = {}): Promise<Launched> {
  const ports = options.ports ?? { api: await freePort(), workerMetrics: await freePort(), sdkMetrics: await freePort(), auditorMetrics: await freePort() };
  const mark = randomUUID();
  const [command, args] = {
    script: ['bash', ['scripts/up.sh']],
    npm: ['npm', ['start', '--silent']],
    worker: [process.execPath, ['--import', 'tsx', 'worker/main.ts']],
    auditor: [process.execPath, ['--import', 'tsx', 'auditor/main.ts']],
  }[how] as [string, string[]];
  const child = spawn(command, args, {
    cwd: root,
    detached: options.detached ?? false,
    env: withoutUnset({
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
      // And /healthz reads reactors' heartbeats on a stream of its own: the shared Redis may hold a
      // beat left on the default stream by a system killed there earlier, which would make it 503.
      EVENT_STREAM: `governed:hygiene:${mark}`,
      LOG_LEVEL: 'info',
      ...env,
    }),
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

function withoutUnset(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** The three processes up: the worker and the auditor poll their queues and the API answers. */
async function running(up: Launched, timeoutMs = 120_000): Promise<{ worker: ProcessInfo; auditor: ProcessInfo; api: ProcessInfo }> {
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
    timeoutMs,
  ).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; its output:\n${up.output()}`);
  });
  const tree = descendants(up.child.pid!);
  const [worker, auditor, api] = ['worker/main.', 'auditor/main.ts', 'api/main.ts'].map((entry) => tree.find((p) => p.command.includes(entry)));
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

const run = promisify(execFile);

describe('npm start with a dependency down', () => {
  it('starts nothing when Postgres is not reachable, naming DATABASE_URL and where it points', { timeout: 60_000 }, async () => {
    const closed = await freePort();
    const url = `postgres://postgres@127.0.0.1:${closed}/governed_runs`;
    const up = await launch('script', { DATABASE_URL: url });
    const exit = await exitOf(up, 30_000);
    expect(exit.code).toBe(1);
    expect(up.output()).toContain(`up: Postgres is not reachable at 127.0.0.1:${closed}`);
    expect(up.output()).toContain(`DATABASE_URL=${url}`);
    expect(up.output()).toContain('Nothing was started');
    expect(up.output()).not.toContain('"worker started"');
    await expectNothingLeft(up);
  });

  it('starts without Redis, naming REDIS_URL and what still works, and a run runs to the end', { timeout: 240_000 }, async () => {
    const closed = await freePort();
    const redisUrl = `redis://127.0.0.1:${closed}`;
    const database = await freshDatabase('no_redis');
    const { db, close } = connectDatabase(database.url, { max: 2 });
    try {
      // The relay and the reactor in the worker, as `npm start` runs them: on a database of the test's own.
      const up = await launch('script', { REDIS_URL: redisUrl, DATABASE_URL: database.url, EVENTS_IN_WORKER: 'true' });
      await running(up);
      expect(up.output()).toContain(`up: Redis is not reachable at 127.0.0.1:${closed}`);
      expect(up.output()).toContain(`REDIS_URL=${redisUrl}`);
      expect(up.output()).toContain('runs are still accepted and run to the end');
      // The banner comes all the same, saying what is down and where the variable points.
      await waitFor('the banner', async () => up.output().includes('Ctrl-C stops the worker'), 90_000).catch((err: unknown) => {
        throw new Error(`${String(err)}; its output:\n${up.output()}`);
      });
      expect(up.output()).toMatch(new RegExp(`Redis +down: .*\\(REDIS_URL=redis://127\\.0\\.0\\.1:${closed}\\)`));

      const { apiKey } = await createNamedTenant(db, `no-redis-${randomUUID().slice(0, 8)}`, 'admin');
      const api = `http://127.0.0.1:${up.ports.api}/api/v1`;
      const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
      const submitted = await fetch(`${api}/runs`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ plan: [{ skill: 'sim.llm', input: { prompt: 'without redis' } }], budgetUsd: 1 }),
      });
      expect(submitted.status, await submitted.clone().text()).toBe(202);
      const { runId } = (await submitted.json()) as { runId: string };
      await waitFor(
        'the run to complete',
        async () => {
          const res = await fetch(`${api}/runs/${runId}`, { headers });
          return ((await res.json()) as { run?: { phase?: string } }).run?.phase === 'COMPLETED';
        },
        90_000,
      );
      // Its events wait in the outbox for Redis.
      const [waiting] = await db.execute(sql`select count(*)::int as n from outbox where run_id = ${runId} and published_at is null`);
      expect(Number(waiting!.n)).toBeGreaterThan(0);

      up.child.kill('SIGTERM');
      expect(await exitOf(up)).toEqual({ code: 0, signal: null });
      await expectNothingLeft(up);
    } finally {
      await close();
      await database.drop();
    }
  });
});

describe('npm start with its setup (a dev server, a database and a bundle of its own)', () => {
  it('refuses a second npm start while one runs, and Ctrl-C leaves the dev server running', { timeout: 600_000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'governed-up-'));
    const database = await freshDatabase('up_setup');
    const temporalPort = await freePort();
    const temporal = { TEMPORAL_PORT: String(temporalPort), TEMPORAL_UI_PORT: String(await freePort()), TEMPORAL_DATA_DIR: path.join(dir, 'temporal') };
    const bundle = path.join(dir, 'workflow-bundle.js');
    // Everything `npm start` does but `npm ci` (node_modules is there): the dev server started by
    // temporal-dev.sh on ports and a data directory of the test's own, migrations, the bundle
    // (built in the test's directory), the audit Schedule on that server.
    const env = { ...temporal, UP_SKIP_SETUP: undefined, TEMPORAL_ADDRESS: undefined, WORKFLOW_BUNDLE_PATH: bundle, DATABASE_URL: database.url };
    const cli = inject('temporalCliPath');
    const health = () => run(cli, ['operator', 'cluster', 'health', '--address', `127.0.0.1:${temporalPort}`], { timeout: 20_000 });
    try {
      // As a terminal runs it: npm at the head of a process group of its own.
      const first = await launch('npm', env, { detached: true });
      const { worker, auditor, api } = await running(first, 420_000);
      await waitFor('the banner', async () => first.output().includes('Ctrl-C stops the worker'), 60_000);

      // The banner's line puts temporal on a PATH that lacks it and points it at this dev server.
      expect(first.output()).toContain('eval "$(./temporal-dev.sh env)"');
      const cacheBins = [path.dirname(cli), path.join(os.homedir(), '.cache', 'governed-runs', 'bin')];
      const bare = (process.env.PATH ?? '').split(':').filter((dir) => !cacheBins.includes(dir)).join(':');
      const operator = await run('bash', ['-c', 'command -v temporal >/dev/null && exit 3; eval "$(./temporal-dev.sh env)" && temporal operator cluster health'], {
        cwd: root,
        env: withoutUnset({ ...process.env, PATH: bare, TEMPORAL_CLI: undefined, TEMPORAL_ADDRESS: undefined, ...temporal }),
      }).catch((err: { code?: number; stderr?: string }) => {
        // exit 3: `temporal` is on this machine's PATH already, so the line has nothing to add.
        if (err.code === 3) return { stdout: 'SERVING (temporal on PATH already)' };
        throw err;
      });
      expect(operator.stdout).toContain('SERVING');

      // A second `npm start` with the same settings stops at once, before any setup step.
      const built = statSync(bundle).mtimeMs;
      const upPid = Number(readFileSync(path.join(temporal.TEMPORAL_DATA_DIR, `up-${first.ports.api}.pid`), 'utf8'));
      const startedAt = Date.now();
      const second = await launch('npm', env, { ports: first.ports });
      expect((await exitOf(second, 60_000)).code, second.output()).not.toBe(0);
      expect(Date.now() - startedAt, 'it did not stop at once').toBeLessThan(30_000);
      expect(second.output()).toContain(`this system is already running: npm start has pid ${upPid}`);
      expect(second.output()).toContain(`kill ${upPid}`);
      expect(second.output()).not.toContain('temporal-dev:');
      expect(second.output()).not.toContain('workflow bundle written');
      expect(second.output()).not.toContain('already in use');
      expect(statSync(bundle).mtimeMs).toBe(built);
      // One started from another data directory has no pid file to find, but the API answers.
      const third = await launch('npm', { ...env, TEMPORAL_DATA_DIR: path.join(dir, 'elsewhere') }, { ports: first.ports });
      expect((await exitOf(third, 60_000)).code, third.output()).not.toBe(0);
      expect(third.output()).toContain(`this system is already running: its API answers at http://127.0.0.1:${first.ports.api}/healthz`);
      expect(third.output()).not.toContain('temporal-dev:');
      // The first runs on, untouched.
      for (const p of [worker, auditor, api]) expect(isAlive(p.pid), p.command).toBe(true);
      expect((await fetch(`http://127.0.0.1:${first.ports.api}/healthz`)).status).toBe(200);

      // Ctrl-C: the terminal's SIGINT to the whole process group.
      const devServer = Number(readFileSync(path.join(temporal.TEMPORAL_DATA_DIR, `server-${temporalPort}.pid`), 'utf8'));
      process.kill(-first.child.pid!, 'SIGINT');
      const signalledAt = Date.now();
      const exit = await exitOf(first);
      expect(exit.code, first.output()).toBe(0);
      // npm may be gone before the script it ran has stopped the three: wait for the script.
      await waitFor('the script to stop the worker, the auditor and the API', async () => !isAlive(upPid), 60_000);
      expect(first.output()).toContain('up: got SIGINT; stopping the worker, the auditor and the API');
      expect(first.output()).toContain('"worker stopped"');
      expect(first.output()).toContain('"auditor stopped"');
      expect(first.output()).not.toMatch(/exited with status|did not stop/);
      for (const p of [worker, auditor, api]) expect(isAlive(p.pid), p.command).toBe(false);
      // A dev server that got the SIGINT takes several seconds to shut down: give it time to.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, signalledAt + 15_000 - Date.now())));
      expect(isAlive(devServer), 'the dev server died with Ctrl-C').toBe(true);
      expect((await health()).stdout).toContain('SERVING');
      expect(await isListening(first.ports.api)).toBe(false);

      // ./temporal-dev.sh stop stops it, and then nothing is left.
      await run('bash', ['temporal-dev.sh', 'stop'], { cwd: root, env: { ...process.env, ...temporal } });
      await waitFor('the dev server to stop', async () => !isAlive(devServer), 30_000);
      await expectNothingLeft(first);
      expect(await isListening(temporalPort)).toBe(false);
    } finally {
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
