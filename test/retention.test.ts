import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkflowNotFoundError } from '@temporalio/client';
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import Redis from 'ioredis';
import { verifyEvidence } from '../core/evidence';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRetentionActivities } from '../activities/retention';
import { DEFAULT_RETENTION, type RetentionSettings } from '../core/retention';
import { RUN_RECORD_TABLES } from '../db/retention';
import { alerts, auditFindings, auditReconciliations, controlPushDeliveries, controlPushes, incidents, outbox, runs, runTombstones } from '../db/schema';
import { createReactor } from '../events/reactor';
import { startEventServices } from '../events/service';
import { createLogger } from '../lib/logger';
import { createEventMetrics, createWorkerMetrics } from '../lib/metrics';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { pruneRetentionWorkflow } from '../workflows/retention';
import { RETENTION_SCHEDULE_ID, applyRetentionSchedule } from '../worker/retention-schedule';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan, startStack, testEventsConfig, type Stack, type TestTenant } from './helpers/stack';
import { governed } from './helpers/governed-cli';
import { waitFor } from './helpers/wait';

const HANDLED_TTL_SECONDS = 600;

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;
let exportDir: string;

beforeAll(async () => {
  database = await freshDatabase('retention');
  exportDir = mkdtempSync(path.join(os.tmpdir(), 'governed-retention-'));
  // No relay here: the load below needs outbox rows left unpublished. The Redis test starts its own.
  stack = await startStack({ databaseUrl: database.url, runExportDir: exportDir });
});
afterAll(async () => {
  await stack?.close();
  await database?.drop();
  if (exportDir) rmSync(exportDir, { recursive: true, force: true });
});

function prune(input: Parameters<typeof pruneRetentionWorkflow>[0]) {
  const workflowId = `retention-${randomUUID()}`;
  return { workflowId, result: stack.client.workflow.execute(pruneRetentionWorkflow, { taskQueue: stack.taskQueue, workflowId, args: [input] }) };
}

function auditPass() {
  return stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `audit-pass-${randomUUID()}`, args: [{}] });
}

async function setRetention(tenant: TestTenant, settings: Partial<RetentionSettings>): Promise<RetentionSettings> {
  const res = await stack.request('PUT', '/api/v1/tenant/retention', { apiKey: tenant.apiKey, body: { ...DEFAULT_RETENTION, ...settings } });
  expect(res.status).toBe(200);
  return res.body as RetentionSettings;
}

/** Moves runs back in time by `days`, as if they had been created and finished then. */
async function age(runIds: string[], days: number): Promise<void> {
  await stack.db
    .update(runs)
    .set({ createdAt: sql`now() - make_interval(days => ${days})`, finishedAt: sql`now() - make_interval(days => ${days}) + interval '1 minute'` })
    .where(inArray(runs.id, runIds));
}

/** Rows of each run-record table that belong to the runs. */
async function recordsOf(runIds: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { name, table, runId } of RUN_RECORD_TABLES) {
    const [row] = await stack.db.execute<{ n: number }>(sql`select count(*)::int as n from ${table} where ${runId} in ${sql.raw(`('${runIds.join("','")}')`)}`);
    counts[name] = row!.n;
  }
  return counts;
}

async function submitFinished(tenant: TestTenant, count: number): Promise<string[]> {
  const ids = [];
  for (let i = 0; i < count; i++) ids.push(await stack.submitRun(tenant.apiKey, { plan: simPlan(2), budgetUsd: 1 }));
  for (const id of ids) await stack.waitForPhase(id, ['COMPLETED']);
  return ids;
}

