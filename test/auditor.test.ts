import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { and, eq } from 'drizzle-orm';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { apiSettingsOf } from '../compose/api';
import { auditTaskQueue } from '../compose/worker';
import { RUN_EXPECTATIONS } from '../core/audit';
import { actionKey } from '../core/audit-reconciliation';
import { connectDatabase, type Database } from '../db/client';
import { auditExpectations, auditFindings, auditReconciliations, incidents } from '../db/schema';
import { createTenant } from '../db/tenancy';
import { loadConfig } from '../lib/config';
import { freePort } from '../lib/listen';
import { createLogger } from '../lib/logger';
import { createApiMetrics } from '../lib/metrics';
import { startWorkerProcess, type WorkerProcess } from '../testing/worker-process';
import { AUDIT_SCHEDULE_ID, STALE_REPORT_WORKFLOW_ID, applyAuditSchedules, runningCron } from '../worker/audit-schedules';
import { staleRunReportWorkflow } from '../workflows/audit';
import { startAuditorProcess, type AuditorProcess } from './helpers/auditor-process';
import { freshDatabase } from './helpers/fresh-database';
import { startOwnDevServer, type OwnDevServer } from './helpers/own-dev-server';
import { waitFor } from './helpers/wait';

/**
 * Issue 17, item 6: the audit loop outlives the run workers it watches. Its workflows run on a
 * task queue of their own, served by the auditor process alone; with every run worker SIGKILLed
 * for good, the auditor still reconciles a run its worker abandoned, reports it STALE with exactly
 * what it never wrote, and the stale-run report lists it. No worker runs in this test's process:
 * the run worker and the auditor are the production entry points, as processes.
 *
 * A Temporal dev server of this file's own: the Schedule and the cron workflow have fixed ids in
 * their namespace, which test/audit.test.ts creates and deletes on the shared server.
 */

const root = path.join(__dirname, '..');
const DEADLINE_SECONDS = 8;
const RECONCILE_INTERVAL_SECONDS = 2;
const ALL = RUN_EXPECTATIONS.map(actionKey).sort();

let devServer: OwnDevServer;
let address: string;
let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let database: Database;
let connection: Connection;
let client: Client;
let redis: Redis;
let api: Server;
let apiBase: string;
let apiKey: string;
const runQueue = `runs-${randomUUID()}`;
const auditQueue = `audit-${randomUUID()}`;
const started: { kill(): Promise<void> }[] = [];

/** The environment of every process of this deployment. */
function deploymentEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: fresh.url,
    TEMPORAL_ADDRESS: address,
    TEMPORAL_TASK_QUEUE: runQueue,
    TEMPORAL_AUDIT_TASK_QUEUE: auditQueue,
    WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
    AUDIT_RECONCILE_INTERVAL: String(RECONCILE_INTERVAL_SECONDS),
    STALE_REPORT_CRON: '* * * * *',
    // Its relay and reactor would publish this database's events to the real default stream.
    EVENTS_IN_WORKER: 'false',
    LOG_LEVEL: 'info',
    ...extra,
  };
}

