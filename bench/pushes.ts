/**
 * `npm run bench -- pushes`: what tenant-wide controls cost over many live runs, and what paused
 * runs cost the worker's memory (issue 17, items 12 and 13). On a stack of its own (drill/stack.ts:
 * a Temporal dev server, a fresh database, the production worker as a child process, the API and
 * the event relay in this process):
 *
 * - memory: for each worker setting (`--setting`, repeatable: runner, cache bound, workflow threads,
 *   glibc arenas, node's flags; by default the compiled worker with its V8 flags at each `--cache`
 *   bound), a fresh worker, its memory idle, with `--memory-runs` runs paused (500) and after they
 *   were stopped (the tenant suspended: one push that ends every paused run), from the worker's
 *   metrics port (`process.memoryUsage()` by kind, the main heap by space and the SDK's count of
 *   cached workflows);
 * - pushes: `--runs` live runs (10,000), each held at its first step by an approval pause (the
 *   cheapest open workflow: a durable timer, no activity, no slot), then a tenant-wide pause and a
 *   tenant-wide resume through the API, each timed from the request to its push row marked
 *   delivered (signals per second), with the API's first answer, and to every run having handled
 *   its signal.
 *
 *   npm run bench -- pushes [--runs 10000] [--memory-runs 500] [--cache sdk,200] [--submit-concurrency 16] [--skip-memory] [--skip-pushes]
 *                           [--setting 'runner=js|tsx;cache=200;threads=2;arenas=2;flags=--max-semi-space-size=1' ...]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { and, count, eq, isNotNull, sql } from 'drizzle-orm';
import { isTerminalPhase, TERMINAL_PHASES, type RunPhase } from '../core/phases';
import { controlPushes, runControlEvents, runs } from '../db/schema';
import { createTenant } from '../db/tenancy';
import { WORKER_MAX_CACHED_WORKFLOWS_DEFAULT, loadConfig } from '../lib/config';
import { freePort } from '../lib/listen';
import { mapLimit } from '../lib/map-limit';
import { startDrillStack, type DrillStack } from '../drill/stack';
import { buildCompiledWorker, COMPILED_WORKER, WORKER_NODE_FLAGS } from './compiled-worker';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the SDK picks for `maxCachedWorkflows` when it is not set (worker-options.js), on this machine's heap limit. */
function sdkDefaultCacheSize(): number {
  const heapMiB = v8.getHeapStatistics().heap_size_limit / 1024 / 1024;
  return Math.max(Math.floor((Math.max(heapMiB - 200, 0) * 600) / 1024), 10);
}

interface Sample {
  /** The main thread's V8 heap by space (used bytes). */
  spaces: Record<string, number>;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  cached: number;
}

export async function sample(metricsPort: number): Promise<Sample> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
  const kind = (k: string) => value(new RegExp(`^governed_worker_memory_bytes\\{kind="${k}"\\} (\\S+)$`, 'm'));
  const spaces: Record<string, number> = {};
  for (const m of text.matchAll(/^governed_worker_heap_space_bytes\{space="(\w+)"\} (\S+)$/gm)) spaces[m[1]!] = Number(m[2]);
  return {
    spaces,
    rss: kind('rss'),
    heapUsed: kind('heapUsed'),
    heapTotal: kind('heapTotal'),
    external: kind('external'),
    arrayBuffers: kind('arrayBuffers'),
    cached: value(/^governed_worker_cached_workflows (\S+)$/m),
  };
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;
const describeSample = (s: Sample) =>
  `rss ${mb(s.rss)}, heap used ${mb(s.heapUsed)} of ${mb(s.heapTotal)}, external ${mb(s.external)} (array buffers ${mb(s.arrayBuffers)}), ${s.cached} cached workflows`;
const describeSpaces = (s: Sample) =>
  Object.entries(s.spaces)
    .filter(([, bytes]) => bytes >= 1024 * 1024)
    .map(([space, bytes]) => `${space.replace(/_space$/, '')} ${mb(bytes)}`)
    .join(', ');

/**
 * One worker configuration the memory part measures: its runner (`js`, the compiled worker `npm start`
 * runs, or `tsx`), its environment and node's flags. Written `runner=js;cache=200;threads=2;arenas=2;flags=--max-semi-space-size=1`.
 */
interface MemorySetting {
  label: string;
  runner: 'js' | 'tsx';
  env: Record<string, string>;
  nodeFlags: string[];
}

function parseSetting(text: string): MemorySetting {
  const setting: MemorySetting = { label: text, runner: 'js', env: {}, nodeFlags: [...WORKER_NODE_FLAGS] };
  for (const part of text.split(';').filter(Boolean)) {
    const at = part.indexOf('=');
    const [key, value] = [part.slice(0, at), part.slice(at + 1)];
    if (key === 'runner' && (value === 'js' || value === 'tsx')) setting.runner = value;
    else if (key === 'cache') setting.env.WORKER_MAX_CACHED_WORKFLOWS = String(value === 'sdk' ? sdkDefaultCacheSize() : Number(value));
    else if (key === 'threads') setting.env.WORKER_WORKFLOW_THREADS = value;
    else if (key === 'arenas') setting.env.MALLOC_ARENA_MAX = value;
    else if (key === 'flags') setting.nodeFlags = value.split(' ').filter(Boolean);
    else throw new Error(`--setting ${text}: unknown part ${part} (runner=js|tsx, cache=N|sdk, threads=N, arenas=N (glibc's MALLOC_ARENA_MAX), flags=...)`);
  }
  return setting;
}

