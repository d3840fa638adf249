/**
 * `npm run bench -- cluster`: 3-step governed runs on the Temporal cluster of
 * `./temporal-cluster.sh` (which must be up) with 1, 2, 3… worker processes (`npm run worker`, each a
 * process of its own on one task queue), the API in this process, one fresh database. For each
 * worker count: sequential submit-to-finished latency, then a batch submitted at once and its rate,
 * and the CPU each process spent on the batch (workers, this process, each Temporal service,
 * Postgres): on a machine with few cores the rate stops growing where one of them is saturated.
 *
 *   npm run bench -- cluster [--workers 1,2,3] [--sequential 10] [--batch 60] [--steps 3] [--dev-server] [--governed-only]
 *
 * With each worker count the bare baseline (bench/bare: the same plan's activities, nothing else) runs
 * on as many bare worker processes of its own, after the governed runs, for governed/bare ratios on
 * the same cluster.
 *
 * `--dev-server` runs the same on a tuned dev server of the bench's own (file-backed, as
 * `temporal-dev.sh` runs it) instead, for the comparison.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import Redis from 'ioredis';
import postgres from 'postgres';
import { startBenchApi } from './api';
import { connectDatabase } from '../db/client';
import { runMigrations } from '../db/migrate';
import { createTenant } from '../db/tenancy';
import { startDevServer, type DevServer } from '../drill/temporal-server';
import { createLogger } from '../lib/logger';
import { mapLimit } from '../lib/map-limit';
import { startProductProcess, startWorkerProcess, type WorkerProcess } from '../testing/worker-process';
import { bareRunWorkflow } from './bare/workflows';
import { buildWorkflowBundle } from '../worker/build-bundle';
import { cpuBetween, sampleCpu, thisProcess, type CpuSource } from './cpu';

const root = path.join(__dirname, '..');

const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The cluster's service processes, by the pid files of `./temporal-cluster.sh`. */
function clusterSources(): CpuSource[] {
  const dir = process.env.TEMPORAL_CLUSTER_DIR ?? path.join(root, '.temporal-cluster');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.pid'))
    .map((f) => ({ name: `temporal ${f.slice(0, -4)}`, pids: async () => [Number(readFileSync(path.join(dir, f), 'utf8'))] }));
}

/** Every Postgres backend and the postmaster, by process name. */
const postgresSource: CpuSource = {
  name: 'postgres (all backends)',
  async pids() {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'postgres') pids.push(Number(entry));
      } catch {
        // gone
      }
    }
    return pids;
  },
};

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

/** Where a run's time went, by its history's timestamps: waiting to be dispatched, on a worker, and in between. */
interface TimeSplit {
  /** Submit to finished, as the driver saw it. */
  totalMs: number;
  /** A workflow or activity task scheduled, until a worker's poll took it (matching, and the queues before it). */
  dispatchMs: number;
  /** Workflow tasks on the worker, with their local activities (the run's own writes), until the server recorded the completion. */
  workflowTaskMs: number;
  /** Activities on the worker (the steps). */
  activityMs: number;
  /** The rest: the API's start, the server between tasks, the driver seeing the result. */
  otherMs: number;
}

function splitHistory(events: HistoryEvent[], totalMs: number): TimeSplit {
  const at = (e: HistoryEvent) => (e.eventTime ? tsToMs(e.eventTime) : 0);
  const split = { totalMs, dispatchMs: 0, workflowTaskMs: 0, activityMs: 0, otherMs: 0 };
  for (let i = 1; i < events.length; i += 1) {
    const [prev, cur] = [events[i - 1]!, events[i]!];
    const gap = at(cur) - at(prev);
    if ((prev.workflowTaskScheduledEventAttributes && cur.workflowTaskStartedEventAttributes) || (prev.activityTaskScheduledEventAttributes && cur.activityTaskStartedEventAttributes)) split.dispatchMs += gap;
    else if (prev.workflowTaskStartedEventAttributes && cur.workflowTaskCompletedEventAttributes) split.workflowTaskMs += gap;
    else if (prev.activityTaskStartedEventAttributes && cur.activityTaskCompletedEventAttributes) split.activityMs += gap;
  }
  // Scheduled activities are dispatched while the workflow task that scheduled them completes: the
  // sums above may overlap a little; "other" is what is left of the whole.
  split.otherMs = Math.max(0, totalMs - split.dispatchMs - split.workflowTaskMs - split.activityMs);
  return split;
}

