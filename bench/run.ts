/**
 * Benchmarks of the whole product on this machine: a Temporal dev server with the same file-backed
 * SQLite store and pragmas as `temporal-dev.sh`, a fresh Postgres database, and the product's API
 * and worker as processes of their own (`api/main.ts`, `worker/main.ts`, as `npm start` runs them),
 * driven over HTTP from this process.
 *
 *   npm run bench -- [--sequential 20] [--concurrent 50] [--steps 3] [--store file|memory] [--no-long-runs] [--cpu-prof DIR]
 *   npm run bench -- audit [--runs 100000,1000000] [--due-pct 1] [--keep]   (bench/audit.ts)
 *   npm run bench -- events [--events 1000] [--rate 200] [--burst 5000]      (bench/events.ts)
 *   npm run bench -- agent [--turns 20] [--runs 5] [--long 500]               (bench/agent.ts)
 *   npm run bench -- pushes [--runs 10000] [--memory-runs 500] [--cache sdk,N] (bench/pushes.ts)
 *   npm run bench -- cli [--runs 20]                                           (bench/cli.ts)
 *   npm run bench -- retention [--runs 10000] [--batch 200]                    (bench/retention.ts)
 *   npm run bench -- cluster [--workers 1,2,3] [--batch 60] [--dev-server]     (bench/cluster.ts)
 *
 * Every figure is printed for governed runs and for a bare baseline measured in the same run on the
 * same server (bench/bare: the same plan's skill activities and nothing else, in a worker process of
 * its own), with their ratio: sequential submit-to-finished latency (p50/p95),
 * submit-to-first-step-started (p50/p99), history events per run, the rate of a concurrent batch,
 * CPU time per run of every process involved, one 10-step and one 100-step run, and each process's
 * memory after each phase.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { tsToMs } from '@temporalio/common/lib/time';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import postgres from 'postgres';
import { RUN_SEARCH_ATTRIBUTES } from '../core/search-attributes';
import { connectDatabase } from '../db/client';
import { runMigrations } from '../db/migrate';
import { runs } from '../db/schema';
import { createTenant } from '../db/tenancy';
import { freePort } from '../lib/listen';
import { devServerTuningArgs, temporalCliPath } from '../testing/dev-server';
import { startProductProcess, startWorkerProcess, type WorkerProcess } from '../testing/worker-process';
import { executionsOf } from '../lib/temporal';
import { buildWorkflowBundle } from '../worker/build-bundle';
import { bareRunWorkflow } from './bare/workflows';
import { childrenOfThisProcess, cpuBetween, oneProcess, rssMiB, sampleCpu, thisProcess, type CpuSource } from './cpu';
import { buildCompiledWorker, COMPILED_WORKER, WORKER_NODE_FLAGS } from './compiled-worker';

/** `audit`, `events`, `agent`, `pushes`, `cli`, `retention` and `cluster` run the benchmarks of bench/<name>.ts, which parse their own options. */
const SUITES = ['audit', 'events', 'agent', 'pushes', 'cli', 'retention', 'cluster'] as const;
const SUITE = SUITES.find((s) => s === process.argv[2]) ?? null;
const { values } = parseArgs({
  args: SUITE ? [] : undefined,
  options: {
    sequential: { type: 'string', default: '20' },
    concurrent: { type: 'string', default: '50' },
    steps: { type: 'string', default: '3' },
    /** `file` is the store temporal-dev.sh runs; `memory` isolates our own cost from SQLite's. */
    store: { type: 'string', default: 'file' },
    /** Reproduces the dev server's default queue throttle (20 reads/s), for before/after figures. */
    'untuned-server': { type: 'boolean', default: false },
    /** `--no-long-runs` leaves out the 10-, 100- and 1,000-step runs (for a profile of the batches). */
    'no-long-runs': { type: 'boolean', default: false },
    /** Starts the API and the worker with `node --cpu-prof`, their profiles written into this directory when they stop. */
    'cpu-prof': { type: 'string' },
  },
});
const SEQUENTIAL = Number(values.sequential);
const CONCURRENT = Number(values.concurrent);
const STEPS = Number(values.steps);

