import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type LogLevel, type Worker, type WorkerDeploymentOptions } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import Redis from 'ioredis';
import { inject } from 'vitest';
import type { ActivityDeps } from '../../activities';
import { createApp, type ApiDeps } from '../../api/app';
import { apiRedisOf, apiSettingsOf } from '../../compose/api';
import { databaseOf } from '../../compose/database';
import { activityDepsOf, dispatcherOf, runWorkerOf } from '../../compose/worker';
import { expectContractResponse } from './contract';
import type { ApiRole } from '../../core/authorization';
import { isTerminalPhase, type RunPhase } from '../../core/phases';
import type { PolicyRules } from '../../core/policy';
import type { Database } from '../../db/client';
import { runs } from '../../db/schema';
import { createApiKey, createTenant } from '../../db/tenancy';
import { loadConfig, type Config } from '../../lib/config';
import { createLogger } from '../../lib/logger';
import { createApiMetrics, createEventMetrics, createWorkerMetrics, type EventMetrics } from '../../lib/metrics';
import { startDispatcher, type Dispatcher } from '../../dispatch/service';
import { startEventServices, type EventServicesDeps, type EventsConfig } from '../../events/service';
import { createWorker } from '../../worker/create-worker';
import { FaultInjector } from '../../worker/faults';
import type { ToolServersConfig } from '../../activities/tools/config';
import { ToolServers } from '../../activities/tools/servers';
import { DEFAULT_MAX_STEP_OUTPUT_BYTES } from '../../core/outputs';

/** The relay's and reactor's configuration in tests: a stream of its own, the test's Redis, no webhook. */
export function testEventsConfig(consumer: string, overrides: Partial<EventsConfig> = {}): EventsConfig {
  return {
    REDIS_URL: inject('redisUrl'),
    EVENT_STREAM: `governed:test:${randomUUID()}`,
    EVENT_STREAM_MAXLEN: 100_000,
    REACTOR_GROUP: 'governed-reactors',
    REACTOR_CONSUMER: `${consumer}-${randomUUID().slice(0, 8)}`,
    REACTOR_HEARTBEAT_INTERVAL_SECONDS: 30,
    REACTOR_HEARTBEAT_MISS_THRESHOLD: 3,
    REACTOR_MAX_ATTEMPTS: 3,
    REACTOR_CLAIM_IDLE_SECONDS: 60,
    ALERT_WEBHOOK_URL: undefined,
    ALERT_WEBHOOK_SECRET: undefined,
    ...overrides,
  };
}

export interface StackOptions {
  /** Where the worker reaches Postgres; a test may route it through a proxy it can cut. */
  workerDatabaseUrl?: string;
  llmBaseUrl?: string;
  /** The worker's LLM key (`LLM_API_KEY`); `test-key` unless a test needs one of its own. */
  llmApiKey?: string;
  maxDomainAttempts?: number;
  /** A database of the test file's own (see `freshDatabase`), when it must not share the run's. */
  databaseUrl?: string;
  /** The `finalize_run` deadline of runs this stack submits. */
  runDeadlineSeconds?: number;
  auditIntervalSeconds?: number;
  /**
   * Run the outbox relay and the event reactor, on a stream of the stack's own. Only with a
   * database of the file's own: relays of two files sharing one outbox would split its events.
   */
  events?: Partial<EventsConfig> & Pick<EventServicesDeps, 'extraHandlers' | 'reactorTiming'>;
  /**
   * Serve the Temporal SDK's runtime metrics on this loopback port, as `worker/main.ts` does on
   * WORKER_SDK_METRICS_PORT. The runtime is one per process: the first stack of a file decides.
   */
  sdkMetricsPort?: number;
  /** The tool servers the worker offers agents, as an operator declares them (`TOOL_SERVERS`). */
  toolServers?: ToolServersConfig;
  maxStepOutputBytes?: number;
  /** A Temporal server of the test's own (one started with other dynamic config), instead of the shared one. */
  temporalAddress?: string;
  /** Requests per API key per minute (API_RATE_LIMIT_PER_MINUTE); absent: the product's default. */
  requestsPerMinute?: number;
  /** The worker's Worker Deployment version (`workerVersioning`); absent, unversioned. */
  deployment?: WorkerDeploymentOptions;
  /** Where retention exports runs before pruning them (`RETENTION_EXPORT_TO`); unset, tenants that ask for it keep their runs. */
  runExportDir?: string;
}

