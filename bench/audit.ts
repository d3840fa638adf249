/**
 * Benchmark of the audit reconciler at scale: a pass must cost what is due, not what exists.
 *
 *   npm run bench -- audit [--runs 100000,1000000] [--due-pct 1] [--keep]
 *   BENCH_AUDIT_REUSE=1 npm run bench -- audit   (keeps each size's seeded database and reuses it)
 *
 * For each size N, in a fresh database: N finalized runs of one tenant, each with its six
 * expectations, six OK acks and a clean evidence set (trace, outcome incident, final evaluation,
 * log record), seeded set-based; due-pct% of them (spread evenly) are due, the rest were already
 * reconciled. Prints the seed time and database size, EXPLAIN (ANALYZE, BUFFERS) of the due-runs
 * query and of the evidence queries for one page, then times one full pass twice: the
 * `reconcileDueRuns` activity in a loop, and `reconcileAuditWorkflow` through a Temporal dev server
 * (same store and tuning as `temporal-dev.sh`). Ends with a summary table across sizes.
 *
 * Seeding 1,000,000 runs takes minutes. With `BENCH_AUDIT_REUSE=1` each size's database is named by
 * its size and due share, kept afterwards, and reused by the next run when its seed completed:
 * migrations are applied, the audit state left by earlier passes is reset (the same runs due, no
 * findings or passes), and it is vacuumed and checkpointed before the timing as after a seed. The
 * default stays a fresh database per size.
 */
import { ToolServers } from '../activities/tools/servers';
import { DEFAULT_MAX_STEP_OUTPUT_BYTES } from '../core/outputs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { tsToMs } from '@temporalio/common/lib/time';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { TransactionRollbackError } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { createReconcilerActivities } from '../activities/reconciler';
import { COMPLETE_TRACE, CREATE_INCIDENT, CREATE_LOG_RECORD, EVALUATE_POLICY, FINALIZE_RUN, RUN_EXPECTATIONS, START_TRACE } from '../core/audit';
import { EMPTY_TOTALS, actionKey, addTotals, type PassTotals } from '../core/audit-reconciliation';
import { RUN_SEARCH_ATTRIBUTES } from '../core/search-attributes';
import { checkDueRuns, databaseNow } from '../db/audit';
import { connectDatabase, type Database } from '../db/client';
import { runMigrations } from '../db/migrate';
import * as schema from '../db/schema';
import { devServerTuningArgs, temporalCliPath } from '../testing/dev-server';
import { activityDepsOf, auditWorkerOf } from '../compose/worker';
import { loadConfig, type Config } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createWorkerMetrics } from '../lib/metrics';
import { buildWorkflowBundle } from '../worker/build-bundle';
import { createWorker } from '../worker/create-worker';
import { RECONCILE_PAGE_SIZE, reconcileAuditWorkflow } from '../workflows/audit';

/**
 * Ids are md5-based and derived from the run's (`md5('run' || i)`), so an ack names its row without
 * a join and every table can be loaded in run-id order: each row's id is the run's first 30 hex
 * digits and a 2-digit tag of its own. Loaded in that order, every index grows at its right edge;
 * in random order, each row costs a few random leaf pages of indexes far larger than the buffer cache.
 */
const TAG = { trace: 'a1', incident: 'a2', evaluation: 'a3', log: 'a4' } as const;

/** The row each expected action's OK ack names: a tag of `TAG`, or the run itself. */
const RESULT_OF: Readonly<Record<string, keyof typeof TAG | 'run'>> = {
  [actionKey(START_TRACE)]: 'trace',
  [actionKey(COMPLETE_TRACE)]: 'trace',
  [actionKey(CREATE_INCIDENT)]: 'incident',
  [actionKey(EVALUATE_POLICY)]: 'evaluation',
  [actionKey(CREATE_LOG_RECORD)]: 'log',
  [actionKey(FINALIZE_RUN)]: 'run',
};

/**
 * The index each table's read must use; a Seq Scan on a large table means a pass costs the total.
 * (The tables the bench leaves empty, trace_steps, step_outputs and audit_findings, are scanned:
 * there is nothing to index into.)
 */
