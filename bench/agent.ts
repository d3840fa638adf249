/**
 * Benchmark of a governed agent step against a bare Temporal loop of the same activities, on this
 * machine: a Temporal dev server (the same file-backed SQLite store and pragmas as
 * `temporal-dev.sh`), a fresh Postgres database, the worker (prebuilt bundle) and the API in this
 * process, the loopback OpenAI-compatible stub as the model and an unmodified MCP server from npm
 * as the tool server.
 *
 *   npm run bench -- agent [--turns 20] [--runs 5] [--long 500] [--tool-server fs|everything] [--store file|memory] [--bare-long]
 *
 * The model asks for exactly one tool call a turn while the conversation holds fewer than `--turns`
 * tool results, then answers: `--turns` tool calls and `--turns + 1` model turns a run.
 * - governed: an `agent` step submitted over HTTP, run by the product's workflow and its
 *   `agentTurn`/`callTool` activities with Postgres, the tenant's policy allowing the one tool;
 * - bare: `bareAgentWorkflow` (bench/bare), a loop of the same model call (`complete()`, the same
 *   tools offered) and the same tool call (the same `ToolServers`) and nothing else, on its own
 *   task queue.
 * `--runs` runs of each, alternating, after one warm-up of each. Prints per-turn latency (the
 * whole run's latency / turns, p50) and their ratio, history events per turn, where a turn's time
 * goes (from the histories' timestamps), the Postgres statements sent per turn and by whom, the
 * CPU time of this process per run, then one `--long`-turn governed run: its time, the executions
 * it continued as new into and the largest single history event across them (`--bare-long`: a bare
 * one too). The tool call alone is timed first on both tool servers, which is why the filesystem
 * server over stdio is the default.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Context } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import Redis from 'ioredis';
import postgres from 'postgres';
import type { ToolServersConfig } from '../activities/tools/config';
import { ToolServers } from '../activities/tools/servers';
import { startBenchApi } from './api';
import { DEFAULT_MAX_STEP_OUTPUT_BYTES } from '../core/outputs';
import { DEFAULT_TOOL_POLICY } from '../core/policy';
import { RUN_SEARCH_ATTRIBUTES } from '../core/search-attributes';
import type { ToolId } from '../core/tools';
import { connectDatabase } from '../db/client';
import { runMigrations } from '../db/migrate';
import { runs } from '../db/schema';
import { createTenant } from '../db/tenancy';
import { activityDepsOf, runWorkerOf } from '../compose/worker';
import { loadConfig, type Config } from '../lib/config';
import { devServerTuningArgs, temporalCliPath } from '../testing/dev-server';
import { freePort } from '../lib/listen';
import { createLogger } from '../lib/logger';
import { createWorkerMetrics } from '../lib/metrics';
import { everythingServerCommand, filesystemServer } from '../test/helpers/agent';
import { startLlmStub, type StubReply } from '../test/helpers/llm-stub';
import { isListening } from '../test/helpers/processes';
import { buildWorkflowBundle } from '../worker/build-bundle';
import { createWorker } from '../worker/create-worker';
import { createBareAgentActivities } from './bare/agent-activities';
import { bareAgentWorkflow } from './bare/workflows';

const TASK_QUEUE = 'bench-agent';
const BARE_TASK_QUEUE = 'bench-agent-bare';
/** The instructions carry the number of tool calls the stub asks for before it answers. */
const INSTRUCTIONS = /^bench agent: (\d+) tool calls$/;
const instructionsFor = (calls: number) => `bench agent: ${calls} tool calls`;
/** Temporal's own bounds on one payload: it warns at 512 KiB and refuses 2 MiB. */
const EVENT_GOAL_BYTES = 16 * 1024;

/** The two tool servers the bench can use: the one tool each offers the model, with its arguments. */
interface ToolChoice {
  name: 'fs' | 'everything';
  label: string;
  tool: ToolId;
  args: Record<string, unknown>;
  config: ToolServersConfig;
}

type Flavour = 'governed' | 'bare';

interface Sample {
  latencyMs: number;
  cpuMs: number;
  events: number;
  executions: number[];
  largest: LargestEvent;
  /** The JSON of every event of every execution, in bytes. */
  historyBytes: number;
  /** The largest event of each execution, in bytes. */
  largestByExecution: number[];
  /** Statements sent to Postgres while the run ran (the API's, the workflow's writes and the activities'). */
  statements: Map<string, number>;
  /** The loop's model and tool activities, by activity type: time queued (scheduled -> started) and running (started -> completed), summed. */
  activityMs: Map<string, { queued: number; ran: number }>;
  /** Events by type (without `EVENT_TYPE_`), across executions. */
  eventTypes: Map<string, number>;
}

