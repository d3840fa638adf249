import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import Redis from 'ioredis';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_ALERT_SETTINGS, type AlertCandidate, type AlertSettings } from '../core/alerts';
import { saveAlertSettings } from '../db/alert-settings';
import { connectDatabase, type Database } from '../db/client';
import { alerts } from '../db/schema';
import { createTenant } from '../db/tenancy';
import { createAlerter, type Alerter } from '../events/alerts';
import { createFatigueController, type FatigueController } from '../events/fatigue';
import { createWebhookSink, verifyWebhookSignature, type WebhookPayload, type WebhookSink } from '../events/webhook';
import { createEventMetrics, type EventMetrics } from '../lib/metrics';
import { freshDatabase } from './helpers/fresh-database';

const SECRET = 'test-webhook-secret';

// A database of this file's own: alerts are unique per (event_id, rule), and other files raise real events.
let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let database: Database;
const opened: { close(): unknown }[] = [];
const prefixes: string[] = [];
let nextEventId = 1;

beforeAll(async () => {
  fresh = await freshDatabase('alerts');
  database = connectDatabase(fresh.url);
});
afterEach(async () => {
  const redis = newRedis();
  for (const prefix of prefixes.splice(0)) {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
  }
});
afterAll(async () => {
  for (const resource of opened.splice(0).reverse()) await resource.close();
  await database?.close();
  await fresh?.drop();
});

function newRedis(): Redis {
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 2 });
  opened.push({ close: () => redis.disconnect() });
  return redis;
}

/** A Redis key space of the test's own, so runs and tests never see each other's counters. */
function newPrefix(): string {
  const prefix = `governed:test-alerts:${randomUUID()}`;
  prefixes.push(prefix);
  return prefix;
}

async function newTenant(settings?: Partial<AlertSettings>): Promise<string> {
  const { tenantId } = await createTenant(database.db, { name: `alerts-${randomUUID()}` });
  if (settings) await saveAlertSettings(database.db, tenantId, { ...DEFAULT_ALERT_SETTINGS, ...settings }, 'test');
  return tenantId;
}

interface TestAlerter extends Alerter {
  metrics: EventMetrics;
  /** What the log sink (and the debug log) wrote. */
  logs: Record<string, unknown>[];
}

function newAlerter(options: { prefix: string; webhook?: WebhookSink; db?: Database; fatigueDelayMs?: number }): TestAlerter {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const redis = newRedis();
  const metrics = createEventMetrics(new Registry());
  const alerter = createAlerter({
    db: (options.db ?? database).db,
    redis,
    logger,
    metrics,
    webhook: options.webhook,
    fatigue: slowed(createFatigueController({ redis, keyPrefix: options.prefix }), options.fatigueDelayMs ?? 0),
  });
  return { raise: alerter.raise, redeliverPending: alerter.redeliverPending, metrics, logs };
}

/** A reactor that stalls between its fatigue decision and its insert (GC pause, slow network). */
function slowed(fatigue: FatigueController, delayMs: number): FatigueController {
  if (delayMs === 0) return fatigue;
  return {
    async check(input) {
      const decision = await fatigue.check(input);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return decision;
    },
  };
}

function candidate(tenantId: string | null, overrides: Partial<AlertCandidate> = {}): AlertCandidate {
  return {
    eventId: nextEventId++,
    rule: 'run.failed',
    tenantId,
    runId: randomUUID(),
    domain: 'runs',
    severity: 'HIGH',
    title: 'Run failed',
    detail: { code: 'SKILL_ERROR' },
    dedupeKey: 'run.failed:skill',
    ...overrides,
  };
}