const EXPECTED_INDEXES: Readonly<Record<string, string>> = {
  audit_reconciliations: 'audit_reconciliations_due_idx',
  runs: 'runs_pkey',
  audit_expectations: 'audit_expectations_run_action_uq',
  domain_acks: 'domain_acks_run_action_status_uq',
  traces: 'traces_run_id_unique',
  incidents: 'incidents_run_dedupe_uq',
  policy_evaluations: 'policy_evaluations_run_dedupe_uq',
  run_logs: 'run_logs_run_id_unique',
  trace_steps: 'trace_steps_item_uq',
  step_outputs: 'step_outputs_item_uq',
  audit_findings: 'audit_findings_run_check_uq',
};

interface SizeResult {
  runs: number;
  due: number;
  seedMs: number;
  vacuumMs: number;
  databaseSize: string;
  loopMs: number;
  emptyPassMs: number;
  workflowMs: number;
  ok: boolean;
}

interface Bench {
  admin: string;
  env: TestWorkflowEnvironment;
  client: Client;
  bundlePath: string;
  duePct: number;
  keep: boolean;
  /** BENCH_AUDIT_REUSE: each size's seeded database is kept and reused. */
  reuse: boolean;
}

const ms = (n: number) => `${n.toFixed(0)} ms`;
/** Two cores are easily shared: say how busy the machine was when a figure was taken. */
const load = () => `load ${os.loadavg()[0]!.toFixed(1)}`;
const count = (n: number) => n.toLocaleString('en-US');

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await fn();
  return [result, performance.now() - started];
}

/** `i % every = 0` over 1..N picks due-pct% of the runs, spread evenly. */
function dueEvery(duePct: number): number {
  if (!(duePct > 0 && duePct <= 100)) throw new Error(`--due-pct must be in (0, 100], got ${duePct}`);
  return Math.max(1, Math.round(100 / duePct));
}

/** `(ordinal, domain, action, result tag or null for the run, minutes after the run's start)` per expected action. */
function expectationValues(): string {
  return RUN_EXPECTATIONS.map((e, index) => {
    const result = RESULT_OF[actionKey(e)];
    if (!result) throw new Error(`bench/audit.ts does not know which row ${actionKey(e)} acks: add it to RESULT_OF`);
    const minute = actionKey(e) === actionKey(FINALIZE_RUN) ? 10 : index + 1;
    return `(${index + 1}, '${e.domain}', '${e.action}', ${result === 'run' ? 'null' : `'${TAG[result]}'`}, ${minute})`;
  }).join(', ');
}

/**
 * N clean, finalized runs and their audit state, a few INSERT ... SELECT statements (parents first,
 * for the foreign keys), each in run-id order (see `TAG`). The `audit_changed` triggers are off
 * during the load: they would fire once per row.
 */
