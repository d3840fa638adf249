import os from 'node:os';
import type { Client } from '@temporalio/client';
import Redis from 'ioredis';
import type { Database } from '../db/client';
import { systemIncidents } from '../db/schema';
import { insertIncidentOnce } from '../db/incidents';
import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';
import type { EventMetrics } from '../lib/metrics';
import { createAlerter } from './alerts';
import { createHandlers } from './handlers';
import { createReactor, type DeadLetter, type HandlerRegistry } from './reactor';
import { createRelay } from './relay';
import { createWebhookSink } from './webhook';

/** What the relay and the reactor read of the configuration (the denied-run alert budget and the reactor's retention are optional: their defaults). */
export type EventsConfig = Pick<
  Config,
  | 'REDIS_URL'
  | 'EVENT_STREAM'
  | 'EVENT_STREAM_MAXLEN'
  | 'REACTOR_GROUP'
  | 'REACTOR_CONSUMER'
  | 'REACTOR_HEARTBEAT_INTERVAL_SECONDS'
  | 'REACTOR_HEARTBEAT_MISS_THRESHOLD'
  | 'REACTOR_MAX_ATTEMPTS'
  | 'REACTOR_CLAIM_IDLE_SECONDS'
  | 'ALERT_WEBHOOK_URL'
  | 'ALERT_WEBHOOK_SECRET'
> &
  Partial<Pick<Config, 'ALERT_DENIED_RUNS_PER_HOUR' | 'REACTOR_HANDLED_TTL_SECONDS' | 'EVENT_DEAD_LETTER_MAXLEN'>>;

export interface EventServicesDeps {
  database: Database;
  temporal: Client;
  config: EventsConfig;
  logger: Logger;
  metrics: EventMetrics;
  /** Handlers beside the product's (tests watch every event with a `*` handler). */
  extraHandlers?: HandlerRegistry;
  /** Tests shorten the reactor's timings. */
  reactorTiming?: { retryBaseMs?: number; blockMs?: number };
}

export interface EventServices {
  consumer: string;
  stop(): Promise<void>;
}

const PENDING_ALERT_SWEEP_MS = 60_000;
const PENDING_ALERT_AGE_MS = 5 * 60_000;

/** Redis fails fast when it is down: the relay keeps events in the outbox, the reactor waits. */
const redisOptions = { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true } as const;

/**
 * The relay (outbox → stream) and the reactor (stream → handlers → alerts), as one process runs
 * them: the worker by default, or `npm run events` on its own.
 */
