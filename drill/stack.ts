import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import Redis from 'ioredis';
import pino from 'pino';
import postgres from 'postgres';
import { Registry } from 'prom-client';
import { createApp } from '../api/app';
import { apiSettingsOf } from '../compose/api';
import { loadConfig } from '../lib/config';
import { connectDatabase, type Database } from '../db/client';
import { runMigrations } from '../db/migrate';
import { createApiKey, createTenant } from '../db/tenancy';
import type { ApiRole } from '../core/authorization';
import type { PolicyRules } from '../core/policy';
import { startEventServices, type EventServices, type EventsConfig } from '../events/service';
import { listen } from '../lib/listen';
import type { Logger } from '../lib/logger';
import { createApiMetrics, createEventMetrics, type EventMetrics } from '../lib/metrics';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy';
import { startProductProcess, startWorkerProcess, type WorkerProcess } from '../testing/worker-process';
import { buildWorkflowBundle } from '../worker/build-bundle';
import { DRILL_RECORDER, readDeliveryLog, type Deliveries } from './deliveries';
import { startDevServer, type DevServer } from './temporal-server';

export interface StackOptions {
  /** Names the database, the stream and the work directory. */
  label: string;
  /** A dev server on a SQLite file, so that it can restart on its own data. */
  fileBackedTemporal?: boolean;
  /** Route the worker's, the API's and the relay's Postgres connections through a proxy the drill can cut. */
  postgresProxy?: boolean;
  /** Route every Redis connection of the product (events, alerts, API) through a proxy the drill can cut. */
  redisProxy?: boolean;
  /** A prebuilt workflow bundle; without one the stack builds its own. */
  workflowBundlePath?: string;
  /** The Postgres server the drill's database is created on. */
  postgresUrl?: string;
  redisUrl?: string;
  /** Progress lines, while the stack comes up. */
  progress?: (line: string) => void;
  /** Stops bringing the stack up (and tears down what is up) when aborted. */
  signal?: AbortSignal;
  /** More of the worker's environment (its tuning, its ports), over the stack's own. */
  workerEnv?: Record<string, string>;
  /** The drill tenant's policy, over the default one. */
  tenantPolicy?: Partial<PolicyRules>;
  /**
   * A Temporal that runs already (`./temporal-cluster.sh address`), namespace `default`, instead of
   * a dev server of the drill's own; the drill then has a task queue of its own on it.
   */
  temporalAddress?: string;
  /** Worker processes serving the drill's task queue (1). */
  workers?: number;
  /** Copies of the event relay and reactor (1), each on connections of its own, consumers of one group. */
  eventServices?: number;
  /**
   * The relay-and-reactor copies as processes of their own (`drill/events-process.ts`, as `npm run
   * events` runs them), which a drill can SIGKILL, instead of in the drill's process.
   */
  eventProcesses?: boolean;
  /**
   * The API as this many processes of its own (`api/main.ts`), which a drill can SIGKILL, instead of
   * in the drill's process; submits go to each in turn.
   */
  apiProcesses?: number;
}

/** One of the product's processes the drill started beside the worker (an API, an events process). */
export interface ProductChild {
  /** `api-0`, `events-1`: also its Postgres application name and, for an events process, its consumer. */
  readonly name: string;
  readonly pid: number;
  /** An API's base URL. */
  readonly url?: string;
  alive(): boolean;
  /** SIGKILL, the way a machine dies. */
  kill(): Promise<void>;
}

/** How the submits fared: a submit that met a dead API tries the next one with the same Idempotency-Key. */
export interface SubmitStats {
  /** Requests sent, retries included. */
  requests: number;
  /** Requests that found no API (refused, reset, cut off before the answer). */
  connectionErrors: number;
  /** Answers that said an earlier request with the same key had created the run. */
  replayed: number;
}

export interface PublishedEntry {
  eventId: number;
  runId: string;
}

export interface SubmittedRun {
  runId: string;
  submittedAt: number;
}