interface Flavour {
  name: string;
  start(steps: number): Promise<string>;
  finished(runId: string): Promise<void>;
}

const TASK_QUEUE = 'bench';
const BARE_TASK_QUEUE = 'bench-bare';
/** Step counts of the single long runs: the issue's 10-step history target and a 100-step run. */
const LONG_RUNS = values['no-long-runs'] ? [] : [10, 100];
/** A run long enough to continue as new several times (`RUN_HISTORY_EVENTS_BOUND`). */
const VERY_LONG_RUN = 1_000;
/** Loading a process through tsx on a loaded 2-core machine may take tens of seconds. */
const START_TIMEOUT_MS = 120_000;

/** The product's processes the bench started, stopped however the bench ends. */
const children: WorkerProcess[] = [];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const cli = temporalCliPath();
  const tuning = values['untuned-server'] ? [] : devServerTuningArgs();
  const work = mkdtempSync(path.join(os.tmpdir(), 'governed-bench-'));
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: cli },
      ip: '127.0.0.1',
      ...(values.store === 'file'
        ? {
            dbFilename: path.join(work, 'temporal.sqlite'),
            extraArgs: ['--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal', ...tuning],
          }
        : { extraArgs: tuning }),
      searchAttributes: [...RUN_SEARCH_ATTRIBUTES],
    },
  });

  const admin = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `governed_bench_${Date.now()}`;
  const url = new URL(admin);
  url.pathname = `/${dbName}`;
  await runMigrations(url.toString());
  // This process's own reads: the tenant it creates and each governed run's final phase.
  const database = connectDatabase(url.toString(), { max: 2 });
  const client = new Client({ connection: await Connection.connect({ address: env.address }) });

  // The product's processes, configured as `npm start` configures them but for the ports and the
  // event relay and reactor, which work on their own clock (the outbox's rows are written by the
  // runs all the same). The dispatcher stays in the worker: it starts a run the API had to leave
  // queued (a dev server too slow to answer on a loaded machine).
  const profileDir = values['cpu-prof'] ? path.resolve(values['cpu-prof']) : null;
  // A directory per process: node writes a profile per thread (the worker's workflow threads, tsx's
  // loader thread), each named by its pid and thread id.
  const nodeFlags = (name: string) => (profileDir ? ['--cpu-prof', '--cpu-prof-dir', path.join(profileDir, name)] : []);
  // The worker as `npm start` runs it: compiled (`npm run build:worker`, rebuilt when a source is newer), with its V8 flags.
  buildCompiledWorker();
  const productEnv = {
    DATABASE_URL: url.toString(),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    TEMPORAL_ADDRESS: env.address,
    TEMPORAL_TASK_QUEUE: TASK_QUEUE,
    LOG_LEVEL: 'warn',
  };
  const started = async (child: Promise<WorkerProcess>) => {
    const process_ = await child;
    children.push(process_);
    return process_;
  };
  const worker = await started(
    startWorkerProcess(
      {
        ...productEnv,
        LOG_LEVEL: 'info',
        WORKFLOW_BUNDLE_PATH: await buildWorkflowBundle(path.join(work, 'bundle.js')),
        WORKER_METRICS_PORT: '0',
        WORKER_SDK_METRICS_PORT: '0',
        DATABASE_POOL_MAX: '20',
        EVENTS_IN_WORKER: 'false',
      },
      { startTimeoutMs: START_TIMEOUT_MS, entry: COMPILED_WORKER, nodeFlags: [...WORKER_NODE_FLAGS, ...nodeFlags('worker')] },
    ),
  );
  const apiPort = await freePort();
  const api = await started(
    startProductProcess(
      path.join('api', 'main.ts'),
      'api listening',
      { ...productEnv, LOG_LEVEL: 'info', API_PORT: String(apiPort), API_HOST: '127.0.0.1', OBSERVABILITY_MODE: 'DEGRADED', API_RATE_LIMIT_PER_MINUTE: '1000000' },
      { startTimeoutMs: START_TIMEOUT_MS, nodeFlags: nodeFlags('api') },
    ),
  );
  const bareWorker = await started(
    startProductProcess(path.join('bench', 'bare', 'worker.ts'), 'bare worker started', { ...productEnv, LOG_LEVEL: 'info', TEMPORAL_TASK_QUEUE: BARE_TASK_QUEUE }, { startTimeoutMs: START_TIMEOUT_MS }),
  );
  const base = `http://127.0.0.1:${apiPort}`;
  const { apiKey } = await createTenant(database.db, { name: `bench-${Date.now()}`, policy: { maxSteps: 1000 } });

  const planOf = (steps: number) => Array.from({ length: steps }, (_, i) => ({ skill: 'sim.llm' as const, input: { prompt: `bench step ${i}` } }));

  /**
   * A governed run: submitted over HTTP, finished when its workflow has closed — after its final
   * record is stored — waited on as the bare run is (a long poll; polling the database for 50 runs
   * at once would spend the very CPU the batch is measuring).
   */
  const governed: Flavour = {
    name: 'governed',
    async start(steps) {
      const res = await fetch(`${base}/api/v1/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plan: planOf(steps) }),
      });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
      const body = (await res.json()) as { runId: string; workflow: string };
      // The worker's dispatcher starts a run the API left queued.
      if (body.workflow !== 'started' && body.workflow !== 'queued') throw new Error(`run ${body.runId} was ${body.workflow}, neither started nor queued`);
      return body.runId;
    },
    async finished(runId) {
      await resultOnceStarted(runId);
      const [run] = await database.db.select({ phase: runs.phase }).from(runs).where(eq(runs.id, runId));
      if (run?.phase !== 'COMPLETED') throw new Error(`run ${runId} closed its workflow as ${run?.phase}, not COMPLETED`);
    },
  };
  /** A queued run's workflow may not exist yet: it is waited for until the dispatcher started it. */
  async function resultOnceStarted(runId: string): Promise<void> {
    for (;;) {
      try {
        await client.workflow.getHandle(runId).result();
        return;
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
  /** The bare baseline: the same steps' skill activities in a workflow this process starts directly (it stands for the bare run's API). */
  const bare: Flavour = {
    name: 'bare',
    async start(steps) {
      const runId = randomUUID();
      await client.workflow.start(bareRunWorkflow, { workflowId: runId, taskQueue: BARE_TASK_QUEUE, args: [{ runId, plan: planOf(steps) }] });
      return runId;
    },
    async finished(runId) {
      await client.workflow.getHandle(runId).result();
    },
  };

  async function measure(flavour: Flavour, steps: number): Promise<{ latencyMs: number; dispatchMs: number; events: number }> {
    const submittedAt = Date.now();
    const started = performance.now();
    const runId = await flavour.start(steps);
    await flavour.finished(runId);
    const latencyMs = performance.now() - started;
    const history = await client.workflow.getHandle(runId).fetchHistory();
    const events = history.events ?? [];
    const firstStep = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runStep' || e.activityTaskScheduledEventAttributes?.activityType?.name === 'executeStep');
    const firstStepStart = events.find((e) => e.activityTaskStartedEventAttributes?.scheduledEventId?.toString() === firstStep?.eventId?.toString());
    return { latencyMs, dispatchMs: tsToMs(firstStepStart?.eventTime) - submittedAt, events: events.length };
  }

  async function sequential(flavour: Flavour, steps: number, count: number) {
    const samples = [];
    for (let i = 0; i < count; i += 1) samples.push(await measure(flavour, steps));
    const latencies = samples.map((s) => s.latencyMs).sort((a, b) => a - b);
    const dispatch = samples.map((s) => s.dispatchMs).sort((a, b) => a - b);
    return {
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
      dispatchP50: percentile(dispatch, 50),
      dispatchP99: percentile(dispatch, 99),
      events: samples[0]!.events,
    };
  }

  async function batch(flavour: Flavour, steps: number, count: number): Promise<number> {
    const started = performance.now();
    const ids = await Promise.all(Array.from({ length: count }, () => flavour.start(steps)));
    await Promise.all(ids.map((id) => flavour.finished(id)));
    return (count / (performance.now() - started)) * 1000;
  }

  const ms = (n: number) => `${n.toFixed(0)} ms`;
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

  // CPU time per run, by process: the API, each worker, the dev server, the Postgres backends
  // serving the bench's database, and this process (the client: its HTTP requests and the bare
  // runs' starts, and both flavours' waits).
  const pgAdmin = postgres(admin, { max: 1, onnotice: () => {} });
  const pgBackends: CpuSource = {
    name: 'Postgres',
    pids: async () => (await pgAdmin<{ pid: number }[]>`select pid from pg_stat_activity where datname = ${dbName}`).map((r) => r.pid),
  };
  const productPids = children.map((c) => c.pid);
  const cpuSources = [
    oneProcess('API', api.pid),
    oneProcess('worker', worker.pid),
    oneProcess('bare worker', bareWorker.pid),
    childrenOfThisProcess('dev server', productPids),
    pgBackends,
    { ...thisProcess, name: 'bench client' },
  ];
  async function withCpu<T>(runsMeasured: number, work: () => Promise<T>): Promise<{ result: T; perRun: Map<string, number> }> {
    const before = await sampleCpu(cpuSources);
    const result = await work();
    const spent = cpuBetween(before, await sampleCpu(cpuSources));
    return { result, perRun: new Map([...spent].map(([name, cpuMs]) => [name, cpuMs / runsMeasured])) };
  }
  const totalOf = (perRun: Map<string, number>) => [...perRun.values()].reduce((a, b) => a + b, 0);
  function cpuLine(label: string, governedCpu: Map<string, number>, bareCpu: Map<string, number>): string {
    const parts = [...governedCpu.keys()].map((name) => `${name} ${governedCpu.get(name)!.toFixed(1)} / ${(bareCpu.get(name) ?? 0).toFixed(1)}`);
    const g = totalOf(governedCpu);
    const b = totalOf(bareCpu);
    return `    CPU-ms per run (${label}), governed / bare: ${parts.join('; ')}; all ${g.toFixed(1)} / ${b.toFixed(1)}, governed/bare ${ratio(g, b)}`;
  }
  function memory(label: string): void {
    const rss = [['API', api.pid], ['worker', worker.pid], ['bare worker', bareWorker.pid], ['bench client', process.pid]] as const;
    console.log(`  memory ${label} (RSS): ${rss.map(([name, pid]) => `${name} ${rssMiB(pid)?.toFixed(0) ?? '-'} MiB`).join(', ')}`);
  }
  console.log(
    `governed runs benchmark: ${STEPS}-step sim.llm runs, API pid ${api.pid}, worker pid ${worker.pid}, bare worker pid ${bareWorker.pid}, dev server store: ${values.store}${values['untuned-server'] ? ' (untuned)' : ''}, ${os.cpus().length} cores`,
  );
  memory('after start');
  // Warm-up: bundle load, first workflow task, connection pools.
  for (const flavour of [governed, bare]) await measure(flavour, STEPS);

  const seqGoverned = await withCpu(SEQUENTIAL, () => sequential(governed, STEPS, SEQUENTIAL));
  const seqBare = await withCpu(SEQUENTIAL, () => sequential(bare, STEPS, SEQUENTIAL));
  const seq = { governed: seqGoverned.result, bare: seqBare.result };
  console.log(`  sequential x${SEQUENTIAL} (submit -> finished):`);
  for (const [name, r] of Object.entries(seq)) {
    console.log(`    ${name.padEnd(8)} p50 ${ms(r.p50)}, p95 ${ms(r.p95)}; submit -> first step started p50 ${ms(r.dispatchP50)}, p99 ${ms(r.dispatchP99)}; ${r.events} history events`);
  }
  console.log(`    governed/bare latency p50 ${ratio(seq.governed.p50, seq.bare.p50)}, p95 ${ratio(seq.governed.p95, seq.bare.p95)}; events ${ratio(seq.governed.events, seq.bare.events)}`);
  console.log(cpuLine('sequential', seqGoverned.perRun, seqBare.perRun));
  memory('after sequential');

  const batchGoverned = await withCpu(CONCURRENT, () => batch(governed, STEPS, CONCURRENT));
  const batchBare = await withCpu(CONCURRENT, () => batch(bare, STEPS, CONCURRENT));
  const throughput = { governed: batchGoverned.result, bare: batchBare.result };
  console.log(`  concurrent x${CONCURRENT}: governed ${throughput.governed.toFixed(1)} runs/s, bare ${throughput.bare.toFixed(1)} runs/s; governed/bare throughput ${ratio(throughput.governed, throughput.bare)}`);
  console.log(cpuLine('concurrent', batchGoverned.perRun, batchBare.perRun));
  memory('after concurrent');

  for (const steps of LONG_RUNS) {
    const g = await measure(governed, steps);
    const b = await measure(bare, steps);
    console.log(
      `  one ${steps}-step run: governed ${ms(g.latencyMs)}, ${g.events} events (${(g.events / steps).toFixed(1)}/step); bare ${ms(b.latencyMs)}, ${b.events} events; latency ${ratio(g.latencyMs, b.latencyMs)}`,
    );
  }
  if (!values['no-long-runs']) {
    const started = performance.now();
    const runId = await governed.start(VERY_LONG_RUN);
    await governed.finished(runId);
    const latencyMs = performance.now() - started;
    const executions = (await executionsOf(client, runId)).map((e) => e.events);
    console.log(
      `  one ${VERY_LONG_RUN}-step governed run: ${ms(latencyMs)}, ${executions.length} executions (continued as new), events per execution ${executions.join(', ')}; largest ${Math.max(...executions)} (Temporal warns at 10,240)`,
    );
    memory('after long runs');
  }

  // Stopped as an operator stops them, so that a profile gets written.
  await Promise.all(children.map((c) => c.stop(30_000)));
  if (profileDir) console.log(`  CPU profiles of the API and the worker in ${profileDir}`);
  await client.connection.close();
  await database.close();
  await env.teardown();
  await pgAdmin.end();
  const sql = postgres(admin, { max: 1, onnotice: () => {} });
  await sql.unsafe(`drop database if exists "${dbName}" with (force)`);
  await sql.end();
  rmSync(work, { recursive: true, force: true });
}

function run(): Promise<void> {
  const rest = process.argv.slice(3);
  if (SUITE === 'audit') return (require('./audit') as typeof import('./audit')).benchAudit(rest);
  if (SUITE === 'events') return (require('./events') as typeof import('./events')).benchEvents(rest);
  if (SUITE === 'agent') return (require('./agent') as typeof import('./agent')).benchAgent(rest);
  if (SUITE === 'pushes') return (require('./pushes') as typeof import('./pushes')).benchPushes(rest);
  if (SUITE === 'cli') return (require('./cli') as typeof import('./cli')).benchCli(rest);
  if (SUITE === 'retention') return (require('./retention') as typeof import('./retention')).benchRetention(rest);
  if (SUITE === 'cluster') return (require('./cluster') as typeof import('./cluster')).benchCluster(rest);
  return main();
}

run().catch(async (err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
  // Stopped, not killed: a profile is still written.
  await Promise.all(children.map((c) => c.stop(10_000)));
  process.exit(1);
});