/** A request to the stack's API with a key of the caller's choosing. */
async function api(stack: DrillStack, method: string, path: string, apiKey: string, body?: unknown): Promise<{ status: number; body: any; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${stack.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, ms: performance.now() - started };
}

/** A tenant whose runs each pause for approval before their first step, and stay paused an hour. */
export async function heldTenant(stack: DrillStack, name: string) {
  return createTenant(stack.database.db, {
    name: `${name}-${Date.now()}`,
    policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 3600, pauseWarningSeconds: 60, maxSteps: 10 },
  });
}

/** Submits `n` one-step runs and waits until each holds its approval pause; the seconds it took. */
export async function holdRuns(stack: DrillStack, apiKey: string, tenantId: string, n: number, concurrency: number, progress: (line: string) => void): Promise<number> {
  const started = performance.now();
  let submitted = 0;
  await mapLimit(
    Array.from({ length: n }, (_, i) => i),
    concurrency,
    async (i) => {
      const res = await api(stack, 'POST', '/api/v1/runs', apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: `held ${i}` } }] });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${JSON.stringify(res.body)}`);
      submitted += 1;
      if (submitted % 1000 === 0) progress(`    ${submitted} submitted (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    },
  );
  for (let last = -1; ; ) {
    const [row] = await stack.database.db
      .select({ n: count() })
      .from(runs)
      .where(and(eq(runs.tenantId, tenantId), isNotNull(runs.pausedAt)));
    if (row!.n >= n) break;
    if (row!.n !== last && row!.n % 1000 < last % 1000) progress(`    ${row!.n} paused`);
    last = row!.n;
    await sleep(500);
  }
  return (performance.now() - started) / 1000;
}

async function waitForRuns(stack: DrillStack, tenantId: string, done: (phase: RunPhase) => boolean, n: number): Promise<void> {
  for (;;) {
    const rows = await stack.database.db
      .select({ phase: runs.phase, n: count() })
      .from(runs)
      .where(eq(runs.tenantId, tenantId))
      .groupBy(runs.phase);
    if (rows.filter((r) => done(r.phase as RunPhase)).reduce((sum, r) => sum + r.n, 0) >= n) return;
    await sleep(500);
  }
}

interface PushTiming {
  answerMs: number;
  answer: Record<string, unknown>;
  deliveredMs: number;
  signalled: number;
  handledMs: number;
}

/**
 * One tenant-wide change through the API: its answer, the moment its push row says delivered, and
 * the moment every run has recorded what it did with the signal (here, a refusal: the runs hold
 * an approval pause, which a tenant pause does not replace and a tenant resume does not lift).
 */
