import { randomUUID } from 'node:crypto';
import { and, asc, eq, isNull } from 'drizzle-orm';
import Redis from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeStreamEvent, type EventTopic, type StreamEvent } from '../core/events';
import { alerts, domainAcks, incidents, outbox, systemIncidents } from '../db/schema';
import { createReactor, heartbeatKey } from '../events/reactor';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { freshDatabase } from './helpers/fresh-database';
import { waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy';
import { waitFor } from './helpers/wait';
import { createLogger } from '../lib/logger';

/** Every delivery a handler saw, by outbox id. */
const seen: StreamEvent[] = [];
/** Topics whose test handler fails on purpose, and how often it has. */
const failing = new Map<EventTopic, number>();

let database: Awaited<ReturnType<typeof freshDatabase>>;
let proxy: TcpProxy;
let stack: Stack;
let tenant: TestTenant;

beforeAll(async () => {
  database = await freshDatabase('events');
  const redisUrl = new URL(inject('redisUrl'));
  proxy = await startTcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
  const proxied = new URL(redisUrl);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  stack = await startStack({
    databaseUrl: database.url,
    events: {
      REDIS_URL: proxied.toString(),
      REACTOR_HEARTBEAT_INTERVAL_SECONDS: 0.5,
      REACTOR_MAX_ATTEMPTS: 3,
      REACTOR_CLAIM_IDLE_SECONDS: 1,
      reactorTiming: { retryBaseMs: 100, blockMs: 200 },
      extraHandlers: {
        '*': {
          record: async (event) => {
            const failures = failing.get(event.topic);
            if (failures !== undefined) {
              failing.set(event.topic, failures + 1);
              throw new Error(`test handler refuses ${event.topic}`);
            }
            seen.push(event);
          },
        },
      },
    },
  });
  tenant = await stack.createTenant();
});
afterEach(() => proxy.restore());
afterAll(async () => {
  await stack?.close();
  await proxy?.close();
  await database?.drop();
});

const deliveriesOf = (runId: string) => seen.filter((e) => e.runId === runId);

async function outboxOf(runId: string) {
  return stack.db.select().from(outbox).where(eq(outbox.runId, runId)).orderBy(asc(outbox.id));
}

/** Waits until every committed event of the run reached the test handler. */
async function handledAll(runId: string, timeoutMs = 20_000) {
  return waitFor(`every event of run ${runId} to be handled`, async () => {
    const rows = (await outboxOf(runId)).filter((r) => !r.retractedAt);
    const handled = new Set(deliveriesOf(runId).map((e) => e.id));
    return rows.length > 0 && rows.every((r) => handled.has(r.id)) ? rows : undefined;
  }, timeoutMs);
}

/** Every event the relay has put on the stream, copies included. */
async function relayedTotal(): Promise<number> {
  const metric = await stack.eventMetrics.eventsRelayed.get();
  return metric.values.reduce((sum, v) => sum + v.value, 0);
}

function expectOncePerEvent(runId: string) {
  const ids = deliveriesOf(runId).map((e) => e.id);
  expect(ids.length).toBe(new Set(ids).size);
}

describe('the outbox relay and the reactor', () => {
  it('carries the seed §11.1 matrix, each event produced by the system itself, handled exactly once', { timeout: 60_000 }, async () => {
    const ok = await stack.submitRun(tenant.apiKey, { plan: simPlan(2) });
    const broken = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'x', fail: true } }] });
    // Crosses 80% of its budget on its second step.
    const spender = await stack.submitRun(tenant.apiKey, { plan: simPlan(3, { completionTokens: 10_000 }), budgetUsd: 0.14 });
    await Promise.all([ok, broken, spender].map((id) => stack.waitForPhase(id, 'terminal')));

    // The reconciler's events: a rogue ack (drift) and a lost one (missing) on the completed run.
    await stack.db.insert(domainAcks).values({ runId: ok, domain: 'logs', action: 'rogue', status: 'OK' });
    await stack.db.delete(domainAcks).where(and(eq(domainAcks.runId, ok), eq(domainAcks.action, 'create_log_record')));
    await stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `pass-${randomUUID()}`, args: [{}] });

    // An incident resolved by a person.
    const [incident] = await stack.db.select().from(incidents).where(and(eq(incidents.runId, broken), eq(incidents.dedupeKey, 'outcome')));
    const resolved = await stack.request('POST', `/api/v1/incidents/${incident!.id}/resolve`, { apiKey: tenant.apiKey, body: { note: 'flaky fixture' } });
    expect(resolved.status).toBe(200);

    for (const runId of [ok, broken, spender]) await handledAll(runId);
    const topics = new Set(seen.filter((e) => [ok, broken, spender].includes(e.runId!)).map((e) => e.topic));
    for (const topic of [
      'run.started',
      'run.completed',
      'run.failed',
      'incident.created',
      'incident.resolved',
      'policy.evaluated',
      'threshold.exceeded',
      'trace.started',
      'trace.completed',
      'audit.reconciliation.missing',
      'audit.reconciliation.drift',
    ] satisfies EventTopic[]) {
      expect(topics, topic).toContain(topic);
    }
    for (const runId of [ok, broken, spender]) {
      expectOncePerEvent(runId);
      // The stream keeps each run's order: outbox order is commit order within a run.
      const order = deliveriesOf(runId).map((e) => e.id);
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
    expect(await stack.db.$count(outbox, and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)))).toBe(0);

    // A failed run pages once: run.failed is sent, its outcome incident is the same alert.
    const failure = await stack.db.select().from(alerts).where(eq(alerts.runId, broken)).orderBy(asc(alerts.createdAt));
    expect(failure.filter((a) => a.status === 'sent').map((a) => a.rule)).toEqual(['run.failed']);
    expect(failure.filter((a) => a.status === 'suppressed').map((a) => [a.rule, a.suppressedReason])).toEqual([['incident.created', 'DUPLICATE']]);
  });

  it('loses nothing while Redis is cut: events wait in the outbox and arrive once, in order', { timeout: 60_000 }, async () => {
    proxy.cut();
    const runIds = await Promise.all([1, 2, 3].map(() => stack.submitRun(tenant.apiKey, { plan: simPlan(2) })));
    await Promise.all(runIds.map((id) => stack.waitForPhase(id, ['COMPLETED'])));
    await new Promise((r) => setTimeout(r, 2000));
    for (const runId of runIds) {
      const waiting = (await outboxOf(runId)).filter((r) => !r.publishedAt);
      expect(waiting.length).toBeGreaterThan(0);
      expect(deliveriesOf(runId)).toEqual([]);
    }
    proxy.restore();
    for (const runId of runIds) {
      await handledAll(runId, 30_000);
      expectOncePerEvent(runId);
      const order = deliveriesOf(runId).map((e) => e.id);
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
    expect(await stack.db.$count(outbox, and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)))).toBe(0);
  });

  it('drops the second copy of an event a relay sent twice (it died before marking it published)', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    await stack.waitForPhase(runId, ['COMPLETED']);
    const rows = await handledAll(runId);
    // What a relay killed between XADD and its commit leaves behind: sent, yet unpublished.
    const relayedBefore = await relayedTotal();
    await stack.db.update(outbox).set({ publishedAt: null }).where(eq(outbox.runId, runId));
    await waitFor('the rows to be sent again', async () => (await outboxOf(runId)).every((r) => r.publishedAt !== null));
    expect((await relayedTotal()) - relayedBefore).toBe(rows.length);
    await new Promise((r) => setTimeout(r, 1000));
    expectOncePerEvent(runId);
  });

  it('retries a failing handler with backoff, then dead-letters the event with an incident on its run', { timeout: 30_000 }, async () => {
    failing.set('run.paused', 0);
    try {
      const patient = await stack.createTenant({ policy: { pauseSlaSeconds: 60, pauseWarningSeconds: 0 } });
      const runId = await stack.submitRun(patient.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'slow', latencyMs: 1000 } }, ...simPlan(1)] });
      await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: patient.apiKey });
      await waitForPause(stack.db, runId);
      const incident = await waitFor('the dead-letter incident', async () => {
        const [row] = await stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'delivery')));
        return row;
      });
      expect(incident).toMatchObject({ severity: 'HIGH', errorCode: 'EVENT_DEAD_LETTERED' });
      expect(incident.message).toMatch(/run\.paused .* could not be handled after 3 attempt\(s\): test handler refuses run\.paused/);
      expect(failing.get('run.paused')).toBe(3);
      const redis = new Redis(inject('redisUrl'));
      const dead = await redis.xrange(`${stack.eventsConfig!.EVENT_STREAM}:dead`, '-', '+');
      redis.disconnect();
      expect(dead.some(([, fields]) => decodeStreamEvent(fields).runId === runId)).toBe(true);
      await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: patient.apiKey });
      await stack.waitForPhase(runId, ['COMPLETED']);
    } finally {
      failing.delete('run.paused');
    }
  });

  it('has a live reactor take over what a dead one left pending, once each', { timeout: 30_000 }, async () => {
    const config = stack.eventsConfig!;
    const doomedRedis = new Redis(inject('redisUrl'));
    const handledByDoomed: number[] = [];
    // A reactor whose handler never returns: it reads messages, then its process dies.
    const doomed = createReactor({
      redis: doomedRedis,
      stream: config.EVENT_STREAM,
      group: config.REACTOR_GROUP,
      consumer: `doomed-${randomUUID().slice(0, 6)}`,
      handlers: { '*': { hang: (event) => { handledByDoomed.push(event.id); return new Promise(() => {}); } } },
      heartbeatIntervalMs: 500,
      onDeadLetter: async () => {},
      onUnhealthy: async () => {},
      logger: createLogger('test', 'silent'),
      metrics: stack.eventMetrics,
    });
    await doomed.start();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    await stack.waitForPhase(runId, ['COMPLETED']);
    await waitFor('the doomed reactor to take a message', async () => handledByDoomed.length > 0);
    doomedRedis.disconnect();
    await handledAll(runId, 20_000);
    expectOncePerEvent(runId);
    // The live reactor noticed the silence and opened a system incident.
    const reported = await waitFor('the system incident', async () => {
      const rows = await stack.db.select().from(systemIncidents).where(eq(systemIncidents.kind, 'reactor_unhealthy'));
      return rows.find((r) => String(r.detail.consumer).startsWith('doomed-'));
    }, 10_000);
    expect(reported.severity).toBe('HIGH');
    const metrics = await stack.workerMetrics.registry.metrics();
    expect(metrics).toMatch(/governed_reactor_heartbeat_missed_total [1-9]/);
  });

  it('pauses a run past its warning threshold when the policy says pauseOnThreshold, and lets it be resumed', { timeout: 40_000 }, async () => {
    const careful = await stack.createTenant({ policy: { pauseOnThreshold: true, warningThresholdPct: 50, pauseWarningSeconds: 0 } });
    const runId = await stack.submitRun(careful.apiKey, {
      plan: [...simPlan(1, { completionTokens: 10_000 }), ...simPlan(4, { completionTokens: 10, latencyMs: 300 })],
      budgetUsd: 0.1,
    });
    const paused = await waitForPause(stack.db, runId, 20_000);
    expect(paused.pauseReason).toBe('BUDGET_WARNING');
    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: careful.apiKey });
    expect(resumed.status).toBe(200);
    await stack.waitForPhase(runId, ['COMPLETED']);
    const sent = await stack.db.select().from(alerts).where(and(eq(alerts.runId, runId), eq(alerts.rule, 'threshold.exceeded')));
    expect(sent.map((a) => a.status)).toEqual(['sent']);
  });
});

describe('reactor health', () => {
  it('turns a reactor that stopped beating unhealthy in /healthz', async () => {
    const redis = new Redis(inject('redisUrl'));
    const key = heartbeatKey(stack.eventsConfig!.EVENT_STREAM);
    await redis.hset(key, 'ghost', String(Date.now() - 60_000));
    try {
      const health = await stack.request('GET', '/healthz');
      expect(health.status).toBe(503);
      expect(health.body.reactors).toMatchObject({ ghost: expect.stringMatching(/^unhealthy/) });
    } finally {
      await redis.hdel(key, 'ghost');
      redis.disconnect();
    }
  });
});