function medianSplit(splits: TimeSplit[]): string {
  const median = (key: keyof TimeSplit) => percentile(splits.map((s) => s[key]).sort((a, b) => a - b), 50).toFixed(0);
  return `median ms per run: total ${median('totalMs')} = dispatch ${median('dispatchMs')} + workflow tasks ${median('workflowTaskMs')} + activities ${median('activityMs')} + other ${median('otherMs')}`;
}

export async function benchCluster(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      workers: { type: 'string', default: '1,2,3' },
      sequential: { type: 'string', default: '10' },
      batch: { type: 'string', default: '60' },
      steps: { type: 'string', default: '3' },
      'dev-server': { type: 'boolean', default: false },
      'governed-only': { type: 'boolean', default: false },
    },
  });
  const workerCounts = values.workers.split(',').map(Number);
  const [sequential, batch, steps] = [Number(values.sequential), Number(values.batch), Number(values.steps)];
  const work = mkdtempSync(path.join(os.tmpdir(), 'governed-bench-cluster-'));

  let devServer: DevServer | null = null;
  let address: string;
  if (values['dev-server']) {
    devServer = await startDevServer({ dbFile: path.join(work, 'temporal.sqlite'), logFile: path.join(work, 'temporal.log') });
    address = devServer.address;
  } else {
    const script = path.join(root, 'temporal-cluster.sh');
    try {
      execFileSync('bash', [script, 'status'], { stdio: 'ignore' });
    } catch {
      throw new Error('the Temporal cluster is not up: ./temporal-cluster.sh start');
    }
    address = execFileSync('bash', [script, 'address'], { encoding: 'utf8' }).trim();
  }
  console.log(`bench cluster: ${steps}-step governed runs on ${devServer ? 'a tuned dev server' : 'the Temporal cluster'} at ${address}; workers ${workerCounts.join(', ')}; ${sequential} sequential, a batch of ${batch}`);

  const admin = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `governed_bench_cluster_${Date.now()}`;
  const url = new URL(admin);
  url.pathname = `/${dbName}`;
  await runMigrations(url.toString());
  const database = connectDatabase(url.toString(), { max: 20 });
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const logger = createLogger('bench', 'silent');
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const bundle = await buildWorkflowBundle(path.join(work, 'bundle.js'));
  const { apiKey } = await createTenant(database.db, { name: `bench-cluster-${Date.now()}`, policy: { maxSteps: 1000 } });
  const plan = Array.from({ length: steps }, (_, i) => ({ skill: 'sim.llm' as const, input: { prompt: `bench step ${i}` } }));
  const rows: string[] = [];

  /** Sequential latency, then a batch's rate and each process's CPU, for one flavour on its own worker processes. */
  async function measure(flavour: {
    label: string;
    workers: WorkerProcess[];
    submit(): Promise<string>;
  }): Promise<{ p50: number; p95: number; rate: number; cpuMsPerRun: number; row: string }> {
    const finished = (runId: string) => client.workflow.getHandle(runId).result();
    // One to warm every worker's cache of the bundle and the connections, not counted.
    await finished(await flavour.submit());
    const latencies: number[] = [];
    const splits: TimeSplit[] = [];
    for (let i = 0; i < sequential; i += 1) {
      const started = performance.now();
      const runId = await flavour.submit();
      await finished(runId);
      const totalMs = performance.now() - started;
      latencies.push(totalMs);
      splits.push(splitHistory((await client.workflow.getHandle(runId).fetchHistory()).events ?? [], totalMs));
    }
    latencies.sort((a, b) => a - b);
    console.log(`      ${flavour.label}: sequential runs, ${medianSplit(splits)}`);

    const sources: CpuSource[] = [
      ...flavour.workers.map((w, i) => ({ name: `worker ${i + 1}`, pids: async () => [w.pid] })),
      { ...thisProcess, name: 'bench process (API)' },
      ...(devServer ? [{ name: 'temporal dev server', pids: async () => (devServer!.pid ? [devServer!.pid] : []) }] : clusterSources()),
      postgresSource,
    ];
    const before = await sampleCpu(sources);
    const batchStarted = performance.now();
    const ids = await mapLimit(Array.from({ length: batch }), 20, () => flavour.submit());
    await mapLimit(ids, 50, finished);
    const batchSeconds = (performance.now() - batchStarted) / 1000;
    const cpu = cpuBetween(before, await sampleCpu(sources));
    const cpuLine = [...cpu].map(([name, ms]) => `${name} ${((ms / 1000 / batchSeconds) * 100).toFixed(0)}%`).join(', ');
    const cpuMsPerRun = [...cpu.values()].reduce((a, b) => a + b, 0) / batch;
    const result = { p50: percentile(latencies, 50), p95: percentile(latencies, 95), rate: batch / batchSeconds, cpuMsPerRun };
    const row = `sequential p50 ${(result.p50 / 1000).toFixed(2)}s p95 ${(result.p95 / 1000).toFixed(2)}s  batch of ${batch}: ${result.rate.toFixed(1)} runs/s, ${cpuMsPerRun.toFixed(0)} CPU-ms a run (all processes)`;
    console.log(`      ${flavour.label}: CPU during the batch (share of one core): ${cpuLine}`);
    return { ...result, row };
  }

  async function stopAll(workers: WorkerProcess[]): Promise<void> {
    await Promise.all(
      workers.map(async (w) => {
        w.process.kill('SIGTERM');
        await Promise.race([w.exited, new Promise((r) => setTimeout(r, 15_000))]);
        await w.kill();
      }),
    );
  }

  try {
    for (const count of workerCounts) {
      const taskQueue = `bench-cluster-${count}-${randomUUID().slice(0, 8)}`;
      const workerEnv = {
        DATABASE_URL: url.toString(),
        TEMPORAL_ADDRESS: address,
        TEMPORAL_TASK_QUEUE: taskQueue,
        WORKER_METRICS_PORT: '0',
        WORKER_SDK_METRICS_PORT: '0',
        EVENTS_IN_WORKER: 'false',
        // Info: the start is seen by its "worker started" line.
        LOG_LEVEL: 'info',
      };
      const workers: WorkerProcess[] = [];
      for (let i = 0; i < count; i += 1) workers.push(await startWorkerProcess({ ...workerEnv, WORKFLOW_BUNDLE_PATH: bundle }));
      const { server, base } = await startBenchApi({ db: database.db, temporal: client, redis, logger, taskQueue });
      const governed = await measure({
        label: 'governed',
        workers,
        async submit() {
          const res = await fetch(`${base}/api/v1/runs`, {
            method: 'POST',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ plan }),
          });
          const body = (await res.json()) as { runId: string; workflow: string };
          if (res.status !== 202 || body.workflow !== 'started') throw new Error(`submit answered ${res.status} (${body.workflow})`);
          return body.runId;
        },
      });
      const row = `  ${count} worker${count > 1 ? 's' : ' '}  governed ${governed.row}`;
      console.log(row);
      rows.push(row);
      await new Promise((r) => server.close(r));
      await stopAll(workers);

      if (values['governed-only']) continue;
      // The bare baseline on as many worker processes of its own (bench/bare: the same steps' activities, nothing else).
      const bareQueue = `${taskQueue}-bare`;
      const bareWorkers: WorkerProcess[] = [];
      for (let i = 0; i < count; i += 1) {
        bareWorkers.push(await startProductProcess(path.join('bench', 'bare', 'worker.ts'), 'bare worker started', { ...workerEnv, TEMPORAL_TASK_QUEUE: bareQueue }));
      }
      const bare = await measure({
        label: 'bare',
        workers: bareWorkers,
        async submit() {
          const runId = randomUUID();
          await client.workflow.start(bareRunWorkflow, { workflowId: runId, taskQueue: bareQueue, args: [{ runId, plan }] });
          return runId;
        },
      });
      await stopAll(bareWorkers);
      const bareRow = `  ${count} worker${count > 1 ? 's' : ' '}  bare     ${bare.row}\n              governed/bare: latency p50 ${ratio(governed.p50, bare.p50)}, throughput ${ratio(governed.rate, bare.rate)}, CPU a run ${ratio(governed.cpuMsPerRun, bare.cpuMsPerRun)}`;
      console.log(bareRow);
      rows.push(bareRow);
    }
    console.log(`\nsummary (${os.cpus().length} cores)\n${rows.join('\n')}`);
  } finally {
    redis.disconnect();
    await database.close();
    await connection.close();
    await devServer?.close();
    const sql = postgres(admin, { max: 1, onnotice: () => {} });
    await sql.unsafe(`drop database if exists "${dbName}" with (force)`);
    await sql.end();
    rmSync(work, { recursive: true, force: true });
  }
}