async function counter(metric: EventMetrics['alertsSent'] | EventMetrics['alertsSuppressed'], labels: Record<string, string> = {}): Promise<number> {
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, string | number | undefined>)[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

function rowsOf(tenantId: string) {
  return database.db.select().from(alerts).where(eq(alerts.tenantId, tenantId));
}

function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

interface ReceivedCall {
  alertId: string;
  verified: boolean;
  status: number;
  body: WebhookPayload;
}

/** A webhook receiver on loopback that checks every signature and answers `statusFor(call number)`. */
async function startReceiver(statusFor: (call: number) => number = () => 200, answerAfterMs = 0) {
  const calls: ReceivedCall[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const verified = verifyWebhookSignature(SECRET, req.headers, raw);
      const status = verified ? statusFor(calls.length + 1) : 401;
      calls.push({ alertId: String(req.headers['x-governed-alert-id']), verified, status, body: JSON.parse(raw.toString()) as WebhookPayload });
      setTimeout(() => res.writeHead(status).end(status === 200 ? 'ok' : 'receiver failure'), answerAfterMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  opened.push({ close });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/alerts`;
  return { url, calls, sink: (attempts = 4) => createWebhookSink({ url, secret: SECRET, attempts, backoffMs: 10, timeoutMs: 2000 }) };
}

describe('alert fatigue', () => {
  it('sends 1 of 100 identical alerts within the dedup window and suppresses 99 as DUPLICATE', async () => {
    const tenantId = await newTenant();
    const alerter = newAlerter({ prefix: newPrefix() });

    const outcomes = [];
    for (let i = 0; i < 100; i++) outcomes.push(await alerter.raise(candidate(tenantId)));

    expect(countBy(outcomes, (o) => (o.status === 'sent' ? 'sent' : o.reason))).toEqual({ sent: 1, DUPLICATE: 99 });
    expect(outcomes[0]?.status).toBe('sent');
    const rows = await rowsOf(tenantId);
    expect(rows).toHaveLength(100);
    expect(countBy(rows, (r) => `${r.status}:${r.suppressedReason ?? ''}`)).toEqual({ 'sent:': 1, 'suppressed:DUPLICATE': 99 });
    expect(await counter(alerter.metrics.alertsSent, { domain: 'runs', severity: 'HIGH' })).toBe(1);
    expect(await counter(alerter.metrics.alertsSuppressed, { reason: 'DUPLICATE' })).toBe(99);
    expect(alerter.logs.filter((l) => l.msg === 'alert')).toHaveLength(1);
    expect(alerter.logs.filter((l) => l.msg === 'alert suppressed')).toHaveLength(99);
  });

  it('holds back the next alert of a domain in cooldown, and its repeat is then a DUPLICATE', async () => {
    const tenantId = await newTenant({ domainCooldowns: { incidents: 300 } });
    const alerter = newAlerter({ prefix: newPrefix() });

    const first = await alerter.raise(candidate(tenantId, { domain: 'incidents', dedupeKey: 'incident:a' }));
    const second = await alerter.raise(candidate(tenantId, { domain: 'incidents', dedupeKey: 'incident:b' }));
    const otherDomain = await alerter.raise(candidate(tenantId, { domain: 'runs', dedupeKey: 'run:c' }));
    const secondAgain = await alerter.raise(candidate(tenantId, { domain: 'incidents', dedupeKey: 'incident:b' }));

    expect(first.status).toBe('sent');
    expect(second).toMatchObject({ status: 'suppressed', reason: 'DOMAIN_COOLDOWN' });
    expect(otherDomain.status).toBe('sent');
    expect(secondAgain).toMatchObject({ status: 'suppressed', reason: 'DUPLICATE' });
    expect(await counter(alerter.metrics.alertsSuppressed, { reason: 'DOMAIN_COOLDOWN' })).toBe(1);
  });

  it('limits a tenant to maxAlertsPerHour distinct alerts; duplicates do not count, other tenants are not affected', async () => {
    const tenantId = await newTenant({ maxAlertsPerHour: 5 });
    const otherTenant = await newTenant({ maxAlertsPerHour: 5 });
    const alerter = newAlerter({ prefix: newPrefix() });

    const allowed = [];
    for (let i = 1; i <= 5; i++) {
      allowed.push(await alerter.raise(candidate(tenantId, { dedupeKey: `distinct:${i}` })));
      // A duplicate between them: suppressed, and it must not eat the budget.
      expect(await alerter.raise(candidate(tenantId, { dedupeKey: `distinct:${i}` }))).toMatchObject({ reason: 'DUPLICATE' });
    }
    const sixth = await alerter.raise(candidate(tenantId, { dedupeKey: 'distinct:6' }));
    const seventh = await alerter.raise(candidate(tenantId, { dedupeKey: 'distinct:7' }));
    const elsewhere = await alerter.raise(candidate(otherTenant, { dedupeKey: 'distinct:6' }));

    expect(allowed.map((o) => o.status)).toEqual(['sent', 'sent', 'sent', 'sent', 'sent']);
    expect(sixth).toMatchObject({ status: 'suppressed', reason: 'TENANT_RATE_LIMIT' });
    expect(seventh).toMatchObject({ status: 'suppressed', reason: 'TENANT_RATE_LIMIT' });
    expect(elsewhere.status).toBe('sent');
    expect(await counter(alerter.metrics.alertsSuppressed, { reason: 'TENANT_RATE_LIMIT' })).toBe(2);
  });

  it('limits at the default of 100 alerts per hour: of 101 distinct alerts at once, one is TENANT_RATE_LIMIT', async () => {
    const tenantId = await newTenant();
    const alerter = newAlerter({ prefix: newPrefix() });

    // All at once: the budget is taken atomically, so exactly one of them finds it spent.
    const outcomes = await Promise.all(Array.from({ length: 101 }, (_, i) => alerter.raise(candidate(tenantId, { dedupeKey: `distinct:${i}` }))));

    expect(countBy(outcomes, (o) => (o.status === 'sent' ? 'sent' : o.reason))).toEqual({ sent: 100, TENANT_RATE_LIMIT: 1 });
    const rows = await rowsOf(tenantId);
    expect(countBy(rows, (r) => r.suppressedReason ?? r.status)).toEqual({ sent: 100, TENANT_RATE_LIMIT: 1 });
  });

  it('starts a new budget with the next clock hour', async () => {
    let clock = Date.UTC(2030, 0, 1, 10, 59, 0);
    const prefix = newPrefix();
    const fatigue = createFatigueController({ redis: newRedis(), keyPrefix: prefix, now: () => clock });
    const settings = { ...DEFAULT_ALERT_SETTINGS, maxAlertsPerHour: 2 };
    const check = (n: number) => fatigue.check({ tenantId: 't', domain: 'runs', dedupeKey: `k${n}`, settings });

    expect([await check(1), await check(2), await check(3)]).toEqual([
      { allowed: true },
      { allowed: true },
      { allowed: false, reason: 'TENANT_RATE_LIMIT' },
    ]);
    clock += 60_000;
    expect(await check(4)).toEqual({ allowed: true });
  });

  it('gives the same decision to a second check of the same alert, consuming nothing', async () => {
    const fatigue = createFatigueController({ redis: newRedis(), keyPrefix: newPrefix() });
    const settings = { ...DEFAULT_ALERT_SETTINGS, maxAlertsPerHour: 1 };
    const check = (alertKey: string, dedupeKey: string) => fatigue.check({ tenantId: 't', domain: 'runs', dedupeKey, settings, alertKey });

    expect(await check('1:rule', 'k1')).toEqual({ allowed: true });
    // The racing reactor (or the retry after a crash) of the same alert: allowed again, not DUPLICATE.
    expect(await check('1:rule', 'k1')).toEqual({ allowed: true });
    expect(await check('2:rule', 'k1')).toEqual({ allowed: false, reason: 'DUPLICATE' });
    expect(await check('3:rule', 'k2')).toEqual({ allowed: false, reason: 'TENANT_RATE_LIMIT' });
  });

  it('suppresses every alert of a disabled tenant as DISABLED', async () => {
    const tenantId = await newTenant({ enabled: false });
    const receiver = await startReceiver();
    const alerter = newAlerter({ prefix: newPrefix(), webhook: receiver.sink() });

    const outcome = await alerter.raise(candidate(tenantId));

    expect(outcome).toMatchObject({ status: 'suppressed', reason: 'DISABLED' });
    expect(receiver.calls).toHaveLength(0);
    expect(await counter(alerter.metrics.alertsSuppressed, { reason: 'DISABLED' })).toBe(1);
    expect((await rowsOf(tenantId))[0]).toMatchObject({ status: 'suppressed', suppressedReason: 'DISABLED' });
  });

  it('keeps system alerts under the system key with the default settings', async () => {
    const prefix = newPrefix();
    const alerter = newAlerter({ prefix });
    const dedupeKey = `system:${randomUUID()}`;

    const first = await alerter.raise(candidate(null, { runId: null, domain: 'audit', dedupeKey }));
    const second = await alerter.raise(candidate(null, { runId: null, domain: 'audit', dedupeKey }));

    expect(first.status).toBe('sent');
    expect(second).toMatchObject({ status: 'suppressed', reason: 'DUPLICATE' });
    expect(await newRedis().ttl(`${prefix}:dedup:system:${dedupeKey}`)).toBeGreaterThan(DEFAULT_ALERT_SETTINGS.dedupWindowSeconds - 5);
  });
});

describe('exactly once', () => {
  it('records one row and calls the sinks once when the same event is raised twice', async () => {
    const tenantId = await newTenant();
    const receiver = await startReceiver();
    const alerter = newAlerter({ prefix: newPrefix(), webhook: receiver.sink() });
    const redelivered = candidate(tenantId);
    const raced = candidate(tenantId, { dedupeKey: 'another' });

    const [first, second] = [await alerter.raise(redelivered), await alerter.raise(redelivered)];
    const [one, two] = await Promise.all([alerter.raise(raced), alerter.raise(raced)]);

    expect(first).toEqual({ alertId: first.alertId, status: 'sent', sinks: ['log', 'webhook'] });
    expect(second).toEqual(first);
    expect(two).toEqual(one);
    expect(one.status).toBe('sent');
    expect(await rowsOf(tenantId)).toHaveLength(2);
    expect(receiver.calls.map((c) => c.alertId).sort()).toEqual([first.alertId, one.alertId].sort());
    expect(alerter.logs.filter((l) => l.msg === 'alert')).toHaveLength(2);
    expect(await counter(alerter.metrics.alertsSent)).toBe(2);
  });

  it('sends one alert per dedupe key when two reactors raise the same candidates concurrently', async () => {
    const tenantId = await newTenant();
    const receiver = await startReceiver();
    const prefix = newPrefix();
    // Two reactors: their own Redis connections and their own database pools.
    const otherDatabase = connectDatabase(fresh.url);
    opened.push({ close: () => otherDatabase.close() });
    const a = newAlerter({ prefix, webhook: receiver.sink() });
    const b = newAlerter({ prefix, webhook: receiver.sink(), db: otherDatabase });
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5'];
    const candidates = keys.flatMap((dedupeKey) => Array.from({ length: 10 }, () => candidate(tenantId, { dedupeKey })));

    const [fromA, fromB] = await Promise.all([Promise.all(candidates.map((c) => a.raise(c))), Promise.all(candidates.map((c) => b.raise(c)))]);

    // Both reactors see the same outcome for each (event, rule).
    expect(fromB).toEqual(fromA);
    const rows = await rowsOf(tenantId);
    expect(rows).toHaveLength(candidates.length);
    expect(new Set(rows.map((r) => `${r.eventId}:${r.rule}`)).size).toBe(candidates.length);
    const sent = rows.filter((r) => r.status === 'sent');
    expect(sent).toHaveLength(keys.length);
    expect(rows.filter((r) => r.status === 'suppressed').every((r) => r.suppressedReason === 'DUPLICATE')).toBe(true);
    expect(receiver.calls.map((c) => c.alertId).sort()).toEqual(sent.map((r) => r.id).sort());
    expect((await counter(a.metrics.alertsSent)) + (await counter(b.metrics.alertsSent))).toBe(keys.length);
    expect((await counter(a.metrics.alertsSuppressed)) + (await counter(b.metrics.alertsSuppressed))).toBe(candidates.length - keys.length);
  });
  it('sends the alert when the reactor that was let through records it after its racer', async () => {
    const tenantId = await newTenant();
    const receiver = await startReceiver();
    const prefix = newPrefix();
    const early = newAlerter({ prefix, webhook: receiver.sink(), fatigueDelayMs: 200 });
    const late = newAlerter({ prefix, webhook: receiver.sink() });
    const alert = candidate(tenantId);

    // `early` is decided first and stalls; `late` checks the same alert meanwhile and inserts first.
    const fromEarly = early.raise(alert);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const [a, b] = await Promise.all([fromEarly, late.raise(alert)]);

    // Had `late` been told DUPLICATE of the very alert `early` was allowed, nobody would send it.
    expect(a).toEqual(b);
    expect(a.status).toBe('sent');
    expect(receiver.calls.map((c) => c.alertId)).toEqual([a.alertId]);
  });
});

describe('webhook delivery', () => {
  it('retries a failing receiver with the same alert id until it accepts', async () => {
    const tenantId = await newTenant();
    const receiver = await startReceiver((call) => (call <= 2 ? 500 : 200));
    const alerter = newAlerter({ prefix: newPrefix(), webhook: receiver.sink() });

    const outcome = await alerter.raise(candidate(tenantId));

    expect(outcome).toMatchObject({ status: 'sent', sinks: ['log', 'webhook'] });
    expect(receiver.calls.map((c) => c.status)).toEqual([500, 500, 200]);
    expect(receiver.calls.every((c) => c.verified && c.alertId === outcome.alertId && c.body.id === outcome.alertId)).toBe(true);
    const [row] = await rowsOf(tenantId);
    expect(row).toMatchObject({ id: outcome.alertId, status: 'sent', sinks: ['log', 'webhook'] });
    expect(row?.sentAt).toBeInstanceOf(Date);
  });

  it('leaves the alert pending when the receiver keeps failing, and a later raise delivers the same alert', async () => {
    const tenantId = await newTenant();
    const prefix = newPrefix();
    const broken = await startReceiver(() => 500);
    const alert = candidate(tenantId);

    await expect(newAlerter({ prefix, webhook: broken.sink(3) }).raise(alert)).rejects.toThrow(/after 3 attempt\(s\): HTTP 500/);
    const [pending] = await rowsOf(tenantId);
    expect(pending).toMatchObject({ status: 'pending', sentAt: null });
    expect(broken.calls).toHaveLength(3);

    const working = await startReceiver();
    const retry = newAlerter({ prefix, webhook: working.sink() });
    const outcome = await retry.raise(alert);

    expect(outcome).toEqual({ alertId: pending?.id, status: 'sent', sinks: ['log', 'webhook'] });
    expect(working.calls.map((c) => c.alertId)).toEqual([pending?.id]);
    expect(broken.calls.every((c) => c.alertId === pending?.id)).toBe(true);
    expect(await rowsOf(tenantId)).toMatchObject([{ id: pending?.id, status: 'sent' }]);
    expect(await counter(retry.metrics.alertsSent)).toBe(1);
  });

  it('sweeps up an alert its event left pending, so a long sink outage does not drop it', async () => {
    const tenantId = await newTenant();
    const prefix = newPrefix();
    await expect(newAlerter({ prefix, webhook: (await startReceiver(() => 500)).sink(1) }).raise(candidate(tenantId))).rejects.toThrow(/HTTP 500/);
    const [pending] = await rowsOf(tenantId);
    const working = await startReceiver();
    const sweeper = newAlerter({ prefix, webhook: working.sink() });
    expect(await sweeper.redeliverPending(60_000)).toBe(0);
    expect(await sweeper.redeliverPending(0)).toBe(1);
    expect(working.calls.map((c) => c.alertId)).toEqual([pending?.id]);
    expect(await rowsOf(tenantId)).toMatchObject([{ id: pending?.id, status: 'sent' }]);
    expect(await sweeper.redeliverPending(0)).toBe(0);
  });

  it('delivers a pending alert once when two reactors retry it at the same time', async () => {
    const tenantId = await newTenant();
    const prefix = newPrefix();
    const alert = candidate(tenantId);
    await expect(newAlerter({ prefix, webhook: (await startReceiver(() => 500)).sink(1) }).raise(alert)).rejects.toThrow(/HTTP 500/);

    // A slow receiver keeps the first delivery in flight while the second reactor reads the row.
    const slow = await startReceiver(() => 200, 200);
    const [a, b] = await Promise.all([newAlerter({ prefix, webhook: slow.sink() }).raise(alert), newAlerter({ prefix, webhook: slow.sink() }).raise(alert)]);

    expect(a).toEqual(b);
    expect(a.status).toBe('sent');
    expect(slow.calls).toHaveLength(1);
  });
});