describe('retention of runs', () => {
  let exporting: TestTenant;
  let plain: TestTenant;
  let exportingOld: string[];
  let exportingYoung: string[];
  let plainOld: string[];
  let plainYoung: string[];

  beforeAll(async () => {
    exporting = await stack.createTenant();
    plain = await stack.createTenant();
    // A tenant that never set any gets the defaults.
    const read = await stack.request('GET', '/api/v1/tenant/retention', { apiKey: plain.apiKey });
    expect(read.body).toEqual(DEFAULT_RETENTION);
    expect(await setRetention(exporting, { runsDays: 30, alertsDays: 30, exportBeforePrune: true })).toMatchObject({ runsDays: 30, exportBeforePrune: true });

    const a = await submitFinished(exporting, 5);
    const b = await submitFinished(plain, 3);
    // Every run reconciled, clean, before it ages: what the audit said of it goes into its tombstone.
    await waitFor('every run finalized', async () => {
      const rows = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, [...a, ...b]));
      return rows.length === 8 && rows.every((r) => r.finalizedAt !== null);
    }, 60_000);
    await auditPass();
    exportingOld = a.slice(0, 4);
    exportingYoung = a.slice(4);
    plainOld = b.slice(0, 2);
    plainYoung = b.slice(2);
    await age(exportingOld, 31);
    await age(exportingYoung, 29);
    await age(plainOld, 181);
    await age(plainYoung, 179);
    // A push that once reached an old run: its delivery row goes with the run.
    const [push] = await stack.db
      .insert(controlPushes)
      .values({ tenantId: plain.tenantId, kind: 'policy', signal: 'policyUpdated', payload: {}, target: 'live', pushedAt: new Date(), totalRuns: 1, reachedRuns: 1 })
      .returning({ id: controlPushes.id });
    await stack.db.insert(controlPushDeliveries).values({ pushId: push!.id, runId: plainOld[0]!, outcome: 'signalled', reachedAt: new Date() });
  }, 180_000);

  it('refuses settings that would keep event records longer than the runs, with a problem', async () => {
    const res = await stack.request('PUT', '/api/v1/tenant/retention', { apiKey: plain.apiKey, body: { ...DEFAULT_RETENTION, runsDays: 2, alertsDays: 30 } });
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/may not keep records longer than runsDays/);
    const member = await stack.createKey(plain.tenantId, 'member');
    expect((await stack.request('GET', '/api/v1/tenant/retention', { apiKey: member })).status).toBe(403);
  });

  it('a batch that fails midway leaves every run whole: no tombstone, nothing exported, nothing the audit would miss', async () => {
    const before = await recordsOf(exportingOld);
    const failing = createRetentionActivities({
      ...stack.activityDeps,
      runExport: {
        ...stack.activityDeps.runExport!,
        sink: { write: () => Promise.reject(new Error('disk full')) },
      },
    });
    await expect(failing.pruneExpiredRuns({ limit: 10 })).rejects.toThrow('disk full');
    expect(await recordsOf(exportingOld)).toEqual(before);
    expect(await stack.db.select().from(runTombstones)).toEqual([]);
  });

  it('prunes the runs past their age in bounded batches, exports those asked for, tombstones each, and leaves young runs whole', { timeout: 240_000 }, async () => {
    const youngBefore = await recordsOf([...exportingYoung, ...plainYoung]);
    const oldBefore = await recordsOf([...exportingOld, ...plainOld]);
    expect(oldBefore.trace_steps).toBeGreaterThan(0);

    const { workflowId, result } = prune({ runsPageSize: 2 });
    const totals = await result;
    expect(totals).toMatchObject({ runs: 6, exported: 4, histories: 6 });
    expect(totals.records).toBe(Object.values(oldBefore).reduce((a, b) => a + b, 0));
    // Six runs two at a time: three full batches and the short one that ends the stage.
    const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
    const batches = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'pruneExpiredRuns');
    expect(batches).toHaveLength(4);

    const after = await recordsOf([...exportingOld, ...plainOld]);
    expect(Object.values(after).every((n) => n === 0)).toBe(true);
    expect(await recordsOf([...exportingYoung, ...plainYoung])).toEqual(youngBefore);

    const tombstones = await stack.db.select().from(runTombstones);
    expect(tombstones.map((t) => t.runId).sort()).toEqual([...exportingOld, ...plainOld].sort());
    for (const t of tombstones) {
      expect(t).toMatchObject({ phase: 'COMPLETED', auditVerdict: 'COMPLETE' });
      expect(t.records).toBeGreaterThan(5);
    }
    for (const runId of plainOld) expect(tombstones.find((t) => t.runId === runId)).toMatchObject({ exportLocation: null, exportSha256: null });

    for (const runId of exportingOld) {
      const tombstone = tombstones.find((t) => t.runId === runId)!;
      const file = fileURLToPath(tombstone.exportLocation!);
      expect(file).toBe(path.join(exportDir, exporting.tenantId, `${runId}.jsonl`));
      const body = readFileSync(file, 'utf8');
      expect(createHash('sha256').update(body).digest('hex')).toBe(tombstone.exportSha256);
      // The file is the run's evidence. This test aged the run by editing its row behind the
      // product's back, and the evidence says exactly that (the next test exports an untouched one).
      const verdict = verifyEvidence(body, (text) => createHash('sha256').update(text).digest('hex'));
      expect(verdict).toMatchObject({ ok: false, runId, break: { kind: 'run', because: 'CONTENT_CHANGED' } });
      const lines = body.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; kind?: string; content?: Record<string, unknown> | null });
      expect(lines[0]).toMatchObject({ type: 'evidence', runId, tenantId: exporting.tenantId });
      const kinds = new Set(lines.filter((l) => l.type === 'record').map((l) => l.kind));
      expect(kinds).toEqual(new Set(['run', 'trace', 'trace_step', 'output', 'ack', 'incident', 'evaluation', 'log', 'verdict']));
      expect(lines.filter((l) => l.type === 'record' && l.kind === 'trace_step' && l.content)).toHaveLength(2);
    }

    // Temporal's copy of the pruned runs goes too (asked above; Temporal deletes in the background,
    // which a busy dev server can take a minute or more over); the young runs' histories stay.
    for (const runId of [...exportingOld, ...plainOld]) {
      await waitFor(`history of ${runId} deleted`, async () => {
        try {
          await stack.client.workflow.getHandle(runId).describe();
          return false;
        } catch (err) {
          return err instanceof WorkflowNotFoundError;
        }
      }, 150_000);
    }
    await stack.client.workflow.getHandle(plainYoung[0]!).describe();

    const pruned = async (kind: string) => (await stack.workerMetrics.registry.getSingleMetric('governed_retention_pruned_total')!.get()).values.find((v) => v.labels.kind === kind)?.value;
    expect(await pruned('runs')).toBe(6);
    expect(await pruned('exported_runs')).toBe(4);
    // Nothing left to prune: a second pass removes nothing.
    expect(await prune({ runsPageSize: 2 }).result).toMatchObject({ runs: 0, exported: 0, records: 0 });
  });

  it('the reconciler never reports a pruned run: no finding, no incident, in the passes after pruning', async () => {
    const pruned = [...exportingOld, ...plainOld];
    await auditPass();
    await auditPass();
    expect(await stack.db.select().from(auditFindings)).toEqual([]);
    expect(await stack.db.select().from(incidents).where(inArray(incidents.runId, pruned))).toEqual([]);
    expect(await stack.db.select().from(incidents).where(eq(incidents.kind, 'audit'))).toEqual([]);
    // Asked about, a pruned run answers with its tombstone, to its tenant only.
    const [exported] = exportingOld;
    for (const path of [`/api/v1/runs/${exported}`, `/api/v1/runs/${exported}/audit`]) {
      const gone = await stack.request('GET', path, { apiKey: exporting.apiKey });
      expect(gone.status).toBe(410);
      expect(gone.body).toMatchObject({ code: 'RUN_PRUNED', runId: exported, phase: 'COMPLETED', auditVerdict: 'COMPLETE', exported: true });
      expect(gone.body.exportSha256).toMatch(/^[0-9a-f]{64}$/);
      expect((await stack.request('GET', path, { apiKey: plain.apiKey })).status).toBe(404);
    }
    expect((await stack.request('GET', `/api/v1/runs/${plainOld[0]}`, { apiKey: plain.apiKey })).body).toMatchObject({ code: 'RUN_PRUNED', exported: false, exportSha256: null });
    // The young runs are still reconciled as before.
    const young = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, [...exportingYoung, ...plainYoung]));
    expect(young.map((r) => r.verdict)).toEqual(['COMPLETE', 'COMPLETE']);
  });

  it('a tenant that asks for an export keeps its runs while no export folder is configured', async () => {
    await age(exportingYoung, 40);
    const unconfigured = createRetentionActivities({ ...stack.activityDeps, runExport: undefined });
    expect(await unconfigured.pruneExpiredRuns({ limit: 10 })).toMatchObject({ runs: 0 });
    expect((await recordsOf(exportingYoung)).runs).toBe(1);
    await age(exportingYoung, 29);
  });

  it("an untouched run's export is its evidence, whole: it verifies offline as governed evidence verify does", async () => {
    const tenant = await stack.createTenant();
    await setRetention(tenant, { runsDays: 1, outboxHours: 24, controlPushesHours: 24, alertsDays: 1, exportBeforePrune: true });
    const [runId] = await submitFinished(tenant, 1);
    await waitFor('the run finalized by the audit', async () => {
      const [row] = await stack.db.select().from(auditReconciliations).where(eq(auditReconciliations.runId, runId!));
      return row?.finalizedAt != null;
    }, 60_000);
    await auditPass();
    // Aged by the pass's clock, two days on, instead of by editing the run.
    const pass = createRetentionActivities(stack.activityDeps);
    const twoDaysOn = new Date(Date.now() + 2 * 86_400_000).toISOString();
    let pruned = false;
    for (let batch = 0; batch < 20 && !pruned; batch += 1) {
      await pass.pruneExpiredRuns({ limit: 50, asOf: twoDaysOn });
      pruned = (await stack.db.select().from(runTombstones).where(eq(runTombstones.runId, runId!))).length === 1;
    }
    const [tombstone] = await stack.db.select().from(runTombstones).where(eq(runTombstones.runId, runId!));
    const body = readFileSync(fileURLToPath(tombstone!.exportLocation!), 'utf8');
    expect(createHash('sha256').update(body).digest('hex')).toBe(tombstone!.exportSha256);
    const verdict = verifyEvidence(body, (text) => createHash('sha256').update(text).digest('hex'));
    expect(verdict).toMatchObject({ ok: true, runId, anchored: true });
    const kinds = new Set(body.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; kind?: string }).filter((l) => l.type === 'record').map((l) => l.kind));
    expect(kinds).toEqual(new Set(['run', 'trace', 'trace_step', 'output', 'ack', 'incident', 'evaluation', 'log', 'verdict']));
    // And the CLI's offline check agrees.
    const checked = await governed(['evidence', 'verify', fileURLToPath(tombstone!.exportLocation!)]);
    expect(checked.code, checked.stderr).toBe(0);
  }, 120_000);
});