async function seed(sql: postgres.Sql, runs: number, every: number): Promise<{ seedMs: number; vacuumMs: number }> {
  const started = performance.now();
  await sql.unsafe(`set synchronous_commit = off`);
  await sql.unsafe(`set work_mem = '256MB'`);
  await sql.unsafe(`set maintenance_work_mem = '1GB'`);
  const triggered = await sql<{ table: string }[]>`select tgrelid::regclass::text as table from pg_trigger where tgname = 'audit_changed'`;
  for (const { table } of triggered) await sql.unsafe(`alter table ${table} disable trigger audit_changed`);
  try {
    // Every run starts 50 ms after the previous one, all of them in the past day.
    const [{ base }] = (await sql`select (now() - interval '1 day')::text as base`) as unknown as [{ base: string }];
    const t0 = `($2::timestamptz + r.i * interval '50 ms')`;
    const ordered = `(select i, md5('run' || i) as h from generate_series(1, $1::int) i order by h) r`;
    const perAction = `${ordered} cross join (values ${expectationValues()}) e(n, domain, action, tag, minute)`;
    const runId = `r.h::uuid`;
    const id = (tag: string) => `(left(r.h, 30) || '${tag}')::uuid`;
    const tenant = `md5('tenant')::uuid`;
    const params = [runs, base, every];
    const steps: [string, string][] = [
      ['tenants', `insert into tenants (id, name) values (${tenant}, 'bench-audit')`],
      [
        'runs',
        `insert into runs (id, tenant_id, request_hash, plan, budget_usd, status, phase, authorization_decision, policy_version,
                           observability_mode, created_at, started_at, finished_at, updated_at)
         select ${runId}, ${tenant}, md5('request' || r.i), '[]'::jsonb, 1, 'succeeded', 'COMPLETED', 'ALLOWED', 1,
                'DEGRADED', ${t0}, ${t0}, ${t0} + interval '10 minutes', ${t0} + interval '10 minutes'
           from ${ordered}`,
      ],
      [
        'audit_expectations',
        `insert into audit_expectations (id, run_id, domain, action, deadline_at, created_at)
         select (left(r.h, 30) || lpad(e.n::text, 2, '0'))::uuid, ${runId}, e.domain, e.action, ${t0} + interval '1 hour', ${t0}
           from ${perAction}`,
      ],
      [
        'traces',
        `insert into traces (id, run_id, tenant_id, status, outcome, created_at, completed_at)
         select ${id(TAG.trace)}, ${runId}, ${tenant}, 'completed', 'succeeded', ${t0}, ${t0} + interval '4 minutes'
           from ${ordered}`,
      ],
      [
        'incidents',
        `insert into incidents (id, run_id, tenant_id, dedupe_key, kind, severity, message, created_at)
         select ${id(TAG.incident)}, ${runId}, ${tenant}, 'outcome', 'none', 'NONE', 'run succeeded: no incident', ${t0} + interval '2 minutes'
           from ${ordered}`,
      ],
      [
        'policy_evaluations',
        `insert into policy_evaluations (id, run_id, tenant_id, dedupe_key, kind, decision, reason, policy_version, created_at)
         select ${id(TAG.evaluation)}, ${runId}, ${tenant}, 'final', 'final', 'COMPLIANT', 'within policy', 1, ${t0} + interval '3 minutes'
           from ${ordered}`,
      ],
      [
        'run_logs',
        `insert into run_logs (id, run_id, tenant_id, status, record, created_at)
         select ${id(TAG.log)}, ${runId}, ${tenant}, 'succeeded',
                jsonb_build_object('status', 'succeeded', 'steps', 0, 'costUsd', 0, 'tokens', 0), ${t0} + interval '5 minutes'
           from ${ordered}`,
      ],
      [
        'domain_acks',
        `insert into domain_acks (id, run_id, domain, action, status, result_id, created_at)
         select (left(r.h, 30) || lpad((10 + e.n)::text, 2, '0'))::uuid, ${runId}, e.domain, e.action, 'OK',
                coalesce(left(r.h, 30) || e.tag, r.h)::uuid, ${t0} + e.minute * interval '1 minute'
           from ${perAction}`,
      ],
      [
        'audit_reconciliations',
        // Reconciled COMPLETE before, except the due ones: finalized since the last pass saw them.
        `insert into audit_reconciliations (run_id, tenant_id, due_at, finalized_at, verdict, passes, reconciled_at, created_at)
         select ${runId}, ${tenant},
                case when r.i % $3::int = 0 then now() - interval '1 second' end,
                ${t0} + interval '10 minutes',
                case when r.i % $3::int = 0 then null else 'COMPLETE' end,
                case when r.i % $3::int = 0 then 0 else 1 end,
                case when r.i % $3::int = 0 then null else ${t0} + interval '11 minutes' end,
                ${t0}
           from ${ordered}`,
      ],
    ];
    for (const [table, statement] of steps) {
      // Postgres must see every parameter it is sent, so each statement gets those it names.
      const named = params.slice(0, Math.max(0, ...[...statement.matchAll(/\$(\d)/g)].map((m) => Number(m[1]))));
      const [result, took] = await timed(() => sql.unsafe(statement, named));
      console.log(`    ${table.padEnd(22)} ${count(result.count).padStart(11)} rows  ${ms(took)}`);
    }
  } finally {
    for (const { table } of triggered) await sql.unsafe(`alter table ${table} enable trigger audit_changed`);
  }
  const seedMs = performance.now() - started;
  // Vacuumed and checkpointed now, so autovacuum and a checkpoint do not run during the timed passes.
  const [, vacuumMs] = await timed(async () => {
    await sql.unsafe(`vacuum (analyze)`);
    await sql.unsafe(`checkpoint`);
  });
  return { seedMs, vacuumMs };
}

/** The comment a reusable database carries once its seed has finished. */
const SEEDED = 'governed bench audit: seeded';

async function seededBefore(adminUrl: string, dbName: string): Promise<boolean> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await admin`select shobj_description(oid, 'pg_database') as comment from pg_database where datname = ${dbName}`;
    return rows[0]?.comment === SEEDED;
  } finally {
    await admin.end();
  }
}