interface LargestEvent {
  bytes: number;
  what: string;
}

/**
 * Statements this process sent to Postgres (postgres.js's `debug` hook), reset per measured run, by
 * who sent them: the activity whose context they were sent in (local ones together), or the API.
 */
let statements = new Map<string, number>();

function statementSource(): string {
  try {
    const { info } = Context.current();
    return info.isLocal ? 'local writes' : info.activityType;
  } catch {
    return 'API';
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 50);
const total = (counts: Map<string, number>) => [...counts.values()].reduce((a, b) => a + b, 0);

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One tool call alone, through `ToolServers.call`, p50 over `n` calls after a warm-up. */
async function toolCallP50(servers: ToolServers, tool: ToolId, args: Record<string, unknown>, n = 200): Promise<number> {
  for (let i = 0; i < 20; i += 1) await servers.call(tool, args);
  const samples: number[] = [];
  for (let i = 0; i < n; i += 1) {
    const started = performance.now();
    const outcome = await servers.call(tool, args);
    samples.push(performance.now() - started);
    if (outcome.kind !== 'result' || outcome.isError) throw new Error(`${tool} did not answer: ${JSON.stringify(outcome)}`);
  }
  return median(samples);
}

type HistoryPage = Awaited<ReturnType<Client['workflowService']['getWorkflowExecutionHistory']>>;
type HistoryEvent = NonNullable<NonNullable<HistoryPage['history']>['events']>[number];

/** What an event is, for a person: its type, and the activity or marker it is about. */
function typeOf(json: string): string {
  return String(/"eventType":"([A-Z_]+)"/.exec(json)?.[1] ?? 'UNKNOWN').replace(/^EVENT_TYPE_/, '');
}

function describeEvent(event: HistoryEvent, type: string, activityOf: Map<string, string>): string {
  const activity =
    event.activityTaskScheduledEventAttributes?.activityType?.name ??
    activityOf.get(String(event.activityTaskCompletedEventAttributes?.scheduledEventId ?? '')) ??
    event.markerRecordedEventAttributes?.markerName;
  return activity ? `${type} (${activity})` : type;
}

/** Every execution of a workflow id: event counts, the largest event, and its activities' times. */
/**
 * One execution's events, fetched in small pages: the bare loop's long histories hold events of
 * hundreds of KiB, and a page of the default thousand events would exceed gRPC's 4 MiB message.
 */
async function eventsOf(client: Client, workflowId: string, runId: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId, runId }, maximumPageSize: 20, nextPageToken });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

