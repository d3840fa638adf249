/**
 * Benchmarks of the whole product on this machine: a Temporal dev server with the same file-backed
 * SQLite store and pragmas as `temporal-dev.sh`, a fresh Postgres database, the worker (prebuilt
 * bundle) and the API in this process, driven over HTTP.
 *
 *   npm run bench -- [--sequential 20] [--concurrent 50] [--steps 3] [--store file|memory]
 *   npm run bench -- audit [--runs 100000,1000000] [--due-pct 1] [--keep]   (bench/audit.ts)
 *   npm run bench -- events [--events 1000] [--rate 200] [--burst 5000]      (bench/events.ts)
 *
 * Prints submit-to-COMPLETED latency of sequential runs (p50/p95/max), the wall time and rate of a
 * concurrent batch, and the process's memory after each phase.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import Redis from 'ioredis';
import postgres from 'postgres';
import { createApp } from '../api/app';
import { RUN_SEARCH_ATTRIBUTES } from '../core/search-attributes';
import { connectDatabase } from '../db/client';
import { runMigrations } from '../db/migrate';
import { runs } from '../db/schema';
import { createTenant } from '../db/tenancy';
import { createLogger } from '../lib/logger';
import { createApiMetrics, createWorkerMetrics } from '../lib/metrics';
import { devServerTuningArgs, temporalCliPath } from '../lib/dev-server';
import { buildWorkflowBundle } from '../worker/build-bundle';
import { createWorker } from '../worker/create-worker';

/** `audit` and `events` run the benchmarks of bench/audit.ts and bench/events.ts, which parse their own options. */
const SUITE = process.argv[2] === 'audit' || process.argv[2] === 'events' ? process.argv[2] : null;
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
  },
});
const SEQUENTIAL = Number(values.sequential);
const CONCURRENT = Number(values.concurrent);
const STEPS = Number(values.steps);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function memory(label: string): void {
  const m = process.memoryUsage();
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
  console.log(`  memory ${label}: rss ${mb(m.rss)}, heap used ${mb(m.heapUsed)}`);
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
  const database = connectDatabase(url.toString(), { max: 20 });
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const logger = createLogger('bench', 'silent');
  const taskQueue = 'bench';

  const client = new Client({ connection: await Connection.connect({ address: env.address }) });
  const worker = await createWorker({
    connection: await NativeConnection.connect({ address: env.address }),
    namespace: 'default',
    taskQueue,
    workflowBundlePath: await buildWorkflowBundle(path.join(work, 'bundle.js')),
    deps: { db: database.db, metrics: createWorkerMetrics(), logger, llm: { baseUrl: 'http://127.0.0.1:9/v1', model: 'x', timeoutMs: 1000 }, temporal: client },
  });
  const workerRun = worker.run();
  const app = createApp({
    db: database.db,
    temporal: client,
    redis,
    metrics: createApiMetrics(),
    logger,
    taskQueue,
    bodyLimit: '256kb',
    temporalDeadlineMs: 5000,
    defaultObservabilityMode: 'DEGRADED',
    temporalCallTimeoutMs: 3000,
    runDeadlineSeconds: 3600,
    auditIntervalSeconds: 60,
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { apiKey } = await createTenant(database.db, { name: `bench-${Date.now()}`, policy: { maxSteps: 1000 } });

  const plan = Array.from({ length: STEPS }, (_, i) => ({ skill: 'sim.llm', input: { prompt: `bench step ${i}` } }));
  async function submit(): Promise<string> {
    const res = await fetch(`${base}/api/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plan }),
    });
    if (res.status !== 202) throw new Error(`submit answered ${res.status}`);
    return ((await res.json()) as { runId: string }).runId;
  }
  async function completed(runId: string): Promise<void> {
    for (;;) {
      const [run] = await database.db.select({ phase: runs.phase }).from(runs).where(eq(runs.id, runId));
      if (run?.phase === 'COMPLETED') return;
      if (run?.phase === 'FAILED') throw new Error(`run ${runId} failed`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  console.log(`governed runs benchmark: ${STEPS}-step sim.llm runs, dev server store: ${values.store}, ${os.cpus().length} cores`);
  memory('after start');
  await completed(await submit()); // warm-up: bundle load, first workflow task, connection pools

  const latencies: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i += 1) {
    const started = performance.now();
    await completed(await submit());
    latencies.push(performance.now() - started);
  }
  latencies.sort((a, b) => a - b);
  console.log(
    `  sequential x${SEQUENTIAL}: submit -> COMPLETED p50 ${percentile(latencies, 50).toFixed(0)} ms, p95 ${percentile(latencies, 95).toFixed(0)} ms, max ${latencies.at(-1)!.toFixed(0)} ms`,
  );
  memory('after sequential');

  const batchStart = performance.now();
  const ids = await Promise.all(Array.from({ length: CONCURRENT }, submit));
  const submittedIn = performance.now() - batchStart;
  await Promise.all(ids.map(completed));
  const wall = performance.now() - batchStart;
  console.log(
    `  concurrent x${CONCURRENT}: all submitted in ${submittedIn.toFixed(0)} ms, all COMPLETED in ${wall.toFixed(0)} ms (${((CONCURRENT / wall) * 1000).toFixed(1)} runs/s)`,
  );
  memory('after concurrent');

  server.close();
  worker.shutdown();
  await workerRun;
  redis.disconnect();
  await database.close();
  await env.teardown();
  const sql = postgres(admin, { max: 1, onnotice: () => {} });
  await sql.unsafe(`drop database if exists "${dbName}" with (force)`);
  await sql.end();
  rmSync(work, { recursive: true, force: true });
}

function run(): Promise<void> {
  const rest = process.argv.slice(3);
  if (SUITE === 'audit') return (require('./audit') as typeof import('./audit')).benchAudit(rest);
  if (SUITE === 'events') return (require('./events') as typeof import('./events')).benchEvents(rest);
  return main();
}

run().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