export interface DrillStack {
  /** Logs, the bundle and the SQLite file; kept when a drill fails. */
  readonly workDir: string;
  /** The drill's own dev server; a Temporal it was given (`temporalAddress`) cannot be stopped from here. */
  readonly temporal: DevServer;
  readonly client: Client;
  /** A direct connection, past any proxy: what the checks read. */
  readonly database: Database;
  /** Also direct; for the stream's bookkeeping. */
  readonly redis: Redis;
  readonly postgresProxy: TcpProxy | null;
  readonly redisProxy: TcpProxy | null;
  readonly eventsConfig: EventsConfig;
  readonly eventMetrics: EventMetrics;
  /** Each outbox event (by id) the reactors handed to the drill's handler, and which consumer each time. */
  readDeliveries(): Promise<Deliveries>;
  /** The API processes (`apiProcesses`), in order, dead ones included; empty when the API is in the drill's process. */
  readonly apis: readonly ProductChild[];
  /** The relay-and-reactor processes (`eventProcesses`), in order; empty when they are in the drill's process. */
  readonly eventProcesses: readonly ProductChild[];
  readonly submitStats: SubmitStats;
  /** Every entry the stream received, in its order, as a reader of it saw them (the relays' publication order). */
  readonly published: readonly PublishedEntry[];
  /** The handler the drill adds to the reactor, by name, so the checks can find its handled keys. */
  readonly recorderName: string;
  /** The first worker process still running (the last started when none is). */
  readonly worker: WorkerProcess | null;
  /** Every worker process started, in order, dead ones included. */
  readonly workers: readonly WorkerProcess[];
  /** Starts a worker (again after a kill, or to change its tuning: `env` goes over `workerEnv`). */
  startWorker(env?: Record<string, string>, runner?: WorkerRunner): Promise<WorkerProcess>;
  /** The in-process API, or the first API process. */
  readonly baseUrl: string;
  /** The drill's tenant and its admin key. */
  readonly tenant: { tenantId: string; apiKey: string };
  /** Another key of the drill's tenant. */
  createKey(role: ApiRole): Promise<string>;
  submitRun(body: unknown, idempotencyKey: string): Promise<SubmittedRun>;
  close(options?: { keepWorkDir?: boolean }): Promise<void>;
}

/** How the worker process is run: its entry (worker/main.ts under tsx unless told) and node's flags. */
export interface WorkerRunner {
  entry?: string;
  nodeFlags?: string[];
}

const TASK_QUEUE = 'drill';
/** A submit tries this many times, the APIs in turn, before the drill gives up on it. */
const SUBMIT_ATTEMPTS = 10;
const SUBMIT_RETRY_MS = 100;

function alive(worker: WorkerProcess): boolean {
  return worker.process.exitCode === null && worker.process.signalCode === null;
}

/** A Temporal the drill was given: it only reads its address; stopping it is not the drill's to do. */
function givenTemporal(address: string): DevServer {
  const refuse = () => Promise.reject(new Error(`the drill does not own the Temporal at ${address}`));
  return { address, pid: null, stop: refuse, start: refuse, close: async () => {} };
}

/**
 * Everything one drill needs, of its own: a Temporal dev server, a fresh database, the worker as a
 * child process (so it can be SIGKILLed), and in this process the API and the event relay and
 * reactor (as `npm run events` runs them), with a handler that counts every delivery. `close()`
 * leaves nothing behind: processes, servers, the database and the stream's Redis keys.
 */