describe('retention of event records under load', () => {
  it('keeps the outbox, control pushes and alerts to their tenant\'s hours and days, in bounded batches, never an unfinished one', async () => {
    const tenant = await stack.createTenant();
    await setRetention(tenant, { runsDays: 30, outboxHours: 24, controlPushesHours: 48, alertsDays: 3 });
    const other = await stack.createTenant();
    const N = 3000;
    // Spread evenly over the last 10 days: row i is i * 10 days / N old, plus a minute (off the boundary).
    const load = async (tenantId: string) => {
      await stack.db.execute(sql`
        insert into ${outbox} (topic, run_id, tenant_id, dedupe_key, payload, created_at, published_at)
        select 'run.completed', gen_random_uuid(), ${tenantId}::uuid, ${tenantId} || ':load:' || i, '{}'::jsonb,
               now() - make_interval(secs => (i * 864000.0 / ${N}) + 60), now()
          from generate_series(0, ${N - 1}) i`);
      await stack.db.execute(sql`
        insert into ${controlPushes} (tenant_id, kind, signal, payload, target, pushed_at, total_runs, reached_runs)
        select ${tenantId}::uuid, 'policy', 'policyUpdated', '{}'::jsonb, 'live', now() - make_interval(secs => (i * 864000.0 / ${N / 10}) + 60), 0, 0
          from generate_series(0, ${N / 10 - 1}) i`);
      await stack.db.execute(sql`
        insert into ${alerts} (event_id, rule, tenant_id, domain, severity, title, detail, status, created_at)
        select 1000000 + i, 'load:' || ${tenantId}, ${tenantId}::uuid, 'run', 'HIGH', 'load', '{}'::jsonb, 'sent', now() - make_interval(secs => (i * 864000.0 / ${N}) + 60)
          from generate_series(0, ${N - 1}) i`);
    };
    await load(tenant.tenantId);
    await load(other.tenantId);
    // Old but unfinished: never pruned.
    const [unpublished] = await stack.db
      .insert(outbox)
      .values({ topic: 'run.completed', tenantId: tenant.tenantId, dedupeKey: `${tenant.tenantId}:unpublished`, payload: {}, createdAt: new Date(Date.now() - 9 * 86_400_000), retractedAt: null })
      .returning({ id: outbox.id });
    const [pendingPush] = await stack.db
      .insert(controlPushes)
      .values({ tenantId: tenant.tenantId, kind: 'policy', signal: 'policyUpdated', payload: {}, target: 'live', createdAt: new Date(Date.now() - 9 * 86_400_000), nextAttemptAt: new Date(Date.now() + 86_400_000) })
      .returning({ id: controlPushes.id });
    const [pendingAlert] = await stack.db
      .insert(alerts)
      .values({ eventId: 999_999, rule: 'load:pending', tenantId: tenant.tenantId, domain: 'run', severity: 'HIGH', title: 'pending', detail: {}, status: 'pending', createdAt: new Date(Date.now() - 9 * 86_400_000) })
      .returning({ id: alerts.id });

    const { workflowId, result } = prune({ eventsPageSize: 500 });
    const totals = await result;

    const count = async (table: typeof outbox | typeof controlPushes | typeof alerts, tenantId: string, at: string, hours: number) => {
      const [row] = await stack.db.execute<{ kept: number; old: number }>(sql`
        select count(*)::int as kept, count(*) filter (where ${sql.raw(at)} < now() - make_interval(hours => ${hours}))::int as old
          from ${table} where tenant_id = ${tenantId}::uuid`);
      return row!;
    };
    // The tenant's settings: 24 h of outbox (a tenth of 10 days), 48 h of pushes, 3 days of alerts.
    const keptOutbox = await count(outbox, tenant.tenantId, 'created_at', 24);
    expect(keptOutbox.kept).toBeGreaterThanOrEqual(N / 10 - 2);
    expect(keptOutbox.kept).toBeLessThanOrEqual(N / 10 + 2);
    expect(keptOutbox.old).toBe(1); // the unpublished row, nine days old
    const keptPushes = await count(controlPushes, tenant.tenantId, 'coalesce(pushed_at, created_at)', 48);
    expect(keptPushes.kept).toBeLessThanOrEqual(N / 10 / 5 + 2 + 1);
    expect(keptPushes.old).toBe(1); // the push still being delivered
    const keptAlerts = await count(alerts, tenant.tenantId, 'created_at', 72);
    expect(keptAlerts.kept).toBeLessThanOrEqual((N * 3) / 10 + 2 + 1);
    expect(keptAlerts.old).toBe(1); // the alert still pending
    for (const [table, id] of [[outbox, unpublished!.id], [controlPushes, pendingPush!.id], [alerts, pendingAlert!.id]] as const) {
      expect(await stack.db.select({ id: table.id }).from(table).where(eq(table.id, id as never))).toHaveLength(1);
    }
    // The other tenant, on the defaults: 72 h of outbox, 168 h of pushes, 30 days of alerts (all of them).
    expect((await count(outbox, other.tenantId, 'created_at', 72)).old).toBe(0);
    expect((await count(outbox, other.tenantId, 'created_at', 0)).kept).toBeLessThanOrEqual((N * 3) / 10 + 2);
    expect((await count(controlPushes, other.tenantId, 'pushed_at', 168)).old).toBe(0);
    expect((await count(alerts, other.tenantId, 'created_at', 0)).kept).toBe(N);

    // Bounded batches: no batch removed more than its page of any kind.
    const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
    const batches = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'pruneEventRecords');
    expect(batches.length).toBeGreaterThanOrEqual(Math.ceil(totals.outbox / 1000));
    expect(totals.outbox).toBeGreaterThan(N);
  });

  it("the reactor's handled keys expire and the stream stays trimmed to what is unread", async () => {
    const config = testEventsConfig('retention', { REACTOR_HANDLED_TTL_SECONDS: HANDLED_TTL_SECONDS });
    const services = await startEventServices({
      database: stack.database,
      temporal: stack.client,
      config,
      logger: createLogger('test', 'silent'),
      metrics: createEventMetrics(createWorkerMetrics().registry),
    });
    try {
      const tenant = await stack.createTenant();
      // A burst of failed-run events, each handled once (an alert, or its suppression) and remembered.
      const burst = 400;
      await stack.db.execute(sql`
        insert into ${outbox} (topic, run_id, tenant_id, dedupe_key, payload)
        select 'run.failed', gen_random_uuid(), ${tenant.tenantId}::uuid, ${tenant.tenantId} || ':burst:' || i, '{"code":"STEP_FAILED","reason":"load"}'::jsonb
          from generate_series(1, ${burst}) i`);
      // Everything in the outbox (the earlier tests' runs' events too) published and handled.
      await waitFor('outbox relayed', async () => {
        const [row] = await stack.db.select({ n: sql<number>`count(*)::int` }).from(outbox).where(and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)));
        return row!.n === 0;
      }, 60_000);
      await waitFor('stream read', async () => {
        const [pending] = (await stack.redis.call('XPENDING', config.EVENT_STREAM, config.REACTOR_GROUP)) as [number];
        const groups = (await stack.redis.call('XINFO', 'GROUPS', config.EVENT_STREAM)) as unknown[][];
        const lag = groups[0]![groups[0]!.indexOf('lag') + 1];
        return pending === 0 && lag === 0;
      }, 60_000);
      const handled = await stack.redis.keys(`${config.EVENT_STREAM}:handled:*`);
      expect(handled.length).toBeGreaterThanOrEqual(burst);
      for (const key of handled) {
        const ttl = await stack.redis.ttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(HANDLED_TTL_SECONDS);
      }
      // Every event went through the stream, and the relay trimmed what the group had read and
      // acknowledged as it went (whole nodes of ~100 entries: MINID ~): the stream holds a node or two.
      const info = (await stack.redis.call('XINFO', 'STREAM', config.EVENT_STREAM)) as unknown[];
      expect(Number(info[info.indexOf('entries-added') + 1])).toBeGreaterThanOrEqual(burst);
      await stack.db.insert(outbox).values({ topic: 'run.completed', tenantId: tenant.tenantId, dedupeKey: `${tenant.tenantId}:after`, payload: {} });
      await waitFor('stream trimmed', async () => Number(await stack.redis.xlen(config.EVENT_STREAM)) <= 200);
    } finally {
      await services.stop();
      const keys = await stack.redis.keys(`${config.EVENT_STREAM}*`);
      if (keys.length) await stack.redis.del(...keys);
    }
  });

  it('the dead-letter stream is capped', async () => {
    const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 2 });
    const stream = `governed:test:${randomUUID()}`;
    const metrics = createEventMetrics(createWorkerMetrics().registry);
    const reactor = createReactor({
      redis,
      stream,
      group: 'g',
      consumer: 'c',
      handlers: { '*': { broken: () => Promise.reject(new Error('always')) } },
      maxAttempts: 1,
      deadLetterMaxLen: 100,
      blockMs: 50,
      onDeadLetter: async () => {},
      onUnhealthy: async () => {},
      logger: createLogger('test', 'silent'),
      metrics,
    });
    try {
      await reactor.start();
      const total = 600;
      for (let i = 0; i < total; i++) {
        await redis.xadd(stream, '*', 'id', String(i + 1), 'topic', 'run.completed', 'runId', '', 'tenantId', '', 'dedupeKey', `k${i}`, 'createdAt', new Date().toISOString(), 'payload', '{}');
      }
      await waitFor('dead letters written', async () => {
        const info = (await redis.call('XINFO', 'STREAM', `${stream}:dead`)) as unknown[];
        const added = Number(info[info.indexOf('entries-added') + 1]);
        return added === total;
      });
      const kept = Number(await redis.xlen(`${stream}:dead`));
      expect(kept).toBeGreaterThanOrEqual(100);
      expect(kept).toBeLessThan(total / 2);
    } finally {
      await reactor.stop();
      await redis.del(stream, `${stream}:dead`, `${stream}:reactors`);
      redis.disconnect();
    }
  });
});

