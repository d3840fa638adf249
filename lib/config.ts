import { z } from 'zod';
import { DEFAULT_MAX_STEP_OUTPUT_BYTES } from '../core/outputs';
import { OBSERVABILITY_MODES } from '../core/policy';

/** Measured with `npm run bench -- pushes` (README, Benchmarks). */
export const WORKER_MAX_CACHED_WORKFLOWS_DEFAULT = 200;
export const PUSH_CONCURRENCY_DEFAULT = 32;

const port = z.coerce.number().int().min(0).max(65_535);

const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600 };

const INTERVAL = /^(\d+)\s*([smh]?)$/;

/** `90`, `90s`, `5m` or `1h`, as whole seconds. */
const interval = z
  .string()
  .regex(INTERVAL, 'an interval such as 60, 60s, 5m or 1h')
  .transform((v) => {
    const [, amount, unit] = INTERVAL.exec(v)!;
    return Number(amount) * UNIT_SECONDS[unit!]!;
  })
  .pipe(z.number().int().min(1));

const envSchema = z.object({
  DATABASE_URL: z.string().default('postgres://postgres@127.0.0.1:5432/governed_runs'),
  DATABASE_POOL_MAX: z.coerce.number().int().positive().default(10),
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TASK_QUEUE: z.string().default('governed-runs'),
  // Worker versioning (README, "Past one machine"): both set, the worker joins this Worker Deployment
  // as this build, and each run stays on the build it started on (PINNED) or moves to the current
  // build at its next task (AUTO_UPGRADE). Unset, the worker is unversioned and patched() alone
  // keeps old runs replayable.
  TEMPORAL_WORKER_DEPLOYMENT_NAME: z.string().min(1).optional(),
  TEMPORAL_WORKER_BUILD_ID: z.string().min(1).optional(),
  TEMPORAL_WORKER_VERSIONING_BEHAVIOR: z.enum(['PINNED', 'AUTO_UPGRADE']).default('PINNED'),
  TEMPORAL_API_KEY: z.string().optional(),
  TEMPORAL_TLS: z.enum(['true', 'false']).default('false'),
  // mTLS to a self-hosted cluster (lib/temporal.ts reads and checks them at start). The names are
  // Temporal's own environment configuration, so the `temporal` CLI reads the same env file.
  // Each PEM from a file (`_PATH`) or inline (`_DATA`, for secrets handed over as variables).
  TEMPORAL_TLS_CLIENT_CERT_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_CLIENT_CERT_DATA: z.string().min(1).optional(),
  TEMPORAL_TLS_CLIENT_KEY_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_CLIENT_KEY_DATA: z.string().min(1).optional(),
  /** The CA that signed the server's certificate, when the system's roots do not hold it. */
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_SERVER_CA_CERT_DATA: z.string().min(1).optional(),
  /** The name the server's certificate must carry, when it is not TEMPORAL_ADDRESS's host. */
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  API_PORT: port.default(8080),
  API_HOST: z.string().default('127.0.0.1'),
  API_BODY_LIMIT: z.string().default('256kb'),
  /**
   * How long the API waits to open a Postgres connection before answering 503: a healthy local or
   * same-region server accepts in milliseconds, and a client waiting longer would rather retry.
   */
  API_DATABASE_CONNECT_TIMEOUT_SECONDS: z.coerce.number().positive().max(60).default(2),
  /** How long one API request may wait on Temporal in all before answering 503 (see `api/deadline.ts`). */
  API_TEMPORAL_DEADLINE_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
  /**
   * How long a client has to send a whole request, headers and body (`server.requestTimeout`):
   * past it the API answers 408 and closes the connection. The largest body (API_BODY_LIMIT) takes
   * well under a second on any working link; Node's default of 300 s let a stalled body hold a
   * connection for five minutes.
   */
  API_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1000).max(300_000).default(30_000),
  /** How long a client has to send a request's headers (`server.headersTimeout`); capped at API_REQUEST_TIMEOUT_MS. */
  API_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(1000).max(300_000).default(10_000),
  /** Connections the API holds at once (`server.maxConnections`); one more is closed as soon as it is accepted. */
  API_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1_000_000).default(1024),
  /**
   * Express's `trust proxy`: `false` (the default) reads the client's address from the socket; behind
   * a reverse proxy set it (`true`, a hop count, or the proxies' addresses) so the failed-key
   * throttle counts the client's address from X-Forwarded-For, not the proxy's.
   */
  API_TRUST_PROXY: z.string().min(1).default('false'),
  /** The window the two limits on failed API key lookups count over (`api/auth-throttle.ts`). */
  AUTH_FAILURE_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** Failed key lookups one client address may make per window; then every keyed request from it is a 429. */
  AUTH_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).default(20),
  /** Failed lookups of one and the same key per window, from every address together; then that key is a 429. */
  AUTH_FAILURES_PER_KEY: z.coerce.number().int().min(1).default(5),
  /**
   * Alerts about runs whose authorization was denied, per tenant and clock hour, counted apart from
   * the tenant's `maxAlertsPerHour` (and never more than it), so a burst of denied submits cannot
   * spend the budget of genuine alerts.
   */
  ALERT_DENIED_RUNS_PER_HOUR: z.coerce.number().int().min(0).max(100_000).default(10),
  WORKER_METRICS_PORT: port.default(9464),
  WORKER_SDK_METRICS_PORT: port.default(9465),
  /** `npm run events`' metrics, when the relay and reactor run on their own. */
  EVENTS_METRICS_PORT: port.default(9466),
  /** Use the prebuilt bundle at this path instead of bundling workflows at start-up. */
  WORKFLOW_BUNDLE_PATH: z.string().optional(),
  /**
   * Workflows the worker keeps in memory between their tasks (the SDK's sticky cache,
   * `maxCachedWorkflows`). The SDK's default grows with the heap limit (2,310 with a 4 GiB heap), so
   * every paused run stayed cached: 500 paused runs held ~160 MB. A run evicted from the cache is
   * replayed from its history at its next task (a few ms for a paused run). See README, Benchmarks.
   */
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce
    .number()
    .int()
    .min(0)
    .max(100_000)
    .refine((n) => n !== 1, '0 (no cache) or at least 2')
    .default(WORKER_MAX_CACHED_WORKFLOWS_DEFAULT),
  /**
   * Threads that run workflow code (`workflowThreadPoolSize`; the SDK's default is 1 with its
   * default reused V8 context). Each holds its own V8 isolate with the workflow bundle and its share
   * of the cache: a second one cost ~110 MB with 500 runs paused (README, Benchmarks: pushes).
   */
  WORKER_WORKFLOW_THREADS: z.coerce.number().int().min(1).max(64).default(1),
  /** Workflow tasks the worker runs at once (`maxConcurrentWorkflowTaskExecutions`); at most WORKER_MAX_CACHED_WORKFLOWS. */
  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: z.coerce.number().int().min(2).max(10_000).default(40),
  /** Activities the worker runs at once (`maxConcurrentActivityTaskExecutions`). */
  WORKER_MAX_CONCURRENT_ACTIVITIES: z.coerce.number().int().min(1).max(10_000).default(100),
  /** Attempts before an activity error that is not a connection problem becomes final. */
  DOMAIN_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  OBSERVABILITY_MODE: z.enum(OBSERVABILITY_MODES).default('DEGRADED'),
  RUN_TIMEOUT_SECONDS: z.coerce.number().positive().default(3600),
  RUN_DEADLINE_GRACE_SECONDS: z.coerce.number().min(0).default(300),
  /** How often the `audit-reconciler` Schedule starts a pass. */
  AUDIT_RECONCILE_INTERVAL: interval.default(60),
  /** When the `stale-run-report` cron workflow writes a report (five-field cron, UTC). */
  STALE_REPORT_CRON: z
    .string()
    .regex(/^\S+(\s+\S+){4}$/, 'a five-field cron expression such as "*/5 * * * *"')
    .default('*/5 * * * *'),
  /** How often the `retention-pruner` Schedule starts a pass (README, "Retention"). */
  RETENTION_PRUNE_INTERVAL: interval.default(3600),
  /**
   * Where runs are exported before retention removes them, for tenants that ask for it: a folder
   * (or `file:` URL) the auditor can write, `<tenant>/<run>.jsonl` under it. Unset, such tenants'
   * runs are kept. An S3-compatible URL is refused: not built.
   */
  RETENTION_EXPORT_TO: z.string().min(1).optional(),
  /** The Redis Stream events are relayed to, and its approximate cap. */
  EVENT_STREAM: z.string().min(1).default('governed:events'),
  EVENT_STREAM_MAXLEN: z.coerce.number().int().min(1000).default(100_000),
  /** Run the outbox relay and the event reactor inside the worker process (`npm run events` runs them alone). */
  EVENTS_IN_WORKER: z.enum(['true', 'false']).default('true'),
  REACTOR_GROUP: z.string().min(1).default('governed-reactors'),
  /** This process's consumer name in the group; defaults to host and pid. */
  REACTOR_CONSUMER: z.string().min(1).optional(),
  REACTOR_HEARTBEAT_INTERVAL_SECONDS: z.coerce.number().positive().default(30),
  REACTOR_HEARTBEAT_MISS_THRESHOLD: z.coerce.number().int().min(1).default(3),
  REACTOR_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  /**
   * How long the reactor remembers that a handler succeeded for an event (a Redis key per event and
   * handler, expiring): long enough to drop the copy a relay restart or a claim sends, minutes later.
   */
  REACTOR_HANDLED_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 86_400).default(86_400),
  /** Approximate cap of the dead-letter stream (`<EVENT_STREAM>:dead`); each letter is also an incident in Postgres. */
  EVENT_DEAD_LETTER_MAXLEN: z.coerce.number().int().min(100).default(10_000),
  /** A message another consumer left pending this long is taken over. */
  REACTOR_CLAIM_IDLE_SECONDS: z.coerce.number().positive().default(60),
  /** Alerts are also POSTed here, signed with ALERT_WEBHOOK_SECRET (HMAC-SHA256). */
  ALERT_WEBHOOK_URL: z.url().optional(),
  ALERT_WEBHOOK_SECRET: z.string().min(16).optional(),
  /**
   * How long a start or a push may wait for Temporal before it is left to the dispatcher: a
   * request answers within seconds, and what it committed is not lost (see dispatch/).
   */
  TEMPORAL_CALL_TIMEOUT_MS: z.coerce.number().int().min(100).default(3000),
  /**
   * Signals one push has in flight at once: a tenant-wide change is delivered run by run, this many
   * at a time, each with its own TEMPORAL_CALL_TIMEOUT_MS (see dispatch/control-pusher.ts).
   */
  PUSH_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(PUSH_CONCURRENCY_DEFAULT),
  /**
   * How long the dispatcher delivers one push before it records its progress and lets other work
   * (runs to start, other tenants' pushes) go first; the push goes on at once in the next pass.
   */
  PUSH_SLICE_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** How often the dispatcher (in the worker) looks for unstarted runs and unpushed changes. */
  DISPATCH_INTERVAL_MS: z.coerce.number().int().min(50).default(2000),
  DISPATCHER_IN_WORKER: z.enum(['true', 'false']).default('true'),
  LLM_BASE_URL: z.string().default('https://api.openai.com/v1'),
  LLM_API_KEY: z.string().optional(),
  LLM_MODEL: z.string().default('gpt-4o-mini'),
  LLM_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  /** A step's output (or an agent's tool result) larger than this fails; it is never truncated. */
  MAX_STEP_OUTPUT_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(DEFAULT_MAX_STEP_OUTPUT_BYTES),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),

  /**
   * Requests one API key may make per minute on any route, counted by every copy of the API
   * together (`api/request-limit.ts`); a tenant may be given its own (`governed tenants limit`).
   * The control limits below bound controls further.
   */
  API_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(6000),

  // Control requests (pause, stop, resume of a run; the tenant-wide pause and resume): limits
  // shared by every copy of the API through Redis (`api/rate-limit.ts`), so that no key and no
  // flood can bury one run under signals.
  /** The window the two limits below count over. */
  CONTROL_RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().min(1).max(3600).default(10),
  /** Control requests one API key may send per window: a person, or a script over a few runs. */
  CONTROL_RATE_LIMIT_PER_KEY: z.coerce.number().int().min(1).default(20),
  /** Signals and updates the API sends to one run per window, from all keys together (a stop is never refused). */
  CONTROL_RATE_LIMIT_PER_RUN: z.coerce.number().int().min(1).default(10),
  /** How long a pause or stop the API sent answers a repeat of it without a new signal. */
  CONTROL_COALESCE_SECONDS: z.coerce.number().int().min(1).max(3600).default(10),

  // The auditor (`npm run auditor`, `auditor/main.ts`): the audit loop's workflows on a task queue
  // of their own, served by a process of its own, so that they keep reconciling and reporting when
  // every run worker is dead or wedged.
  /** The task queue of `reconcileAuditWorkflow` and `staleRunReportWorkflow`; never the runs' queue. */
  TEMPORAL_AUDIT_TASK_QUEUE: z.string().min(1).default('governed-audit'),
  /** The auditor's Prometheus metrics: the audit loop's verdicts, passes and stale runs. */
  AUDITOR_METRICS_PORT: port.default(9467),
});

export type Config = z.infer<typeof envSchema>;

/** A setting the operator must change: its message names the variable, and a stack trace would add nothing. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Reads the environment once; a bad value stops the process with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  return parsed.data;
}