export async function startDrillStack(options: StackOptions): Promise<DrillStack> {
  const progress = options.progress ?? (() => {});
  const checkpoint = () => options.signal?.throwIfAborted();
  const id = `${options.label.replace(/\W/g, '_')}_${Date.now()}_${process.pid}`;
  const workDir = mkdtempSync(path.join(os.tmpdir(), `governed-drill-${options.label}-`));
  const cleanups: (() => Promise<unknown> | void)[] = [];
  const children = new Set<() => number | null>();
  // Whatever ends this process (an error, a second Ctrl-C) must not leave a worker or a dev server
  // running: the handler stays, and kills only those still alive.
  process.on('exit', () => {
    for (const pid of children) {
      const p = pid();
      if (p) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });

  // Once only: a failed start-up and the drill's own `finally` may both ask.
  let closing: Promise<void> | null = null;
  const close = (keepWorkDir = false) =>
    (closing ??= (async () => {
      for (const cleanup of [...cleanups].reverse()) {
        await Promise.resolve()
          .then(cleanup)
          .catch((err: unknown) => console.error(`drill cleanup: ${err instanceof Error ? err.message : String(err)}`));
      }
      if (!keepWorkDir) rmSync(workDir, { recursive: true, force: true });
    })());

  try {
    progress(`work directory ${workDir}`);
    let temporal: DevServer;
    if (options.temporalAddress) {
      temporal = givenTemporal(options.temporalAddress);
      progress(`Temporal at ${temporal.address}`);
    } else {
      const devServer = await startDevServer({
        dbFile: options.fileBackedTemporal ? path.join(workDir, 'temporal.sqlite') : undefined,
        logFile: path.join(workDir, 'temporal.log'),
      });
      temporal = devServer;
      children.add(() => devServer.pid);
      cleanups.push(() => devServer.close());
      checkpoint();
      progress(`Temporal dev server on ${temporal.address} (${options.fileBackedTemporal ? 'SQLite file' : 'in memory'})`);
    }
    // A Temporal shared with others gets a queue of the drill's own.
    const taskQueue = options.temporalAddress ? `drill-${id}` : TASK_QUEUE;

    const databaseUrl = new URL(options.postgresUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
    databaseUrl.pathname = `/governed_drill_${id}`.slice(0, 64);
    // Before it exists: a start-up stopped half way leaves no database either.
    cleanups.push(() => dropDatabase(databaseUrl));
    await runMigrations(databaseUrl.toString());
    checkpoint();
    const database = connectDatabase(databaseUrl.toString(), { max: 5 });
    cleanups.push(() => database.close());
    progress(`database ${databaseUrl.pathname.slice(1)}`);

    const postgresProxy = options.postgresProxy ? await startTcpProxy(hostAndPort(databaseUrl, 5432)) : null;
    if (postgresProxy) cleanups.push(() => postgresProxy.close());
    const productDatabaseUrl = postgresProxy ? via(databaseUrl, postgresProxy) : databaseUrl.toString();
    const productDatabase = postgresProxy ? connectDatabase(productDatabaseUrl, { max: 10 }) : database;
    if (postgresProxy) cleanups.push(() => productDatabase.close());

    const redisUrl = new URL(options.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const redisProxy = options.redisProxy ? await startTcpProxy(hostAndPort(redisUrl, 6379)) : null;
    if (redisProxy) cleanups.push(() => redisProxy.close());
    const productRedisUrl = redisProxy ? via(redisUrl, redisProxy) : redisUrl.toString();
    const redis = new Redis(redisUrl.toString(), { maxRetriesPerRequest: 2 });
    cleanups.push(() => redis.disconnect());

    const stream = `governed:drill:${id}`;
    // The stream is the drill's own: nothing of it stays in the shared Redis.
    cleanups.push(async () => {
      const keys = await redis.keys(`${stream}*`);
      if (keys.length) await redis.del(...keys);
    });

    const workflowBundlePath = options.workflowBundlePath ?? (await buildWorkflowBundle(path.join(workDir, 'workflow-bundle.js')));
    checkpoint();
    const connection = await Connection.connect({ address: temporal.address });
    cleanups.push(() => connection.close());
    const client = new Client({ connection });

    const workerLog = createWriteStream(path.join(workDir, 'worker.log'), { flags: 'a' });
    cleanups.push(() => new Promise<void>((resolve) => workerLog.end(() => resolve())));
    const workers: WorkerProcess[] = [];
    const currentWorker = () => workers.find(alive) ?? workers.at(-1) ?? null;
    cleanups.push(() => Promise.all(workers.map((w) => w.kill())));
    const startWorker = async (env: Record<string, string> = {}, runner: WorkerRunner = {}) => {
      if (closing) throw new Error('the drill stack is closed');
      workerLog.write(`--- worker starting at ${new Date().toISOString()}\n`);
      const worker = await startWorkerProcess(
        {
          DATABASE_URL: productDatabaseUrl,
          TEMPORAL_ADDRESS: temporal.address,
          TEMPORAL_TASK_QUEUE: taskQueue,
          WORKFLOW_BUNDLE_PATH: workflowBundlePath,
          WORKER_METRICS_PORT: '0',
          WORKER_SDK_METRICS_PORT: '0',
          // The relay and the reactor run in this process, where the drill can count deliveries.
          EVENTS_IN_WORKER: 'false',
          LOG_LEVEL: 'info',
          ...options.workerEnv,
          ...env,
        },
        // Its last words may come after the log is closed. Loading the worker through tsx took over
        // 30 s on a loaded 2-core machine running a Temporal cluster beside it.
        { onOutput: (chunk) => workerLog.writableEnded || workerLog.write(chunk), startTimeoutMs: 90_000, ...runner },
      );
      workers.push(worker);
      children.add(() => (alive(worker) ? worker.pid : null));
      // Closed while it started: its clean-up has already run.
      if (closing) await worker.kill();
      return worker;
    };
    for (let i = 0; i < (options.workers ?? 1); i += 1) await startWorker();
    checkpoint();
    progress(`worker pid ${workers.map((w) => w.pid).join(', ')} on task queue ${taskQueue}`);

    // The in-process API's and relay's logs go to a file: the drill's own output is its report.
    const logFile = pino.destination({ dest: path.join(workDir, 'drill.log'), sync: true });
    cleanups.push(() => logFile.end());
    const logger: Logger = pino({ name: 'drill', level: 'info' }, logFile);
    const deliveries: Deliveries = new Map();
    const published: PublishedEntry[] = [];
    const tap = tapStream(redisUrl.toString(), stream, published);
    cleanups.push(() => tap.stop());
    const eventsConfig: EventsConfig = {
      REDIS_URL: productRedisUrl,
      EVENT_STREAM: stream,
      EVENT_STREAM_MAXLEN: 100_000,
      REACTOR_GROUP: 'governed-reactors',
      REACTOR_CONSUMER: `drill-${process.pid}`,
      REACTOR_HEARTBEAT_INTERVAL_SECONDS: 5,
      REACTOR_HEARTBEAT_MISS_THRESHOLD: 3,
      REACTOR_MAX_ATTEMPTS: 5,
      REACTOR_CLAIM_IDLE_SECONDS: 60,
      ALERT_WEBHOOK_URL: undefined,
      ALERT_WEBHOOK_SECRET: undefined,
    };
    const productChildren: ProductChild[] = [];
    cleanups.push(() => Promise.all(productChildren.map((c) => c.kill())));
    const startChild = async (name: string, entry: string, startedLine: string, env: Record<string, string>, url?: string): Promise<ProductChild> => {
      const log = createWriteStream(path.join(workDir, `${name}.log`), { flags: 'a' });
      cleanups.push(() => new Promise<void>((resolve) => log.end(() => resolve())));
      const child = await startProductProcess(entry, startedLine, { LOG_LEVEL: 'info', PGAPPNAME: name, ...env }, {
        onOutput: (chunk) => log.writableEnded || log.write(chunk),
        startTimeoutMs: 90_000,
      });
      const product: ProductChild = { name, pid: child.pid, url, alive: () => alive(child), kill: () => child.kill() };
      productChildren.push(product);
      children.add(() => (alive(child) ? child.pid : null));
      return product;
    };

    // One registry for every copy in this process: what the checks read (events relayed) is their sum.
    const eventMetrics = createEventMetrics(new Registry());
    const eventProcesses: ProductChild[] = [];
    const copies = Array.from({ length: options.eventServices ?? 1 }, (_, copy) => copy);
    if (options.eventProcesses) {
      // Side by side: loading each through tsx takes seconds, tens of them on a loaded machine.
      const started = await Promise.all(
        copies.map((copy) => {
          const name = `events-${copy}`;
          return startChild(name, path.join('drill', 'events-process.ts'), 'event relay and reactor started', {
            DATABASE_URL: productDatabaseUrl,
            TEMPORAL_ADDRESS: temporal.address,
            ...Object.fromEntries(Object.entries({ ...eventsConfig, REACTOR_CONSUMER: name }).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]]))),
          });
        }),
      );
      eventProcesses.push(...started);
      checkpoint();
    }
    for (const copy of options.eventProcesses ? [] : copies) {
      // Each copy on database connections of its own, as a process of its own would be.
      const copyDatabase = copy === 0 ? productDatabase : connectDatabase(productDatabaseUrl, { max: 4 });
      if (copy > 0) cleanups.push(() => copyDatabase.close());
      const consumer = `${eventsConfig.REACTOR_CONSUMER}-${copy}`;
      const events: EventServices = await startEventServices({
        database: copyDatabase,
        temporal: client,
        config: { ...eventsConfig, REACTOR_CONSUMER: consumer },
        logger,
        metrics: eventMetrics,
        extraHandlers: {
          '*': {
            [DRILL_RECORDER]: async (event) => {
              deliveries.set(event.id, [...(deliveries.get(event.id) ?? []), consumer]);
            },
          },
        },
        reactorTiming: { retryBaseMs: 200, blockMs: 500 },
      });
      cleanups.push(() => events.stop());
    }
    if (eventProcesses.length) progress(`event relay and reactor processes ${eventProcesses.map((e) => `${e.name} (pid ${e.pid})`).join(', ')}`);

    const apis: ProductChild[] = [];
    let baseUrl: string;
    if (options.apiProcesses) {
      const ports: number[] = [];
      // One after the other: two probes at once could be given the same port.
      for (let copy = 0; copy < options.apiProcesses; copy += 1) ports.push(await freePort(ports));
      const started = await Promise.all(
        ports.map((port, copy) =>
          startChild(
            `api-${copy}`,
            path.join('api', 'main.ts'),
            'api listening',
            {
              DATABASE_URL: productDatabaseUrl,
              REDIS_URL: productRedisUrl,
              TEMPORAL_ADDRESS: temporal.address,
              TEMPORAL_TASK_QUEUE: taskQueue,
              EVENT_STREAM: stream,
              API_HOST: '127.0.0.1',
              API_PORT: String(port),
              OBSERVABILITY_MODE: 'DEGRADED',
            },
            `http://127.0.0.1:${port}`,
          ),
        ),
      );
      apis.push(...started);
      checkpoint();
      baseUrl = apis[0]!.url!;
      progress(`API processes ${apis.map((a) => `${a.name} (pid ${a.pid}) on ${a.url}`).join(', ')}`);
    } else {
      const apiRedis = new Redis(productRedisUrl, { maxRetriesPerRequest: 1 });
      apiRedis.on('error', () => {});
      cleanups.push(() => apiRedis.disconnect());
      // Configured as the API processes above are: the product's configuration (lib/config.ts
      // defaults, or the environment's) on the drill's queue; its reactors' beats are not its to watch.
      const settings = apiSettingsOf({ ...loadConfig(), TEMPORAL_TASK_QUEUE: taskQueue, OBSERVABILITY_MODE: 'DEGRADED' }, { watchReactors: false });
      const app = createApp({ db: productDatabase.db, temporal: client, redis: apiRedis, metrics: createApiMetrics(), logger, ...settings });
      const server = http.createServer(app);
      await listen(server, 0, '127.0.0.1', { name: 'drill API port', variable: '-' });
      cleanups.push(() => new Promise((r) => server.close(r)));
      baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }

    const tenant = await createTenant(database.db, { name: `drill-${id}`, policy: options.tenantPolicy });
    const { apiKey } = tenant;
    const submitStats: SubmitStats = { requests: 0, connectionErrors: 0, replayed: 0 };
    let nextApi = 0;

    return {
      workDir,
      temporal,
      client,
      database,
      redis,
      postgresProxy,
      redisProxy,
      eventsConfig,
      eventMetrics,
      published,
      recorderName: DRILL_RECORDER,
      get worker() {
        return currentWorker();
      },
      workers,
      startWorker,
      baseUrl,
      tenant: { tenantId: tenant.tenantId, apiKey },
      createKey: async (role) => (await createApiKey(database.db, tenant.tenantId, role)).apiKey,
      async submitRun(body, idempotencyKey) {
        const submittedAt = Date.now();
        const targets = apis.length ? apis.map((a) => a.url!) : [baseUrl];
        let lastError = '';
        for (let attempt = 1; attempt <= SUBMIT_ATTEMPTS; attempt += 1) {
          // Each request to the next API, as a load balancer without health checks would send it.
          const url = targets[nextApi++ % targets.length]!;
          submitStats.requests += 1;
          let response: Response;
          let answer: { runId?: string };
          try {
            response = await fetch(`${url}/api/v1/runs`, {
              method: 'POST',
              headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
              body: JSON.stringify(body),
            });
            answer = (await response.json()) as { runId?: string };
          } catch (err) {
            // No API there, or it died before it answered: the same key, to the next one.
            submitStats.connectionErrors += 1;
            lastError = `${url}: ${err instanceof Error ? `${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}` : String(err)}`;
            await new Promise((r) => setTimeout(r, SUBMIT_RETRY_MS));
            continue;
          }
          if (response.status !== 202 || !answer.runId) throw new Error(`submit answered ${response.status}: ${JSON.stringify(answer)}`);
          if (response.headers.get('idempotent-replayed') === 'true') submitStats.replayed += 1;
          return { runId: answer.runId, submittedAt };
        }
        throw new Error(`submit ${idempotencyKey} reached no API in ${SUBMIT_ATTEMPTS} attempts; last: ${lastError}`);
      },
      readDeliveries: async () => (options.eventProcesses ? readDeliveryLog(redis, stream) : deliveries),
      apis,
      eventProcesses,
      submitStats,
      close: (closeOptions) => close(closeOptions?.keepWorkDir),
    };
  } catch (err) {
    await close(true);
    throw new Error(`the drill's stack did not come up (logs in ${workDir}): ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Reads the stream as it grows, on a connection of its own and outside the reactors' group (which it
 * does not disturb), to record the order the relays published in: blocking reads return as soon as
 * an entry is added, long before the relay trims what the reactors acknowledged.
 */
function tapStream(url: string, stream: string, seen: PublishedEntry[]): { stop(): Promise<void> } {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  redis.on('error', () => {});
  let running = true;
  let lastId = '0';
  const loop = (async () => {
    while (running) {
      try {
        const answer = await redis.xread('BLOCK', 500, 'STREAMS', stream, lastId);
        for (const [, entries] of answer ?? []) {
          for (const [entryId, fields] of entries) {
            lastId = entryId;
            const field = (name: string) => fields[fields.indexOf(name) + 1] ?? '';
            seen.push({ eventId: Number(field('id')), runId: field('runId') });
          }
        }
      } catch {
        if (running) await new Promise((r) => setTimeout(r, 200));
      }
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      redis.disconnect();
    },
  };
}

/** A port free now and not among `taken`, for a process that must be told its port. */
async function freePort(taken: readonly number[] = []): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const probe = net.createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    if (!taken.includes(port)) return port;
  }
}

function hostAndPort(url: URL, defaultPort: number) {
  return { host: url.hostname, port: Number(url.port || defaultPort) };
}

/** The same URL, through the proxy. */
function via(url: URL, proxy: TcpProxy): string {
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  return proxied.toString();
}

async function dropDatabase(url: URL): Promise<void> {
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`drop database if exists "${decodeURIComponent(url.pathname.slice(1))}" with (force)`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