describe('the retention pass is scheduled, and set from the CLI', () => {
  it('keeps a Schedule, created and updated idempotently, whose trigger runs a pass', async () => {
    const options = { taskQueue: stack.taskQueue, intervalSeconds: 3600 };
    try {
      expect(await applyRetentionSchedule(stack.client, options)).toBe('created');
      expect(await applyRetentionSchedule(stack.client, { ...options, intervalSeconds: 7200 })).toBe('updated');
      const handle = stack.client.schedule.getHandle(RETENTION_SCHEDULE_ID);
      const described = await handle.describe();
      expect(described.spec.intervals?.[0]?.every).toBe(7_200_000);
      expect(described.policies.overlap).toBe('SKIP');
      expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'pruneRetentionWorkflow', taskQueue: stack.taskQueue });
      await handle.trigger();
      const pass = await waitFor('a pass started by the Schedule', async () => (await handle.describe()).info.recentActions[0]?.action.workflow);
      const ended = await stack.client.workflow.getHandle(pass.workflowId, undefined, { firstExecutionRunId: pass.firstExecutionRunId }).result();
      expect(ended).toMatchObject({ runs: 0 });
    } finally {
      await stack.client.schedule.getHandle(RETENTION_SCHEDULE_ID).delete().catch(() => {});
    }
  });

  // Four CLI processes, each started with tsx when no build is fresh: slow on a busy machine.
  it('governed retention get and set: a partial change keeps the rest; a bad one exits non-zero with the reason', { timeout: 180_000 }, async () => {
    const tenant = await stack.createTenant();
    const env = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey };
    const shown = await governed(['retention', 'get'], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/runs and their records\s+180 days/);
    const set = await governed(['--json', 'retention', 'set', '--runs-days', '365', '--export'], env);
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ ...DEFAULT_RETENTION, runsDays: 365, exportBeforePrune: true });
    const read = await stack.request('GET', '/api/v1/tenant/retention', { apiKey: tenant.apiKey });
    expect(read.body).toEqual({ ...DEFAULT_RETENTION, runsDays: 365, exportBeforePrune: true });
    const tooShort = await governed(['retention', 'set', '--runs-days', '1'], env);
    expect(tooShort.code).toBe(1);
    expect(tooShort.stderr).toMatch(/may not keep records longer than runsDays/);
    const nothing = await governed(['retention', 'set'], env);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to set/);
    expect((await stack.request('GET', '/api/v1/tenant/retention', { apiKey: tenant.apiKey })).body.runsDays).toBe(365);
  });
});