async function dropDatabase(adminUrl: string, dbName: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists "${dbName}" with (force)`);
  await admin.end();
}

/**
 * A reused database back to the state a seed leaves: earlier passes' verdicts stand on the runs
 * that are not due (COMPLETE, as seeded), the due ones are due again, and no finding, audit
 * incident, event or pass is left. Vacuumed and checkpointed as after a seed.
 */
async function reset(sql: postgres.Sql, runs: number, every: number): Promise<{ seedMs: number; vacuumMs: number }> {
  const started = performance.now();
  await sql.unsafe(`delete from audit_findings`);
  await sql.unsafe(`delete from audit_passes`);
  await sql.unsafe(`delete from incidents where kind = 'audit'`);
  await sql.unsafe(`delete from outbox`);
  await sql.unsafe(`update audit_reconciliations set due_at = null where due_at is not null`);
  await markDue(sql, runs, every);
  const seedMs = performance.now() - started;
  const [, vacuumMs] = await timed(async () => {
    await sql.unsafe(`vacuum (analyze)`);
    await sql.unsafe(`checkpoint`);
  });
  return { seedMs, vacuumMs };
}

/** Same predicate as the seed: the same runs become due again. */
function markDue(sql: postgres.Sql, runs: number, every: number) {
  return sql.unsafe(
    `update audit_reconciliations set due_at = now() - interval '1 second'
      where run_id in (select md5('run' || i)::uuid from generate_series(1, $1::int) i where i % $2::int = 0)`,
    [runs, every],
  );
}

function scans(plan: readonly string[]): string[] {
  return plan.flatMap((line) => {
    const found = /(Seq Scan on \S+|Index Only Scan using \S+ on \S+|Index Scan using \S+ on \S+|Bitmap Index Scan on \S+|Bitmap Heap Scan on \S+)/.exec(line);
    return found ? [found[1]!] : [];
  });
}

/** Says whether the query reached each table through the index a pass relies on. */
function indexVerdict(plan: readonly string[]): string {
  const used = scans(plan);
  const verdicts = used
    .filter((s) => !s.startsWith('Bitmap Heap Scan'))
    .map((s) => {
      const seq = /^Seq Scan on (\S+)/.exec(s);
      if (seq) return `${seq[1]}: SEQ SCAN (expected ${EXPECTED_INDEXES[seq[1]!] ?? 'an index'})`;
      const index = /(?:using|on) (\S+)/.exec(s)![1]!;
      const table = /using \S+ on (\S+)/.exec(s)?.[1] ?? Object.keys(EXPECTED_INDEXES).find((t) => EXPECTED_INDEXES[t] === index) ?? '?';
      const expected = EXPECTED_INDEXES[table];
      return `${table}: ${index}${expected && expected !== index ? ` (expected ${expected})` : ''} ${expected === index ? 'ok' : ''}`.trim();
    });
  return verdicts.join('; ');
}

async function explain(sql: postgres.Sql | postgres.TransactionSql, label: string, query: string, params: readonly unknown[], full: boolean): Promise<void> {
  const rows = await sql.unsafe(`explain (analyze, buffers) ${query}`, params as never[]);
  const plan = rows.map((r) => String((r as Record<string, unknown>)['QUERY PLAN']));
  const time = plan.find((l) => l.startsWith('Execution Time'))?.replace('Execution Time: ', '') ?? '?';
  console.log(`  EXPLAIN ${label}: ${time}; index use: ${indexVerdict(plan)}`);
  // The page's ids, inlined by EXPLAIN, are abbreviated.
  const abbreviated = (line: string) => line.replace(/'\{[0-9a-f-]{36}(?:,[0-9a-f-]{36})*\}'/g, (ids) => `'{${(ids.length - 2) / 37 | 0} uuids}'`);
  if (full) for (const line of plan) console.log(`      ${abbreviated(line)}`);
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of one page's statement, the very SQL the activity sends, captured from
 * `checkDueRuns` itself in a transaction rolled back after (its locks and nothing else).
 */
async function explainPage(url: string, sql: postgres.Sql): Promise<void> {
  const captured: string[] = [];
  const capture = postgres(url, { max: 1, onnotice: () => {}, debug: (_c, query) => captured.push(query) });
  try {
    const db = drizzle(capture, { schema });
    await db
      .transaction(async (tx) => {
        await checkDueRuns(tx, { dueBefore: null, limit: RECONCILE_PAGE_SIZE });
        tx.rollback();
      })
      .catch((err: unknown) => {
        if (!(err instanceof TransactionRollbackError)) throw err;
      });
  } finally {
    await capture.end({ timeout: 5 });
  }
  const page = captured.find((q) => q.includes('for update of ar skip locked'));
  if (!page) throw new Error('the page statement was not captured');
  await sql.begin(async (tx) => {
    await explain(tx, 'page (due runs, locked, and their evidence checked)', page, [], true);
    throw new TransactionRollbackError();
  }).catch((err: unknown) => {
    if (!(err instanceof TransactionRollbackError)) throw err;
  });
}

/** What went wrong on runs that should have been clean: the seed or the rules. */
async function showFindings(sql: postgres.Sql): Promise<void> {
  const verdicts = await sql`select verdict, count(*)::int as n from audit_reconciliations where passes > 0 group by verdict order by verdict`;
  console.log(`    verdicts stored: ${verdicts.map((v) => `${v.verdict as string}=${v.n as number}`).join(', ')}`);
  const findings = await sql`select run_id, "check", summary from audit_findings order by run_id, "check" limit 5`;
  for (const f of findings) console.log(`    finding ${f.run_id as string} ${f.check as string}: ${f.summary as string}`);
  const reports = await sql`select run_id, verdict, report from audit_reconciliations where verdict is distinct from 'COMPLETE' and passes > 0 limit 2`;
  for (const r of reports) console.log(`    report ${r.run_id as string} ${r.verdict as string}: ${JSON.stringify(r.report).slice(0, 800)}`);
}

/**
 * Where a workflow pass's time went, from its history: the first page (the wedge probe and the
 * horizon), the other pages (each activity's run time, and its wait in the queue), recording the
 * pass, and the rest (workflow tasks and the round trips between them).
 */
async function passTimeline(client: Client, workflowId: string): Promise<string> {
  const events = [];
  for (let runId: string | undefined; ; ) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    events.push(...(history.events ?? []));
    const next = history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
    if (!next) break;
    runId = next;
  }
  const scheduled = new Map<string, { type: string; at: number; startedAt?: number }>();
  const pages: { queued: number; ran: number }[] = [];
  let record = 0;
  for (const event of events) {
    const at = tsToMs(event.eventTime);
    const schedule = event.activityTaskScheduledEventAttributes;
    if (schedule) scheduled.set(String(event.eventId), { type: schedule.activityType?.name ?? '?', at });
    const start = event.activityTaskStartedEventAttributes;
    const started = start && scheduled.get(String(start.scheduledEventId));
    if (started) started.startedAt = at;
    const done = event.activityTaskCompletedEventAttributes;
    const from = done && scheduled.get(String(done.scheduledEventId));
    if (from) {
      const startedAt = from.startedAt ?? from.at;
      if (from.type === 'reconcileDueRuns') pages.push({ queued: startedAt - from.at, ran: at - startedAt });
      else record = at - from.at;
    }
  }
  const total = tsToMs(events.at(-1)?.eventTime) - tsToMs(events[0]?.eventTime);
  const [first, ...rest] = pages;
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const ran = rest.map((p) => p.ran);
  return (
    `${ms(total)} in the history: first page (wedge probe + page) ${ms(first?.ran ?? 0)}; ${rest.length} more pages, ` +
    `each ran ${ms(mean(ran))} (max ${ms(Math.max(0, ...ran))}) after ${ms(mean(rest.map((p) => p.queued)))} in the queue; recording the pass ${ms(record)}`
  );
}

function totalsLine(totals: PassTotals): string {
  const verdicts = Object.entries(totals.verdicts)
    .map(([v, n]) => `${v} ${count(n)}`)
    .join(', ');
  return `${count(totals.runs)} runs reconciled (${verdicts || 'none'}), findings opened ${totals.findingsOpened}, resolved ${totals.findingsResolved}, events ${totals.events}`;
}

async function benchSize(bench: Bench, runs: number): Promise<SizeResult> {
  const every = dueEvery(bench.duePct);
  const dbName = bench.reuse ? `governed_bench_audit_reuse_${runs}_${every}` : `governed_bench_audit_${Date.now()}`;
  const url = new URL(bench.admin);
  url.pathname = `/${dbName}`;
  console.log(`\n${count(runs)} runs, every ${every}th due (database ${dbName})`);
  const seeded = bench.reuse && (await seededBefore(bench.admin, dbName));
  if (bench.reuse && !seeded) await dropDatabase(bench.admin, dbName); // a seed that did not finish
  await runMigrations(url.toString());
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  let database: Database | undefined;
  try {
    let seedMs: number;
    let vacuumMs: number;
    if (seeded) {
      ({ seedMs, vacuumMs } = await reset(sql, runs, every));
      console.log(`  reused the seeded database (BENCH_AUDIT_REUSE): audit state reset in ${ms(seedMs)}`);
    } else {
      console.log('  seed:');
      ({ seedMs, vacuumMs } = await seed(sql, runs, every));
      if (bench.reuse) await sql.unsafe(`comment on database "${dbName}" is '${SEEDED}'`);
    }
    const [{ size, due }] = (await sql`
      select pg_size_pretty(pg_database_size(current_database())) as size,
             (select count(*)::int from audit_reconciliations where due_at is not null) as due`) as unknown as [{ size: string; due: number }];
    console.log(`  seeded in ${ms(seedMs)} (+ vacuum analyze and checkpoint ${ms(vacuumMs)}); database ${size}; ${count(due)} runs due`);

    await explainPage(url.toString(), sql);

    database = connectDatabase(url.toString(), { max: 10 });
    const logger = createLogger('bench-audit', 'silent');
    // The auditor's configuration; the reconciler calls no model, so none is reachable.
    const config: Config = {
      ...loadConfig(),
      LLM_BASE_URL: 'http://127.0.0.1:9/v1',
      LLM_API_KEY: undefined,
      LLM_MODEL: 'x',
      LLM_TIMEOUT_MS: 1000,
      MAX_STEP_OUTPUT_BYTES: DEFAULT_MAX_STEP_OUTPUT_BYTES,
      RETENTION_EXPORT_TO: undefined,
      TEMPORAL_NAMESPACE: 'default',
      WORKFLOW_BUNDLE_PATH: bench.bundlePath,
    };
    const deps = activityDepsOf(config, { db: database.db, metrics: createWorkerMetrics(), logger, temporal: bench.client, tools: await ToolServers.connect({}, { logger }) });
    const { reconcileDueRuns } = createReconcilerActivities(deps);
    await databaseNow(database.db); // opens a pooled connection outside the timing

    // (a) The activity alone, paged as the workflow pages it.
    let pages = 0;
    const [loopTotals, loopMs] = await timed(async () => {
      let totals = EMPTY_TOTALS;
      let dueBefore: string | null = null;
      for (;;) {
        const page = await reconcileDueRuns({ dueBefore, limit: RECONCILE_PAGE_SIZE });
        pages += 1;
        dueBefore = page.dueBefore;
        totals = addTotals(totals, page);
        if (page.runs < RECONCILE_PAGE_SIZE) return totals;
      }
    });
    console.log(`  pass (activity loop): ${ms(loopMs)}, ${pages} pages, ${ms(loopMs / pages)}/page (${load()}); ${totalsLine(loopTotals)}`);
    let ok = loopTotals.runs === due && loopTotals.verdicts.COMPLETE === due;
    if (!ok) await showFindings(sql);

    // (b) End to end: the workflow on a worker, through the dev server.
    const taskQueue = `bench-audit-${runs}`;
    const connection = await NativeConnection.connect({ address: bench.env.address });
    // The auditor's worker (the audit loop's activities alone), on the bench's queue.
    const worker = await createWorker({ ...auditWorkerOf({ ...config, TEMPORAL_AUDIT_TASK_QUEUE: taskQueue }), connection, deps });
    let lastPassId = '';
    const pass = (label: string) => {
      lastPassId = `bench-audit-${runs}-${label}-${Date.now()}`;
      return bench.client.workflow.execute(reconcileAuditWorkflow, { taskQueue, workflowId: lastPassId, args: [{}] });
    };
    let emptyPassMs = 0;
    let workflowMs = 0;
    await worker.runUntil(async () => {
      // Nothing is due now: the pass's fixed cost, and the worker's first workflow task out of the timing.
      const [empty, emptyMs] = await timed(() => pass('empty'));
      emptyPassMs = emptyMs;
      console.log(`  empty pass (workflow, nothing due): ${ms(emptyMs)}; ${totalsLine(empty)}`);
      console.log(`    ${await passTimeline(bench.client, lastPassId)}`);
      const [updated, reseedMs] = await timed(() => markDue(sql, runs, every));
      console.log(`  the same ${count(updated.count)} runs due again (${ms(reseedMs)})`);
      const [totals, took] = await timed(() => pass('full'));
      workflowMs = took;
      console.log(`  pass (workflow): ${ms(took)} (${load()}); ${totalsLine(totals)}`);
      console.log(`    ${await passTimeline(bench.client, lastPassId)}`);
      const workflowOk = totals.runs === due && totals.verdicts.COMPLETE === due;
      if (!workflowOk) await showFindings(sql);
      ok &&= workflowOk;
    });
    await connection.close();
    const [{ left }] = (await sql`select count(*)::int as left from audit_reconciliations where due_at is not null`) as unknown as [{ left: number }];
    if (left > 0) {
      console.log(`  !! ${count(left)} runs still due after the passes`);
      ok = false;
    }
    return { runs, due, seedMs, vacuumMs, databaseSize: size, loopMs, emptyPassMs, workflowMs, ok };
  } finally {
    await database?.close();
    await sql.end({ timeout: 5 });
    if (bench.keep || bench.reuse) {
      console.log(`  kept database ${dbName}`);
    } else {
      await dropDatabase(bench.admin, dbName);
    }
  }
}

function summary(results: readonly SizeResult[]): void {
  const header = ['runs', 'due', 'seed', 'db size', 'pass (activity loop)', 'pass (workflow)', 'empty pass', 'ms/due run (loop)', 'ms/due run (wf)', 'clean'];
  const rows = results.map((r) => [
    count(r.runs),
    count(r.due),
    `${(r.seedMs / 1000).toFixed(1)} s`,
    r.databaseSize,
    ms(r.loopMs),
    ms(r.workflowMs),
    ms(r.emptyPassMs),
    (r.loopMs / r.due).toFixed(3),
    (r.workflowMs / r.due).toFixed(3),
    r.ok ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) => `  ${cells.map((c, i) => c.padStart(widths[i]!)).join('  ')}`;
  console.log('\nsummary');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  for (let i = 1; i < results.length; i += 1) {
    const [a, b] = [results[i - 1]!, results[i]!];
    console.log(
      `  ${count(b.runs)} vs ${count(a.runs)} runs: pass x${(b.loopMs / a.loopMs).toFixed(2)} (loop), x${(b.workflowMs / a.workflowMs).toFixed(2)} (workflow); due x${(b.due / a.due).toFixed(2)}, total x${(b.runs / a.runs).toFixed(2)}`,
    );
  }
}

export async function benchAudit(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string', default: '100000,1000000' },
      'due-pct': { type: 'string', default: '1' },
      keep: { type: 'boolean', default: false },
    },
  });
  const sizes = values.runs.split(',').map((s) => Number(s.trim().replace(/_/g, '')));
  if (sizes.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`--runs must list positive integers, got '${values.runs}'`);
  const duePct = Number(values['due-pct']);
  dueEvery(duePct);

  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const work = mkdtempSync(path.join(os.tmpdir(), 'governed-bench-audit-'));
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      ip: '127.0.0.1',
      dbFilename: path.join(work, 'temporal.sqlite'),
      extraArgs: ['--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal', ...devServerTuningArgs()],
      searchAttributes: [...RUN_SEARCH_ATTRIBUTES],
    },
  });
  const connection = await Connection.connect({ address: env.address });
  try {
    const bench: Bench = {
      admin: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
      env,
      client: new Client({ connection }),
      bundlePath: await buildWorkflowBundle(path.join(work, 'bundle.js')),
      duePct,
      keep: values.keep,
      reuse: Boolean(process.env.BENCH_AUDIT_REUSE),
    };
    console.log(`audit reconciler benchmark: sizes ${sizes.map(count).join(', ')}, ${duePct}% due, pages of ${RECONCILE_PAGE_SIZE}, ${os.cpus().length} cores, ${load()}`);
    const results: SizeResult[] = [];
    for (const runs of sizes) results.push(await benchSize(bench, runs));
    summary(results);
    if (results.some((r) => !r.ok)) throw new Error('some due runs were not reconciled COMPLETE: see the findings above');
  } finally {
    await connection.close();
    await env.teardown();
    rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchAudit(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  });
}