export async function startEventServices(deps: EventServicesDeps): Promise<EventServices> {
  const { database, config, logger, metrics } = deps;
  const consumer = config.REACTOR_CONSUMER ?? `${os.hostname()}-${process.pid}`;
  const relayRedis = new Redis(config.REDIS_URL, redisOptions);
  const reactorRedis = new Redis(config.REDIS_URL, redisOptions);
  const alertRedis = new Redis(config.REDIS_URL, redisOptions);
  for (const client of [relayRedis, reactorRedis, alertRedis]) {
    client.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
    await client.connect().catch((err: unknown) => logger.warn({ err: String(err) }, 'redis is not reachable yet; events wait in the outbox'));
  }

  const webhook =
    config.ALERT_WEBHOOK_URL && config.ALERT_WEBHOOK_SECRET
      ? createWebhookSink({ url: config.ALERT_WEBHOOK_URL, secret: config.ALERT_WEBHOOK_SECRET })
      : undefined;
  const alerter = createAlerter({ db: database.db, redis: alertRedis, logger, metrics, webhook, deniedRunAlertsPerHour: config.ALERT_DENIED_RUNS_PER_HOUR });
  const handlers = mergeHandlers(createHandlers({ alerter }), deps.extraHandlers ?? {});

  const relay = createRelay({
    db: database.db,
    sql: database.sql,
    redis: relayRedis,
    stream: config.EVENT_STREAM,
    group: config.REACTOR_GROUP,
    maxLen: config.EVENT_STREAM_MAXLEN,
    logger,
    metrics,
  });
  const reactor = createReactor({
    redis: reactorRedis,
    stream: config.EVENT_STREAM,
    group: config.REACTOR_GROUP,
    consumer,
    handlers,
    maxAttempts: config.REACTOR_MAX_ATTEMPTS,
    claimIdleMs: config.REACTOR_CLAIM_IDLE_SECONDS * 1000,
    heartbeatIntervalMs: config.REACTOR_HEARTBEAT_INTERVAL_SECONDS * 1000,
    missThreshold: config.REACTOR_HEARTBEAT_MISS_THRESHOLD,
    handledTtlSeconds: config.REACTOR_HANDLED_TTL_SECONDS,
    deadLetterMaxLen: config.EVENT_DEAD_LETTER_MAXLEN,
    ...deps.reactorTiming,
    onDeadLetter: (letter) => recordDeadLetter(database, letter),
    onUnhealthy: async ({ consumer: silent, lastBeatAt }) => {
      logger.error({ reactor: silent, lastBeatAt }, 'a reactor stopped beating');
      await database.db
        .insert(systemIncidents)
        .values({
          dedupeKey: `reactor-unhealthy:${silent}:${lastBeatAt.getTime()}`,
          kind: 'reactor_unhealthy',
          severity: 'HIGH',
          message: `reactor ${silent} missed ${config.REACTOR_HEARTBEAT_MISS_THRESHOLD} heartbeats (last at ${lastBeatAt.toISOString()}); its pending events are taken over`,
          detail: { consumer: silent, lastBeatAt: lastBeatAt.toISOString(), reportedBy: consumer },
        })
        .onConflictDoNothing();
    },
    logger,
    metrics,
  });

  await relay.start();
  await reactor.start().catch(async (err: unknown) => {
    // Redis down at start: keep trying in the background rather than stop the process.
    logger.warn({ err: String(err) }, 'reactor could not join its group yet; retrying');
    const retry = setInterval(() => {
      reactor.start().then(() => clearInterval(retry), () => {});
    }, 2000);
    retry.unref();
  });
  // An alert whose sinks were down for longer than its event's attempts is not dropped.
  const sweep = setInterval(() => {
    alerter
      .redeliverPending(PENDING_ALERT_AGE_MS)
      .then((n) => n > 0 && logger.info({ delivered: n }, 'delivered alerts left pending'))
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'pending-alert sweep failed'));
  }, PENDING_ALERT_SWEEP_MS);
  sweep.unref();
  logger.info({ stream: config.EVENT_STREAM, group: config.REACTOR_GROUP, consumer }, 'event relay and reactor started');

  return {
    consumer,
    async stop() {
      clearInterval(sweep);
      await relay.stop();
      await reactor.stop();
      for (const client of [relayRedis, reactorRedis, alertRedis]) client.disconnect();
    },
  };
}

function mergeHandlers(a: HandlerRegistry, b: HandlerRegistry): HandlerRegistry {
  const merged: HandlerRegistry = { ...a };
  for (const [topic, handlers] of Object.entries(b) as [keyof HandlerRegistry, HandlerRegistry[keyof HandlerRegistry]][]) {
    merged[topic] = { ...merged[topic], ...handlers };
  }
  return merged;
}

/** A run's event that could not be handled becomes an incident of the run; any other, of the system. */
async function recordDeadLetter(database: Database, letter: DeadLetter): Promise<void> {
  const { event } = letter;
  const message = `event ${event?.topic ?? 'unreadable'} ${event?.id ?? letter.messageId} could not be handled after ${letter.attempts} attempt(s): ${letter.error}`;
  if (event?.runId && event.tenantId) {
    // No event for this incident: a broken handler must not feed itself.
    await insertIncidentOnce(database.db, {
      runId: event.runId,
      tenantId: event.tenantId,
      dedupeKey: `dead-letter:${event.id}`,
      kind: 'delivery',
      severity: 'HIGH',
      errorCode: 'EVENT_DEAD_LETTERED',
      message,
    });
    return;
  }
  await database.db
    .insert(systemIncidents)
    .values({ dedupeKey: `dead-letter:${event?.id ?? letter.messageId}`, kind: 'event_dead_lettered', severity: 'HIGH', message, detail: { messageId: letter.messageId } })
    .onConflictDoNothing();
}