export interface TestTenant {
  tenantId: string;
  apiKey: string;
  name: string;
}

export interface Stack {
  /** The configuration every part of the stack was made from (`compose/`), for a test that makes one more. */
  config: Config;
  baseUrl: string;
  database: Database;
  db: Database['db'];
  client: Client;
  redis: Redis;
  worker: Worker;
  workerMetrics: ReturnType<typeof createWorkerMetrics>;
  eventMetrics: EventMetrics;
  /** The relay and reactor's settings, when the stack runs them. */
  eventsConfig: EventsConfig | null;
  /** What the worker's activities are bound to, for a test that calls an activity directly. */
  activityDeps: ActivityDeps;
  /** What the API is built from, for a test that builds a second one with a dependency swapped. */
  apiDeps: ApiDeps;
  faults: FaultInjector;
  /** Starts the runs the API could not and delivers queued pushes, as the worker's does. */
  dispatcher: Dispatcher;
  taskQueue: string;
  createTenant(options?: { role?: ApiRole; policy?: Partial<PolicyRules> }): Promise<TestTenant>;
  createKey(tenantId: string, role: ApiRole): Promise<string>;
  request(method: string, path: string, options?: { apiKey?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  submitRun(apiKey: string, body: unknown, headers?: Record<string, string>): Promise<string>;
  waitForPhase(runId: string, phases: RunPhase[] | 'terminal', timeoutMs?: number): Promise<typeof runs.$inferSelect>;
  close(): Promise<void>;
}

/**
 * The whole product against the shared real services: a worker on its own task queue (prebuilt
 * bundle), the HTTP API on an ephemeral loopback port, a Temporal client, Postgres and Redis.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  installQuietRuntime(options.sdkMetricsPort);
  const logger = createLogger('test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const taskQueue = `test-${randomUUID()}`;
  const eventsConfig: EventsConfig | null = options.events ? testEventsConfig('stack', options.events) : null;
  // The product's configuration over the tests' services, on a task queue of the stack's own, with
  // the short timeouts and intervals a test can wait out. Every part below is made from it as the
  // product's processes make theirs (compose/).
  const config: Config = {
    ...loadConfig(),
    DATABASE_URL: options.databaseUrl ?? inject('databaseUrl'),
    DATABASE_POOL_MAX: 5,
    REDIS_URL: inject('redisUrl'),
    TEMPORAL_ADDRESS: options.temporalAddress ?? inject('temporalAddress'),
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TASK_QUEUE: taskQueue,
    WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
    DOMAIN_MAX_ATTEMPTS: options.maxDomainAttempts ?? 3,
    LLM_BASE_URL: options.llmBaseUrl ?? 'http://127.0.0.1:9/v1',
    LLM_API_KEY: options.llmApiKey ?? 'test-key',
    LLM_MODEL: 'gpt-4o-mini',
    LLM_TIMEOUT_MS: 10_000,
    MAX_STEP_OUTPUT_BYTES: options.maxStepOutputBytes ?? DEFAULT_MAX_STEP_OUTPUT_BYTES,
    RETENTION_EXPORT_TO: options.runExportDir,
    API_BODY_LIMIT: '64kb',
    // Generous: a test machine running several files at once can take seconds to start a
    // workflow; test/api-outage.test.ts checks the deadline itself with its own.
    API_TEMPORAL_DEADLINE_MS: 30_000,
    OBSERVABILITY_MODE: 'DEGRADED',
    RUN_TIMEOUT_SECONDS: options.runDeadlineSeconds ?? 120,
    RUN_DEADLINE_GRACE_SECONDS: 0,
    AUDIT_RECONCILE_INTERVAL: options.auditIntervalSeconds ?? 60,
    TEMPORAL_CALL_TIMEOUT_MS: 2000,
    DISPATCH_INTERVAL_MS: 300,
    ...(options.requestsPerMinute ? { API_RATE_LIMIT_PER_MINUTE: options.requestsPerMinute } : {}),
    ...eventsConfig,
  };

  // One pool for the API and the test's own reads, with the workers' connect timeout: a loaded
  // test machine may take longer than the API's to open a connection.
  const database = databaseOf(config, 'worker');
  const workerDatabase = options.workerDatabaseUrl ? databaseOf({ ...config, DATABASE_URL: options.workerDatabaseUrl }, 'worker') : database;
  const redis = apiRedisOf(config, logger);
  const nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const client = new Client({ connection });
  const faults = new FaultInjector();
  const workerMetrics = createWorkerMetrics();
  const tools = await ToolServers.connect(options.toolServers ?? {}, { logger });

  const activityDeps = activityDepsOf(config, { db: workerDatabase.db, metrics: workerMetrics, logger, temporal: client, tools });
  const worker = await createWorker({
    ...runWorkerOf(config),
    connection: nativeConnection,
    deps: activityDeps,
    faults,
    deployment: options.deployment,
  });
  const workerRun = worker.run();
  const eventMetrics = createEventMetrics(workerMetrics.registry);
  const events = eventsConfig
    ? await startEventServices({
        database: workerDatabase,
        temporal: client,
        config: eventsConfig,
        logger,
        metrics: eventMetrics,
        extraHandlers: options.events?.extraHandlers,
        reactorTiming: options.events?.reactorTiming,
      })
    : null;

  // Takes over the API's attempts after a second, not the product's two call timeouts: tests wait for it.
  const dispatcher = startDispatcher({ ...dispatcherOf(config, { db: workerDatabase.db, temporal: client, logger }), startGraceMs: 1000 });

  const apiDeps: ApiDeps = {
    db: database.db,
    temporal: client,
    redis,
    metrics: createApiMetrics(),
    logger,
    // The API watches the reactors' heartbeats only where the stack runs them.
    ...apiSettingsOf(config, { watchReactors: eventsConfig !== null }),
  };
  const app = createApp(apiDeps);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const stack: Stack = {
    config,
    baseUrl,
    database,
    db: database.db,
    client,
    redis,
    worker,
    workerMetrics,
    eventMetrics,
    eventsConfig,
    activityDeps,
    apiDeps,
    faults,
    dispatcher,
    taskQueue,

    async createTenant({ role = 'admin', policy } = {}) {
      const name = `t-${randomUUID().slice(0, 12)}`;
      const created = await createTenant(database.db, { name, role, policy });
      return { tenantId: created.tenantId, apiKey: created.apiKey, name };
    },

    async createKey(tenantId, role) {
      return (await createApiKey(database.db, tenantId, role)).apiKey;
    },

    async request(method, path, { apiKey, body, rawBody, headers = {} } = {}) {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: {
          ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
          ...(body !== undefined || rawBody !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        body: rawBody ?? (body === undefined ? undefined : JSON.stringify(body)),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // not JSON: keep the text
      }
      // Every response any test sees must be what the published contract says.
      expectContractResponse(method, path, response.status, parsed, response.headers.get('content-type'));
      return { status: response.status, body: parsed, headers: response.headers };
    },

    async submitRun(apiKey, body, headers) {
      const res = await stack.request('POST', '/api/v1/runs', { apiKey, body, headers });
      if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body.runId as string;
    },

    async waitForPhase(runId, phases, timeoutMs = 45_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [run] = await database.db.select().from(runs).where(eq(runs.id, runId));
        if (run && (phases === 'terminal' ? isTerminalPhase(run.phase as RunPhase) : phases.includes(run.phase as RunPhase))) {
          return run;
        }
        if (Date.now() > deadline) throw new Error(`run ${runId} still in ${run?.phase ?? 'nowhere'} after ${timeoutMs}ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },

    async close() {
      await dispatcher.stop();
      await events?.stop();
      if (eventsConfig) {
        // The stack's stream is its own: leave nothing of it in the shared Redis.
        const keys = await redis.keys(`${eventsConfig.EVENT_STREAM}*`);
        if (keys.length) await redis.del(...keys);
      }
      await new Promise((r) => server.close(r));
      worker.shutdown();
      await workerRun;
      await tools.close();
      await nativeConnection.close();
      await connection.close();
      redis.disconnect();
      if (workerDatabase !== database) await workerDatabase.close();
      await database.close();
    },
  };
  return stack;
}

export function simPlan(n: number, input: Record<string, unknown> = {}) {
  return Array.from({ length: n }, (_, i) => ({ skill: 'sim.llm', input: { prompt: `step ${i} of a test run`, ...input } }));
}

let runtimeInstalled = false;

/** The SDK logs every worker state change at INFO; tests keep its errors only. */
function installQuietRuntime(sdkMetricsPort?: number): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({
    logger: new DefaultLogger((process.env.TEST_SDK_LOG_LEVEL ?? 'ERROR') as LogLevel),
    ...(sdkMetricsPort === undefined ? {} : { telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${sdkMetricsPort}` } } } }),
  });
}