async function timePush(stack: DrillStack, apiKey: string, tenantId: string, action: 'pause' | 'resume', n: number): Promise<PushTiming> {
  const before = await refusals(stack, tenantId, action);
  const started = performance.now();
  const answer = await api(stack, 'POST', `/api/v1/tenant/${action}`, apiKey, { reason: `bench ${action}` });
  if (answer.status !== 202) throw new Error(`tenant ${action} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  const pushId = Number(answer.body.pushId);
  let deliveredMs = NaN;
  let signalled = 0;
  for (;;) {
    const [row] = await stack.database.db.select().from(controlPushes).where(eq(controlPushes.id, pushId));
    if (row?.pushedAt) {
      deliveredMs = performance.now() - started;
      signalled = row.signalledRuns ?? 0;
      break;
    }
    await sleep(100);
  }
  for (;;) {
    if ((await refusals(stack, tenantId, action)) - before >= n) break;
    await sleep(250);
  }
  return { answerMs: answer.ms, answer: answer.body, deliveredMs, signalled, handledMs: performance.now() - started };
}

async function refusals(stack: DrillStack, tenantId: string, kind: string): Promise<number> {
  const [row] = await stack.database.db
    .select({ n: count() })
    .from(runControlEvents)
    .innerJoin(runs, eq(runs.id, runControlEvents.runId))
    .where(and(eq(runs.tenantId, tenantId), eq(runControlEvents.kind, kind)));
  return row!.n;
}

export async function benchPushes(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '10000' },
      'memory-runs': { type: 'string', default: '500' },
      cache: { type: 'string', default: `sdk,${WORKER_MAX_CACHED_WORKFLOWS_DEFAULT}` },
      'submit-concurrency': { type: 'string', default: '16' },
      'skip-memory': { type: 'boolean', default: false },
      'skip-pushes': { type: 'boolean', default: false },
      setting: { type: 'string', multiple: true },
    },
  });
  const runCount = Number(values.runs);
  const memoryRuns = Number(values['memory-runs']);
  const submitConcurrency = Number(values['submit-concurrency']);
  const settings = (values.setting ?? values.cache.split(',').map((c) => `cache=${c}`)).map(parseSetting);
  const config = loadConfig();
  const print = (line: string) => console.log(line);
  // The worker as npm start runs it, compiled (built here when missing or older than its sources).
  buildCompiledWorker();
  const [metricsPort, sdkMetricsPort] = [await freePort(), await freePort()];
  const workerEnv = { WORKER_METRICS_PORT: String(metricsPort), WORKER_SDK_METRICS_PORT: String(sdkMetricsPort) };

  print(`pushes benchmark: ${os.cpus().length} cores; push concurrency ${config.PUSH_CONCURRENCY}, slice ${config.PUSH_SLICE_MS} ms`);
  const stack = await startDrillStack({ label: 'bench-pushes', workerEnv, progress: (line) => print(`  ${line}`) });
  // Ctrl-C leaves nothing behind: the stack's processes, dev server and database.
  const interrupted = () => {
    console.error('\ninterrupted: tearing the stack down');
    void stack.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  try {
    if (!values['skip-memory']) {
      print(`\nworker memory with ${memoryRuns} paused runs, by setting`);
      for (const setting of settings) {
        await stack.worker?.kill();
        await stack.startWorker(setting.env, { entry: setting.runner === 'js' ? COMPILED_WORKER : undefined, nodeFlags: setting.nodeFlags });
        // Each sample printed as it is taken: on a loaded machine a setting may take many minutes.
        const report = (when: string, s: Sample) => {
          print(`    ${when.padEnd(25)}${describeSample(s)}`);
          print(`    ${''.padEnd(25)}main heap by space: ${describeSpaces(s)}`);
        };
        print(`  ${setting.label}${setting.env.WORKER_MAX_CACHED_WORKFLOWS === String(sdkDefaultCacheSize()) ? ' (cache: the SDK default on this heap)' : ''}:`);
        await sleep(5000);
        report('idle', await sample(metricsPort));
        const tenant = await heldTenant(stack, `memory-${settings.indexOf(setting)}`);
        const heldIn = await holdRuns(stack, tenant.apiKey, tenant.tenantId, memoryRuns, submitConcurrency, print);
        await sleep(5000);
        report(`${memoryRuns} runs paused (${heldIn.toFixed(0)} s)`, await sample(metricsPort));
        const suspended = await api(stack, 'POST', '/api/v1/tenant/suspend', tenant.apiKey);
        if (suspended.status !== 200) throw new Error(`suspend answered ${suspended.status}`);
        await waitForRuns(stack, tenant.tenantId, (phase) => isTerminalPhase(phase), memoryRuns);
        await sleep(5000);
        report('after stopping them', await sample(metricsPort));
      }
    }

    if (!values['skip-pushes']) {
      await stack.worker?.kill();
      await stack.startWorker({}, { entry: COMPILED_WORKER, nodeFlags: WORKER_NODE_FLAGS });
      const tenant = await heldTenant(stack, 'pushes');
      print(`\ntenant-wide pause and resume over ${runCount} live runs (each held by an approval pause)`);
      const heldIn = await holdRuns(stack, tenant.apiKey, tenant.tenantId, runCount, submitConcurrency, print);
      print(`  ${runCount} runs submitted and paused in ${heldIn.toFixed(0)} s (${(runCount / heldIn).toFixed(0)} runs/s)`);
      const memory = await sample(metricsPort);
      print(`  worker with ${runCount} paused runs: ${describeSample(memory)}`);
      for (const action of ['pause', 'resume'] as const) {
        const t = await timePush(stack, tenant.apiKey, tenant.tenantId, action, runCount);
        const answer = t.answer as { push?: string; reachedRuns?: number; totalRuns?: number };
        print(`  tenant ${action}:`);
        print(`    API answered in ${(t.answerMs / 1000).toFixed(1)} s: push ${answer.push}, ${answer.reachedRuns ?? '?'} of ${answer.totalRuns ?? '?'} runs reached`);
        print(
          `    delivered in ${(t.deliveredMs / 1000).toFixed(1)} s: ${t.signalled} runs signalled, ${(t.signalled / (t.deliveredMs / 1000)).toFixed(0)} signals/s`,
        );
        print(`    every run had handled it (a refusal recorded) ${(t.handledMs / 1000).toFixed(1)} s after the request`);
      }
      const [pushRows] = await stack.database.db
        .select({ attempts: sql<number>`sum(${controlPushes.attempts})` })
        .from(controlPushes)
        .where(eq(controlPushes.tenantId, tenant.tenantId));
      print(`  ${pushRows?.attempts ?? '?'} delivery attempts (slices) over both pushes`);
      const live = await stack.database.db
        .select({ n: count() })
        .from(runs)
        .where(and(eq(runs.tenantId, tenant.tenantId), sql`${runs.phase} not in ${[...TERMINAL_PHASES]}`));
      print(`  ${live[0]?.n} runs still live (held) at the end`);
    }
  } finally {
    process.off('SIGINT', interrupted);
    await stack.close();
  }
}
