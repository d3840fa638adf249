/**
 * Benchmark of retention at the database: disk per run before and after pruning, and how fast
 * bounded batches prune.
 *
 *   npm run bench -- retention [--runs 10000] [--steps 3] [--output-bytes 800] [--batch 200] [--keep]
 *
 * In a fresh database: `--runs` finished runs of one tenant, seeded set-based in the shape a
 * `--steps`-step run leaves (its run row and plan, trace, a trace step and a stored output of
 * `--output-bytes` per step, the six expectations and their acks plus one per step, the outcome
 * incident, final evaluation, log record and audit state) and five published outbox rows each, all
 * two days old; the tenant keeps runs one day and outbox rows one hour. Prints the size of each
 * table (pg_total_relation_size) per run, then prunes with the retention activities in batches of
 * `--batch` (as the pruning workflow calls them, without Temporal), then the sizes again after
 * VACUUM (space Postgres reuses for new rows; the files shrink only with VACUUM FULL, also measured).
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import type { ActivityDeps } from '../activities';
import { createRetentionActivities } from '../activities/retention';
import { RUN_EXPECTATIONS } from '../core/audit';
import { connectDatabase } from '../db/client';
import { runMigrations } from '../db/migrate';
import { RUN_RECORD_TABLES } from '../db/retention';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createWorkerMetrics } from '../lib/metrics';

const TABLES = [...RUN_RECORD_TABLES.map((t) => t.name), 'outbox', 'run_tombstones'];

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(2)} KiB`;
}

async function sizes(sql: postgres.Sql): Promise<Map<string, number>> {
  const rows = await sql<{ name: string; bytes: string }[]>`
    select t as name, pg_total_relation_size(t::regclass)::text as bytes from unnest(${TABLES}::text[]) t`;
  return new Map(rows.map((r) => [r.name, Number(r.bytes)]));
}

function printSizes(label: string, measured: Map<string, number>, runs: number): number {
  const total = [...measured.values()].reduce((a, b) => a + b, 0);
  console.log(`  ${label}: ${kib(total / runs)} per run (${(total / 1024 / 1024).toFixed(1)} MiB in all)`);
  for (const [name, bytes] of [...measured].sort((a, b) => b[1] - a[1])) {
    if (bytes > 16 * 1024) console.log(`    ${name.padEnd(24)} ${kib(bytes / runs).padStart(12)} per run`);
  }
  return total;
}

async function seed(sql: postgres.Sql, runs: number, steps: number, outputBytes: number): Promise<void> {
  await sql.unsafe(`set synchronous_commit = off`);
  const triggered = await sql<{ table: string }[]>`select tgrelid::regclass::text as table from pg_trigger where tgname = 'audit_changed'`;
  for (const { table } of triggered) await sql.unsafe(`alter table ${table} disable trigger audit_changed`);
  const expectations = RUN_EXPECTATIONS.map((e) => `('${e.domain}', '${e.action}')`).join(', ');
  const t0 = `(now() - interval '2 days' + r.i * interval '1 ms')`;
  const ordered = `(select i, gen_random_uuid() as id from generate_series(1, ${runs}) i) r`;
  const perStep = `${ordered} cross join generate_series(0, ${steps - 1}) s`;
  const tenant = `(select id from tenants where name = 'bench-retention')`;
  const plan = `(select jsonb_agg(jsonb_build_object('skill', 'sim.llm', 'input', jsonb_build_object('prompt', 'step ' || s || ' of a benchmark run'))) from generate_series(1, ${steps}) s)`;
  const statements: [string, string][] = [
    ['tenants', `insert into tenants (name) values ('bench-retention')`],
    ['tenant_retention', `insert into tenant_retention (tenant_id, runs_days, outbox_hours, control_pushes_hours, alerts_days, export_before_prune) select ${tenant}, 1, 1, 1, 1, false`],
    ['runs (temp)', `create temporary table seed_runs as select r.i, r.id from ${ordered}`],
    [
      'runs',
      `insert into runs (id, tenant_id, request_hash, plan, budget_usd, status, phase, authorization_decision, policy_version, observability_mode,
                         cost_usd, tokens, steps_completed, created_at, started_at, finished_at, updated_at)
       select r.id, ${tenant}, md5(r.id::text), ${plan}, 1, 'succeeded', 'COMPLETED', 'ALLOWED', 1, 'DEGRADED', 0.003, 900, ${steps},
              ${t0}, ${t0}, ${t0} + interval '10 seconds', ${t0} + interval '10 seconds'
         from seed_runs r`,
    ],
    ['traces', `insert into traces (run_id, tenant_id, status, outcome, created_at, completed_at) select r.id, ${tenant}, 'completed', 'succeeded', ${t0}, ${t0} from seed_runs r`],
    [
      'step_outputs',
      `insert into step_outputs (id, run_id, tenant_id, step_index, kind, content_type, content, sha256, bytes, created_at)
       select gen_random_uuid(), r.id, ${tenant}, s, 'step', 'text/plain', repeat(md5(r.id::text || s), ${Math.ceil(outputBytes / 32)}),
              md5(r.id::text || s) || md5(r.id::text || s), ${outputBytes}, ${t0}
         from ${perStep.replace(ordered, 'seed_runs r')}`,
    ],
    [
      'trace_steps',
      `insert into trace_steps (run_id, step_index, skill, model, tokens_in, tokens_out, cost_usd, duration_ms, output_preview, output_id, input_sha256, created_at)
       select o.run_id, o.step_index, 'sim.llm', 'gpt-4o-mini', 200, 100, 0.001, 850, left(o.content, 200), o.id, o.sha256, o.created_at from step_outputs o`,
    ],
    [
      'audit_expectations',
      `insert into audit_expectations (run_id, domain, action, deadline_at, created_at)
       select r.id, e.domain, e.action, ${t0} + interval '1 hour', ${t0} from seed_runs r cross join (values ${expectations}) e(domain, action)
       union all
       select r.id, 'skill', 'execute:' || s, ${t0} + interval '1 hour', ${t0} from ${perStep.replace(ordered, 'seed_runs r')}`,
    ],
    [
      'domain_acks',
      `insert into domain_acks (run_id, domain, action, status, result_id, created_at)
       select x.run_id, x.domain, x.action, 'OK', gen_random_uuid(), x.created_at from audit_expectations x`,
    ],
    ['incidents', `insert into incidents (run_id, tenant_id, dedupe_key, kind, severity, message, status, created_at) select r.id, ${tenant}, 'outcome', 'none', 'NONE', 'run succeeded: no incident', 'resolved', ${t0} from seed_runs r`],
    [
      'policy_evaluations',
      `insert into policy_evaluations (run_id, tenant_id, dedupe_key, kind, decision, reason, policy_version, created_at)
       select r.id, ${tenant}, 'final', 'final', 'COMPLIANT', 'within policy', 1, ${t0} from seed_runs r`,
    ],
    [
      'run_logs',
      `insert into run_logs (run_id, tenant_id, status, record, created_at)
       select r.id, ${tenant}, 'succeeded', jsonb_build_object('status', 'succeeded', 'steps', ${steps}, 'costUsd', 0.003, 'tokens', 900, 'phase', 'COMPLETED'), ${t0} from seed_runs r`,
    ],
    [
      'audit_reconciliations',
      `insert into audit_reconciliations (run_id, tenant_id, finalized_at, verdict, report, passes, reconciled_at, created_at)
       select r.id, ${tenant}, ${t0}, 'COMPLETE', jsonb_build_object('runId', r.id, 'verdict', 'COMPLETE', 'findings', '[]'::jsonb), 1, ${t0}, ${t0} from seed_runs r`,
    ],
    [
      'outbox',
      `insert into outbox (topic, run_id, tenant_id, dedupe_key, payload, created_at, published_at)
       select 'run.event', r.id, ${tenant}, r.id || ':' || k, jsonb_build_object('runId', r.id, 'phase', 'EXECUTING', 'step', k), ${t0}, ${t0}
         from seed_runs r cross join generate_series(1, 5) k`,
    ],
  ];
  for (const [label, statement] of statements) {
    const started = performance.now();
    const result = await sql.unsafe(statement);
    console.log(`    ${label.padEnd(22)} ${String(result.count ?? '').padStart(9)} rows  ${Math.round(performance.now() - started)} ms`);
  }
  for (const { table } of triggered) await sql.unsafe(`alter table ${table} enable trigger audit_changed`);
  await sql.unsafe(`vacuum (analyze)`);
}

export async function benchRetention(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string', default: '10000' },
      steps: { type: 'string', default: '3' },
      'output-bytes': { type: 'string', default: '800' },
      batch: { type: 'string', default: '200' },
      keep: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  const steps = Number(values.steps);
  const batch = Number(values.batch);
  const base = new URL(loadConfig().DATABASE_URL);
  const name = `governed_bench_retention_${process.pid}`;
  const admin = new URL(base);
  admin.pathname = '/postgres';
  const adminSql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
  const url = new URL(base);
  url.pathname = `/${name}`;
  await adminSql.unsafe(`create database "${name}"`);
  try {
    await runMigrations(url.toString());
    const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
    const database = connectDatabase(url.toString(), { max: 2 });
    try {
      console.log(`retention bench: ${runs} runs of ${steps} steps, ${values['output-bytes']} B per output, batches of ${batch}`);
      await seed(sql, runs, steps, Number(values['output-bytes']));
      const before = printSizes('before pruning', await sizes(sql), runs);

      const logger = createLogger('bench', 'warn');
      const activities = createRetentionActivities({
        db: database.db,
        logger,
        metrics: createWorkerMetrics(),
        // No workflow of these runs exists in any Temporal: each history delete would be NOT_FOUND.
        temporal: { workflowService: { deleteWorkflowExecution: () => Promise.reject(Object.assign(new Error('not found'), { code: 5 })) }, options: { namespace: 'bench' } },
      } as unknown as ActivityDeps);
      const started = performance.now();
      let pruned = 0;
      let records = 0;
      let batches = 0;
      let slowest = 0;
      for (;;) {
        const t = performance.now();
        const done = await activities.pruneExpiredRuns({ limit: batch });
        slowest = Math.max(slowest, performance.now() - t);
        batches += 1;
        pruned += done.runs;
        records += done.records;
        if (done.runs < batch) break;
      }
      const runsMs = performance.now() - started;
      const eventsStarted = performance.now();
      let outboxRows = 0;
      for (;;) {
        const done = await activities.pruneEventRecords({ limit: 5000 });
        outboxRows += done.outbox;
        if (done.outbox < 5000) break;
      }
      const eventsMs = performance.now() - eventsStarted;
      console.log(
        `  pruned ${pruned} runs (${records} rows, ${(records / Math.max(1, pruned)).toFixed(1)} a run) in ${batches} batches: ` +
          `${Math.round(runsMs)} ms, ${Math.round((pruned / runsMs) * 1000)} runs/s, slowest batch ${Math.round(slowest)} ms; ` +
          `${outboxRows} outbox rows in ${Math.round(eventsMs)} ms`,
      );
      await sql.unsafe(`vacuum (analyze)`);
      const afterVacuum = printSizes('after pruning and VACUUM (files keep their size; the space is reused)', await sizes(sql), runs);
      await sql.unsafe(`vacuum full`);
      const afterFull = printSizes('after VACUUM FULL', await sizes(sql), runs);
      const [tomb] = await sql<{ bytes: string }[]>`select pg_total_relation_size('run_tombstones')::text as bytes`;
      console.log(
        `  summary: ${kib(before / runs)} per run before; ${kib(Number(tomb!.bytes) / runs)} per run after (its tombstone); ` +
          `tables after VACUUM ${kib(afterVacuum / runs)}, after VACUUM FULL ${kib(afterFull / runs)} per pruned run`,
      );
    } finally {
      await sql.end();
      await database.close();
    }
  } finally {
    if (!values.keep) await adminSql.unsafe(`drop database if exists "${name}" with (force)`);
    await adminSql.end();
  }
}