/** Each execution of a workflow id, first to last (as `executionsOf` in lib/temporal.ts walks them), with its events. */
async function executionHistories(client: Client, workflowId: string): Promise<HistoryEvent[][]> {
  const histories: HistoryEvent[][] = [];
  for (let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId; runId; ) {
    const events = await eventsOf(client, workflowId, runId);
    histories.unshift(events);
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return histories;
}

async function historiesOf(client: Client, workflowId: string): Promise<Pick<Sample, 'events' | 'executions' | 'largest' | 'largestByExecution' | 'historyBytes' | 'activityMs' | 'eventTypes'>> {
  const executions = await executionHistories(client, workflowId);
  let historyBytes = 0;
  let largest: LargestEvent = { bytes: 0, what: '' };
  const activityMs = new Map<string, { queued: number; ran: number }>();
  const eventTypes = new Map<string, number>();
  const largestByExecution: number[] = [];
  for (const history of executions) {
    let largestHere = 0;
    const scheduled = new Map<string, { type: string; at: number; startedAt?: number }>();
    const activityOf = new Map<string, string>();
    for (const event of history) {
      const id = String(event.eventId ?? '');
      const at = tsToMs(event.eventTime);
      const schedule = event.activityTaskScheduledEventAttributes;
      if (schedule) {
        scheduled.set(id, { type: schedule.activityType?.name ?? '?', at });
        activityOf.set(id, schedule.activityType?.name ?? '?');
      }
      const start = event.activityTaskStartedEventAttributes;
      const startOf = start && scheduled.get(String(start.scheduledEventId ?? ''));
      if (startOf) startOf.startedAt = at;
      const done = event.activityTaskCompletedEventAttributes;
      const from = done && scheduled.get(String(done.scheduledEventId ?? ''));
      if (from) {
        const sum = activityMs.get(from.type) ?? { queued: 0, ran: 0 };
        const startedAt = from.startedAt ?? from.at;
        activityMs.set(from.type, { queued: sum.queued + startedAt - from.at, ran: sum.ran + at - startedAt });
      }
      // As `temporal workflow show --output json` writes it: payloads base64, 64-bit numbers as strings.
      const json = JSON.stringify(event);
      const bytes = Buffer.byteLength(json, 'utf8');
      const type = typeOf(json);
      eventTypes.set(type, (eventTypes.get(type) ?? 0) + 1);
      largestHere = Math.max(largestHere, bytes);
      historyBytes += bytes;
      if (bytes > largest.bytes) largest = { bytes, what: describeEvent(event, type, activityOf) };
    }
    largestByExecution.push(largestHere);
  }
  const counts = executions.map((e) => e.length);
  return { events: counts.reduce((a, b) => a + b, 0), executions: counts, largest, largestByExecution, historyBytes, activityMs, eventTypes };
}

export async function benchAgent(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      turns: { type: 'string', default: '20' },
      runs: { type: 'string', default: '5' },
      long: { type: 'string', default: '500' },
      'tool-server': { type: 'string', default: 'fs' },
      /** Also a `--long`-turn bare run, whose every model turn carries the whole conversation. */
      'bare-long': { type: 'boolean', default: false },
      store: { type: 'string', default: 'file' },
    },
  });
  const TURNS = Number(values.turns);
  const RUNS = Number(values.runs);
  const LONG = Number(values.long);
  if (!(TURNS >= 1 && RUNS >= 1 && LONG >= 0)) throw new Error('--turns and --runs are at least 1; --long is a number of turns (0: no long run)');
  if (values['tool-server'] !== 'fs' && values['tool-server'] !== 'everything') throw new Error('--tool-server is fs or everything');
  const maxTurnsFor = (calls: number) => calls + Math.max(10, Math.ceil(calls / 5));

  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const work = mkdtempSync(path.join(os.tmpdir(), 'governed-bench-agent-'));
  const files = path.join(work, 'files');
  const notes = path.join(files, 'notes.txt');
  mkdirSync(files);
  writeFileSync(notes, 'The launch code is 4-8-15-16.');
  const logger = createLogger('bench', 'silent');
  const cleanups: (() => Promise<unknown> | unknown)[] = [() => rmSync(work, { recursive: true, force: true })];

  try {
    // The tool servers: the unmodified everything server over Streamable HTTP (a child process) and
    // the filesystem server over stdio; the tool call alone is timed on each.
    const port = await freePort();
    const command = everythingServerCommand(port);
    const everything: ChildProcess = spawn(command.command, command.args, { env: { ...process.env, ...command.env }, stdio: 'ignore' });
    cleanups.unshift(() => everything.kill('SIGKILL'));
    await waitUntil('the everything server', () => isListening(port));
    const choices: Record<ToolChoice['name'], ToolChoice> = {
      fs: { name: 'fs', label: 'filesystem server over stdio', tool: 'fs.read_text_file' as ToolId, args: { path: notes }, config: filesystemServer(files) },
      everything: {
        name: 'everything',
        label: 'everything server over Streamable HTTP',
        tool: 'everything.echo' as ToolId,
        args: { message: 'The launch code is 4-8-15-16.' },
        config: { everything: { url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 60_000 } },
      },
    };
    const probes: string[] = [];
    for (const choice of Object.values(choices)) {
      const servers = await ToolServers.connect(choice.config, { logger });
      probes.push(`${choice.tool} (${choice.label}) p50 ${(await toolCallP50(servers, choice.tool, choice.args)).toFixed(2)} ms`);
      await servers.close();
    }
    const choice = choices[values['tool-server']];

    const stub = await startLlmStub({
      reply: (body): StubReply => {
        const wanted = Number(INSTRUCTIONS.exec(body.messages[0]?.content ?? '')?.[1] ?? 0);
        const results = body.messages.filter((m) => m.role === 'tool').length;
        const offered = body.tools?.map((t) => t.function.name) ?? [];
        if (offered.length !== 1) return { status: 400 };
        if (results < wanted) return { content: null, toolCalls: [{ name: offered[0]!, arguments: JSON.stringify(choice.args) }] };
        return { content: `Done: ${results} tool calls.` };
      },
    });
    cleanups.unshift(() => stub.close());

    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCliPath() },
        ip: '127.0.0.1',
        ...(values.store === 'file'
          ? {
              dbFilename: path.join(work, 'temporal.sqlite'),
              extraArgs: ['--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal', ...devServerTuningArgs()],
            }
          : { extraArgs: devServerTuningArgs() }),
        searchAttributes: [...RUN_SEARCH_ATTRIBUTES],
      },
    });
    cleanups.unshift(() => env.teardown());

    const admin = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
    const dbName = `governed_bench_agent_${Date.now()}`;
    const url = new URL(admin);
    url.pathname = `/${dbName}`;
    await runMigrations(url.toString());
    cleanups.unshift(async () => {
      const sql = postgres(admin, { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop database if exists "${dbName}" with (force)`);
      await sql.end();
    });
    const database = connectDatabase(url.toString(), { max: 20 });
    // postgres.js reads its options' `debug` at every query: counts what the product sends, changing nothing else.
    (database.sql.options as { debug?: unknown }).debug = () => {
      const source = statementSource();
      statements.set(source, (statements.get(source) ?? 0) + 1);
    };
    cleanups.unshift(() => database.close());
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    cleanups.unshift(() => redis.disconnect());

    const tools = await ToolServers.connect(choice.config, { logger });
    cleanups.unshift(() => tools.close());
    const client = new Client({ connection: await Connection.connect({ address: env.address }) });
    // The product's worker against the stub: a model the price table knows, so its turns are priced
    // as a real provider's would be.
    const config: Config = {
      ...loadConfig(),
      LLM_BASE_URL: stub.baseUrl,
      LLM_API_KEY: undefined,
      LLM_MODEL: 'gpt-4o-mini',
      LLM_TIMEOUT_MS: 30_000,
      MAX_STEP_OUTPUT_BYTES: DEFAULT_MAX_STEP_OUTPUT_BYTES,
      RETENTION_EXPORT_TO: undefined,
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: TASK_QUEUE,
      WORKFLOW_BUNDLE_PATH: await buildWorkflowBundle(path.join(work, 'bundle.js')),
    };
    const deps = activityDepsOf(config, { db: database.db, metrics: createWorkerMetrics(), logger, temporal: client, tools });
    const worker = await createWorker({ ...runWorkerOf(config), connection: await NativeConnection.connect({ address: env.address }), deps });
    const bareWorker = await Worker.create({
      connection: await NativeConnection.connect({ address: env.address }),
      namespace: 'default',
      taskQueue: BARE_TASK_QUEUE,
      workflowsPath: require.resolve('./bare/workflows'),
      activities: createBareAgentActivities(deps),
    });
    const workersRun = Promise.all([worker.run(), bareWorker.run()]);
    cleanups.unshift(async () => {
      worker.shutdown();
      bareWorker.shutdown();
      await workersRun;
    });

    const { server, base } = await startBenchApi({ db: database.db, temporal: client, redis, logger, taskQueue: TASK_QUEUE });
    cleanups.unshift(() => new Promise((r) => server.close(r)));
    const longest = Math.max(TURNS, LONG);
    const { apiKey } = await createTenant(database.db, {
      name: `bench-agent-${Date.now()}`,
      policy: {
        // A turn and a call are a governed step each; the spend is the stub's, far below the budget.
        maxSteps: Math.min(10_000, 2 * maxTurnsFor(longest) + 10),
        maxTokens: 1_000_000_000,
        budgetPerRunUsd: 1_000,
        tools: { ...DEFAULT_TOOL_POLICY, allow: [choice.tool], maxCallsPerRun: maxTurnsFor(longest) },
      },
    });

    /** A governed agent step: submitted over HTTP, finished when its workflow has closed, checked COMPLETED with every call made. */
    async function governed(calls: number): Promise<string> {
      const res = await fetch(`${base}/api/v1/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plan: [{ skill: 'agent', name: 'agent', input: { instructions: instructionsFor(calls), maxTurns: maxTurnsFor(calls), maxTokens: 64 } }] }),
      });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
      const body = (await res.json()) as { runId: string; workflow: string };
      if (body.workflow !== 'started') throw new Error(`run ${body.runId} was ${body.workflow}, not started`);
      const closed = await client.workflow.getHandle(body.runId).result().then(
        () => null,
        (err: unknown) => err,
      );
      const [run] = await database.db.select({ phase: runs.phase, turns: runs.turns, toolCalls: runs.toolCalls, error: runs.errorMessage }).from(runs).where(eq(runs.id, body.runId));
      if (run?.phase !== 'COMPLETED' || run.turns !== calls + 1 || run.toolCalls !== calls) {
        const why = closed instanceof Error ? ` (workflow: ${closed.message}${closed.cause instanceof Error ? `: ${closed.cause.message}` : ''})` : '';
        throw new Error(`run ${body.runId} ended ${JSON.stringify(run)}${why}, not COMPLETED with ${calls + 1} turns and ${calls} tool calls`);
      }
      return body.runId;
    }

    /** The bare loop, started directly on its own task queue. */
    async function bare(calls: number): Promise<string> {
      const workflowId = randomUUID();
      const result = await client.workflow.execute(bareAgentWorkflow, {
        workflowId,
        taskQueue: BARE_TASK_QUEUE,
        args: [{ instructions: instructionsFor(calls), allow: [choice.tool], maxTurns: maxTurnsFor(calls), maxTokens: 64 }],
      });
      if (result.turns !== calls + 1 || result.toolCalls !== calls) throw new Error(`bare run ${workflowId} ended ${JSON.stringify(result)}`);
      return workflowId;
    }

    async function measure(flavour: Flavour, calls: number): Promise<Sample> {
      const cpu = process.cpuUsage();
      statements = new Map();
      const started = performance.now();
      const id = await (flavour === 'governed' ? governed : bare)(calls);
      const latencyMs = performance.now() - started;
      const used = process.cpuUsage(cpu);
      const sent = statements;
      // The stub keeps every request; a long run's would grow with the square of its turns.
      stub.requests.length = 0;
      return { latencyMs, cpuMs: (used.user + used.system) / 1000, statements: sent, ...(await historiesOf(client, id)) };
    }

    const ms = (n: number) => `${n.toFixed(n < 10 ? 1 : 0)} ms`;
    const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    const load = () => os.loadavg().map((n) => n.toFixed(1)).join(' ');
    console.log(
      `agent benchmark: ${TURNS} turns of one ${choice.tool} call each (${choice.label}), then an answer; loopback model stub; dev server store: ${values.store}; ${os.cpus().length} cores, load average ${load()}`,
    );
    console.log(`  the tool call alone (ToolServers.call): ${probes.join('; ')}`);

    // Warm-up: bundle load, first workflow tasks, connection pools, the stub's client.
    await measure('governed', TURNS);
    await measure('bare', TURNS);
    const samples: Record<Flavour, Sample[]> = { governed: [], bare: [] };
    for (let i = 0; i < RUNS; i += 1) {
      for (const flavour of ['governed', 'bare'] as const) samples[flavour].push(await measure(flavour, TURNS));
      console.log(`  run ${i + 1}/${RUNS}: governed ${ms(samples.governed[i]!.latencyMs)}, bare ${ms(samples.bare[i]!.latencyMs)}`);
    }

    const summary = (flavour: Flavour) => {
      const s = samples[flavour];
      const [modelType, toolType] = flavour === 'governed' ? ['agentTurn', 'callTool'] : ['bareModelTurn', 'bareToolCall'];
      const part = (type: string, key: 'queued' | 'ran') => median(s.map((x) => x.activityMs.get(type)?.[key] ?? 0)) / TURNS;
      const perTurn = median(s.map((x) => x.latencyMs)) / TURNS;
      const activities = { modelQueued: part(modelType!, 'queued'), modelRan: part(modelType!, 'ran'), toolQueued: part(toolType!, 'queued'), toolRan: part(toolType!, 'ran') };
      const first = s[0]!;
      return {
        perTurn,
        min: Math.min(...s.map((x) => x.latencyMs)) / TURNS,
        max: Math.max(...s.map((x) => x.latencyMs)) / TURNS,
        events: first.events / TURNS,
        eventTypes: [...first.eventTypes].sort((x, y) => y[1] - x[1]).map(([type, n]) => `${type} ${(n / TURNS).toFixed(1)}`).join(', '),
        cpuPerRun: median(s.map((x) => x.cpuMs)),
        statements: median(s.map((x) => total(x.statements))) / TURNS,
        statementsBy: [...first.statements].sort((x, y) => y[1] - x[1]).map(([who, n]) => `${who} ${(n / TURNS).toFixed(1)}`).join(', '),
        ...activities,
        rest: perTurn - activities.modelQueued - activities.modelRan - activities.toolQueued - activities.toolRan,
        largest: first.largest,
      };
    };
    const g = summary('governed');
    const b = summary('bare');
    const ratio = (x: number, y: number) => (y > 0 ? `${(x / y).toFixed(2)}x` : '-');


    const rows: [string, string, string, string][] = [
      [`per-turn latency p50 (run / ${TURNS}; min-max)`, `${ms(g.perTurn)} (${ms(g.min)}-${ms(g.max)})`, `${ms(b.perTurn)} (${ms(b.min)}-${ms(b.max)})`, `${ratio(g.perTurn, b.perTurn)} (goal <= 1.5x)`],
      [`whole ${TURNS}-turn run p50`, ms(g.perTurn * TURNS), ms(b.perTurn * TURNS), ratio(g.perTurn, b.perTurn)],
      ['  a turn: model activity queued (scheduled -> started)', ms(g.modelQueued), ms(b.modelQueued), ratio(g.modelQueued, b.modelQueued)],
      ['  a turn: model activity running (started -> completed)', ms(g.modelRan), ms(b.modelRan), ratio(g.modelRan, b.modelRan)],
      ['  a turn: tool activity queued', ms(g.toolQueued), ms(b.toolQueued), ratio(g.toolQueued, b.toolQueued)],
      ['  a turn: tool activity running', ms(g.toolRan), ms(b.toolRan), ratio(g.toolRan, b.toolRan)],
      ['  a turn: the rest (workflow tasks and what they run)', ms(g.rest), ms(b.rest), ratio(g.rest, b.rest)],
      ['history events per turn', g.events.toFixed(1), b.events.toFixed(1), ratio(g.events, b.events)],
      [`largest history event (${TURNS}-turn run)`, `${kib(g.largest.bytes)} ${g.largest.what}`, `${kib(b.largest.bytes)} ${b.largest.what}`, ''],
      ['Postgres statements per turn (the run\'s own included)', g.statements.toFixed(1), b.statements.toFixed(1), '-'],
      ['CPU of this process per run p50 (per turn)', `${ms(g.cpuPerRun)} (${ms(g.cpuPerRun / TURNS)})`, `${ms(b.cpuPerRun)} (${ms(b.cpuPerRun / TURNS)})`, ratio(g.cpuPerRun, b.cpuPerRun)],
    ];
    const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length), ['', 'governed', 'bare', 'governed/bare'][i]!.length));
    const line = (r: string[]) => `  | ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
    console.log(line(['', 'governed', 'bare', 'governed/bare']));
    console.log(line(widths.map((w) => '-'.repeat(w))));
    for (const r of rows) console.log(line(r));
    console.log(`  Postgres statements per turn by sender, governed: ${g.statementsBy}`);
    console.log(`  events per turn by type, governed: ${g.eventTypes}`);
    console.log(`  events per turn by type, bare:     ${b.eventTypes}`);
    if (LONG > 0) {
      const long = await measure('governed', LONG);
      console.log(
        `  one ${LONG}-turn governed run (maxTurns ${maxTurnsFor(LONG)}): ${(long.latencyMs / 1000).toFixed(1)} s, ${ms(long.latencyMs / LONG)} a turn ` +
          `(CPU of this process ${(long.cpuMs / 1000).toFixed(1)} s), ${(total(long.statements) / LONG).toFixed(1)} Postgres statements a turn`,
      );
      console.log(
        `    ${long.executions.length} executions (continued as new) of ${long.executions.join(' / ')} events: ${(long.events / LONG).toFixed(1)} events a turn, ${kib(long.historyBytes)} of history in all`,
      );
      console.log(
        `    largest event ${long.largest.bytes} bytes (${kib(long.largest.bytes)}; goal <= ${kib(EVENT_GOAL_BYTES)}): ${long.largest.what}; per execution ${long.largestByExecution.map(kib).join(' / ')}`,
      );
      if (values['bare-long']) {
        const bareLong = await measure('bare', LONG);
        console.log(
          `  one ${LONG}-turn bare run: ${(bareLong.latencyMs / 1000).toFixed(1)} s, ${ms(bareLong.latencyMs / LONG)} a turn; ${bareLong.events} events in one execution, ` +
            `${kib(bareLong.historyBytes)} of history; largest event ${kib(bareLong.largest.bytes)}: ${bareLong.largest.what}`,
        );
      }
    }
    console.log(`  load average at the end: ${load()} (other processes on this machine move every figure)`);
  } finally {
    for (const cleanup of cleanups) {
      try {
        await cleanup();
      } catch (err) {
        console.error(`bench cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