/** `npm run audit:schedules` as an operator runs it. */
async function applySchedulesCommand(extra: Record<string, string> = {}): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'worker/audit-schedules.ts'], {
      cwd: root,
      env: { ...process.env, ...deploymentEnv(extra) },
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

async function submit(body: unknown): Promise<string> {
  const res = await fetch(`${apiBase}/api/v1/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { runId: string }).runId;
}

async function reconciliation(runId: string) {
  const [row] = await database.db.select().from(auditReconciliations).where(eq(auditReconciliations.runId, runId));
  return row;
}

function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

beforeAll(async () => {
  devServer = await startOwnDevServer();
  address = devServer.address;
  fresh = await freshDatabase('auditor');
  database = connectDatabase(fresh.url, { max: 5 });
  connection = await Connection.connect({ address });
  client = new Client({ connection });
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 2 });
  // The API, which is no worker: it submits runs to the runs' queue with a short audit deadline.
  const settings = apiSettingsOf(
    {
      ...loadConfig(),
      TEMPORAL_TASK_QUEUE: runQueue,
      API_BODY_LIMIT: '64kb',
      API_TEMPORAL_DEADLINE_MS: 30_000,
      OBSERVABILITY_MODE: 'DEGRADED',
      RUN_TIMEOUT_SECONDS: DEADLINE_SECONDS,
      RUN_DEADLINE_GRACE_SECONDS: 0,
      AUDIT_RECONCILE_INTERVAL: RECONCILE_INTERVAL_SECONDS,
      TEMPORAL_CALL_TIMEOUT_MS: 5000,
    },
    { watchReactors: false },
  );
  const app = createApp({ db: database.db, temporal: client, redis, metrics: createApiMetrics(), logger: createLogger('test', 'silent'), ...settings });
  api = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  apiBase = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  apiKey = (await createTenant(database.db, { name: `auditor-${randomUUID().slice(0, 8)}`, role: 'admin' })).apiKey;
});

afterAll(async () => {
  for (const child of started.splice(0)) await child.kill();
  if (api) await new Promise((r) => api.close(r));
  redis?.disconnect();
  await connection?.close();
  await database?.close();
  devServer?.stop();
  await fresh?.drop();
});

describe('the audit loop on a task queue of its own', () => {
  it('refuses the runs\' queue as the audit queue', async () => {
    expect(auditTaskQueue({ TEMPORAL_TASK_QUEUE: 'governed-runs', TEMPORAL_AUDIT_TASK_QUEUE: 'governed-audit' })).toBe('governed-audit');
    expect(() => auditTaskQueue({ TEMPORAL_TASK_QUEUE: 'q', TEMPORAL_AUDIT_TASK_QUEUE: 'q' })).toThrow(/TEMPORAL_AUDIT_TASK_QUEUE must not be the runs' task queue/);
  });

  it('moves a deployment whose Schedule and cron ran on the runs\' queue, stopping the pass stranded there, idempotently', { timeout: 120_000 }, async () => {
    // As an older version left it: the audit loop on the runs' queue, where (every run worker
    // gone) a started pass waits for ever and the Schedule skips every later one.
    const old = { taskQueue: runQueue, reconcileIntervalSeconds: RECONCILE_INTERVAL_SECONDS, staleReportCron: '* * * * *' };
    expect(await applyAuditSchedules(client, old)).toEqual({ schedule: 'created', staleReport: 'started' });
    const schedule = client.schedule.getHandle(AUDIT_SCHEDULE_ID);
    const stranded = await waitFor('a pass to start on the runs\' queue', async () => (await schedule.describe()).info.runningActions[0]?.workflow, 30_000);
    expect((await client.workflow.getHandle(stranded.workflowId).describe()).taskQueue).toBe(runQueue);

    const moved = await applySchedulesCommand();
    expect(moved.code, moved.output).toBe(0);
    expect(moved.output).toContain(`schedule ${AUDIT_SCHEDULE_ID} moved`);
    expect(moved.output).toContain(`cron workflow ${STALE_REPORT_WORKFLOW_ID} moved`);
    expect(moved.output).toContain(`task queue ${auditQueue}`);
    expect((await schedule.describe()).action).toMatchObject({ type: 'startWorkflow', workflowType: 'reconcileAuditWorkflow', taskQueue: auditQueue });
    expect(await runningCron(client)).toEqual({ cronSchedule: '* * * * *', taskQueue: auditQueue });
    const stopped = await client.workflow.getHandle(stranded.workflowId).describe();
    expect(stopped.status.name).toBe('TERMINATED');

    const again = await applySchedulesCommand();
    expect(again.code, again.output).toBe(0);
    expect(again.output).toContain(`schedule ${AUDIT_SCHEDULE_ID} updated`);
    expect(again.output).toContain(`cron workflow ${STALE_REPORT_WORKFLOW_ID} unchanged`);

    const refused = await applySchedulesCommand({ TEMPORAL_AUDIT_TASK_QUEUE: runQueue });
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('TEMPORAL_AUDIT_TASK_QUEUE must not be the runs\' task queue');
    expect((await schedule.describe()).action).toMatchObject({ taskQueue: auditQueue });
  });

  it('with every run worker SIGKILLed, the auditor alone reports the abandoned run STALE with the exact missing set, and the stale-run report lists it', { timeout: 240_000 }, async () => {
    // The schedules as `npm start` leaves them (the test above moved them; applying is idempotent).
    expect((await applySchedulesCommand()).code).toBe(0);
    const auditorMetricsPort = await freePort();
    const [worker, auditor]: [WorkerProcess, AuditorProcess] = await Promise.all([
      startWorkerProcess(deploymentEnv({ WORKER_METRICS_PORT: '0', WORKER_SDK_METRICS_PORT: '0' }), { startTimeoutMs: 90_000 }),
      startAuditorProcess(deploymentEnv({ AUDITOR_METRICS_PORT: String(auditorMetricsPort) })),
    ]);
    started.push(worker, auditor);

    // A run in its long step: the trace has started, nothing after it is written.
    const runId = await submit({ plan: [{ skill: 'sim.llm', input: { prompt: 'a long step', latencyMs: 120_000 } }] });
    await waitFor('the run to execute its step', async () => {
      const { raw } = await client.workflow.getHandle(runId).describe();
      return raw.pendingActivities?.some((a) => a.activityType?.name === 'runStep');
    }, 60_000);
    // Every run worker, for good.
    await worker.kill();

    const [deadline] = await database.db
      .select({ deadlineAt: auditExpectations.deadlineAt })
      .from(auditExpectations)
      .where(and(eq(auditExpectations.runId, runId), eq(auditExpectations.action, 'finalize_run')));
    // Nobody triggers a pass: the Schedule starts them on the audit queue, and only the auditor polls it.
    const row = await waitFor('the auditor to report the run stale', async () => {
      const r = await reconciliation(runId);
      return r?.verdict === 'STALE' ? r : undefined;
    }, 90_000);
    expect(row.reconciledAt!.getTime()).toBeGreaterThanOrEqual(deadline!.deadlineAt!.getTime());
    expect(row.report!.missing.map((m) => [actionKey(m), m.because]).sort()).toEqual(ALL.filter((k) => k !== 'logs/start_trace').map((k) => [k, 'NO_ACK']));
    expect(row.report!.stale!.reason).toMatch(/stuck in phase EXECUTING since/);
    const findings = await database.db.select().from(auditFindings).where(eq(auditFindings.runId, runId));
    expect(findings.map((f) => [f.check, f.severity]).sort()).toEqual([
      ['missing', 'HIGH'],
      ['stale', 'HIGH'],
    ]);
    const raised = await database.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'audit')));
    expect(raised.map((i) => i.errorCode).sort()).toEqual(['AUDIT_MISSING', 'AUDIT_STALE']);

    // The passes ran on the audit queue: nothing else could have run them.
    const passes: string[] = [];
    for await (const pass of client.workflow.list({ query: `WorkflowType = "reconcileAuditWorkflow" AND ExecutionStatus = "Completed"` })) passes.push(pass.taskQueue);
    expect(passes.length).toBeGreaterThan(0);
    expect(new Set(passes)).toEqual(new Set([auditQueue]));

    // The stale-run report, written on the audit queue (the cron's own run is up to a minute away).
    const report = await client.workflow.execute(staleRunReportWorkflow, { taskQueue: auditQueue, workflowId: `stale-report-${randomUUID()}` });
    expect(report.staleRuns).toBe(1);
    const listed = await fetch(`${apiBase}/api/v1/reports/stale-runs`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as { id: number; runs: { runId: string; phase: string; temporalStatus: string; overdueSeconds: number }[] };
    // This report, or the cron's if its minute came meanwhile.
    expect(body.id).toBeGreaterThanOrEqual(report.reportId);
    expect(body.runs.map((r) => r.runId)).toEqual([runId]);
    expect(body.runs[0]).toMatchObject({ phase: 'EXECUTING', temporalStatus: 'RUNNING' });
    expect(body.runs[0]!.overdueSeconds).toBeGreaterThanOrEqual(0);

    // What the alert rules read: the auditor's stale runs, and the API's age of the last pass.
    const auditorMetrics = await (await fetch(`http://127.0.0.1:${auditorMetricsPort}/metrics`)).text();
    expect(sample(auditorMetrics, 'governed_stale_runs')).toBe(1);
    expect(sample(auditorMetrics, 'governed_run_never_finalized_total')).toBeGreaterThanOrEqual(1);
    expect(sample(auditorMetrics, 'governed_audit_runs_reconciled_total{verdict="STALE"}')).toBeGreaterThanOrEqual(1);
    const apiMetrics = await (await fetch(`${apiBase}/metrics`)).text();
    expect(sample(apiMetrics, 'governed_audit_last_pass_age_seconds')).toBeLessThan(3 * RECONCILE_INTERVAL_SECONDS + 5);

    await client.workflow.getHandle(runId).terminate('test cleanup');
    await auditor.stop();
    expect(auditor.output()).toContain('"auditor stopped"');
  });
});
