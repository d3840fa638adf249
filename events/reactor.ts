import type Redis from 'ioredis';
import { decodeStreamEvent, MalformedStreamEvent, type EventTopic, type StreamEvent } from '../core/events';
import type { Logger } from '../lib/logger';
import type { EventMetrics } from '../lib/metrics';

export type EventHandler = (event: StreamEvent) => Promise<void>;

/**
 * Handlers by topic; `*` sees every event. Each has a name: a redelivered event skips the handlers
 * that already succeeded for it. Delivery is at least once (a crash between a handler and its
 * record runs it again), so handlers are idempotent on the event id, as the alerter is.
 */
export type HandlerRegistry = Partial<Record<EventTopic | '*', Record<string, EventHandler>>>;

export interface DeadLetter {
  event: StreamEvent | null;
  messageId: string;
  fields: string[];
  attempts: number;
  error: string;
}

export interface ReactorOptions {
  /** A connection of the reactor's own: it blocks on XREADGROUP. */
  redis: Redis;
  stream: string;
  group: string;
  consumer: string;
  handlers: HandlerRegistry;
  /** Attempts before an event goes to the dead-letter stream (`<stream>:dead`). */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt. */
  retryBaseMs?: number;
  /** A message left pending this long by another consumer is taken over (it is presumed dead). */
  claimIdleMs?: number;
  blockMs?: number;
  heartbeatIntervalMs?: number;
  missThreshold?: number;
  /** How long a handler's success is remembered, to drop a second copy of its event. */
  handledTtlSeconds?: number;
  /** Approximate cap of the dead-letter stream: the oldest letters go (each is also an incident in Postgres). */
  deadLetterMaxLen?: number;
  onDeadLetter(letter: DeadLetter): Promise<void>;
  /** Another reactor stopped beating; called once per silence. */
  onUnhealthy(reactor: { consumer: string; lastBeatAt: Date }): Promise<void>;
  logger: Logger;
  metrics: EventMetrics;
}

export interface Reactor {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Where each reactor's last heartbeat is kept: consumer → epoch ms. */
export function heartbeatKey(stream: string): string {
  return `${stream}:reactors`;
}

export interface ReactorHealth {
  consumer: string;
  lastBeatAgeSeconds: number;
  healthy: boolean;
}

/** Every registered reactor and whether it has beaten within `missThreshold` intervals. */
export async function reactorHealth(redis: Redis, stream: string, heartbeatIntervalMs: number, missThreshold: number): Promise<ReactorHealth[]> {
  const beats = await redis.hgetall(heartbeatKey(stream));
  const now = Date.now();
  return Object.entries(beats).map(([consumer, at]) => {
    const age = now - Number(at);
    return { consumer, lastBeatAgeSeconds: Math.round(age / 1000), healthy: age <= heartbeatIntervalMs * missThreshold };
  });
}

type StreamEntry = [id: string, fields: string[] | null];

/**
 * The event reactor (seed FIX-003, §11.1, §13.2): a consumer in a Redis Stream consumer group. A
 * message is acknowledged only once all its handlers succeeded; a failing one stays pending and is
 * retried with backoff, then dead-lettered; messages a dead consumer left pending are claimed by a
 * live one. A redelivered copy (the relay may send one twice) skips handlers that already succeeded.
 */
export function createReactor(options: ReactorOptions): Reactor {
  const { redis, stream, group, consumer, logger, metrics } = options;
  const maxAttempts = options.maxAttempts ?? 5;
  const retryBaseMs = options.retryBaseMs ?? 500;
  const claimIdleMs = options.claimIdleMs ?? 30_000;
  const blockMs = options.blockMs ?? 1000;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 30_000;
  const missThreshold = options.missThreshold ?? 3;
  // Copies arrive within minutes (a relay restart, a claim); a day covers them with room to spare.
  const handledTtl = options.handledTtlSeconds ?? 86_400;
  const deadLetterStream = `${stream}:dead`;
  const deadLetterMaxLen = options.deadLetterMaxLen ?? 10_000;
  let running = false;
  let loop: Promise<void> | null = null;
  let beat: NodeJS.Timeout | null = null;
  /** Each unhealthy reactor is reported once per last beat. */
  const reported = new Set<string>();

  async function ensureGroup(): Promise<void> {
    try {
      await redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String(err).includes('BUSYGROUP')) throw err;
    }
  }

  function handlersFor(topic: EventTopic): [string, EventHandler][] {
    return [...Object.entries(options.handlers[topic] ?? {}), ...Object.entries(options.handlers['*'] ?? {})];
  }

  const handledKey = (eventId: number, handler: string) => `${stream}:handled:${eventId}:${handler}`;

  /** Runs the handlers that have not yet succeeded for this event; throws the first failure. */
  async function handle(event: StreamEvent): Promise<void> {
    for (const [name, handler] of handlersFor(event.topic)) {
      if (await redis.exists(handledKey(event.id, name))) continue;
      await handler(event);
      await redis.set(handledKey(event.id, name), '1', 'EX', handledTtl);
    }
  }

  async function process(entry: StreamEntry, attempt: number): Promise<void> {
    const [messageId, fields] = entry;
    let event: StreamEvent | null = null;
    try {
      if (!fields) throw new MalformedStreamEvent(`message ${messageId} was trimmed from the stream before it was handled`);
      event = decodeStreamEvent(fields);
      metrics.eventsReceived.inc({ topic: event.topic });
      await handle(event);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      const topic = event?.topic ?? 'malformed';
      metrics.eventsFailed.inc({ topic });
      // A message that cannot be read will not read better later.
      if (attempt >= maxAttempts || err instanceof MalformedStreamEvent) {
        await deadLetter({ event, messageId, fields: fields ?? [], attempts: attempt, error });
        return;
      }
      logger.warn({ messageId, topic, attempt, error }, 'event handler failed; the event stays pending and is retried');
      return;
    }
    const createdAt = Date.parse(event.createdAt);
    if (!Number.isNaN(createdAt)) metrics.eventHandleLatency.observe(Math.max(0, Date.now() - createdAt) / 1000);
    try {
      await redis.call('XACK', stream, group, messageId);
      metrics.eventsHandled.inc({ topic: event.topic });
    } catch (err) {
      // Handled, not acknowledged: the redelivery finds every handler done and only acknowledges.
      logger.warn({ messageId, err: err instanceof Error ? err.message : String(err) }, 'could not acknowledge a handled event');
    }
  }

  async function deadLetter(letter: DeadLetter): Promise<void> {
    await redis.call('XADD', deadLetterStream, 'MAXLEN', '~', String(deadLetterMaxLen), '*', ...letter.fields, 'error', letter.error, 'attempts', String(letter.attempts), 'messageId', letter.messageId);
    await options.onDeadLetter(letter);
    await redis.call('XACK', stream, group, letter.messageId);
    metrics.eventsDeadLettered.inc({ topic: letter.event?.topic ?? 'malformed' });
    logger.error({ messageId: letter.messageId, topic: letter.event?.topic, attempts: letter.attempts, error: letter.error }, 'event dead-lettered');
  }

  async function readNew(): Promise<StreamEntry[]> {
    // The typed command: a generic `call` flattens the reply's stream map differently.
    const reply = (await (redis.xreadgroup as (...args: unknown[]) => Promise<unknown>)(
      'GROUP', group, consumer, 'COUNT', 100, 'BLOCK', blockMs, 'STREAMS', stream, '>',
    )) as [string, StreamEntry[]][] | null;
    return reply?.[0]?.[1] ?? [];
  }

  /**
   * Pending messages due for another attempt: this consumer's after their backoff, another's after
   * `claimIdleMs` (its consumer is presumed dead). XCLAIM moves them here and counts the delivery.
   */
  async function claimDue(): Promise<{ entry: StreamEntry; attempt: number }[]> {
    const pending = (await redis.call('XPENDING', stream, group, 'IDLE', String(Math.min(retryBaseMs, claimIdleMs)), '-', '+', '100')) as [
      string,
      string,
      number,
      number,
    ][];
    const due = pending.filter(([, owner, idle, deliveries]) =>
      owner === consumer ? idle >= retryBaseMs * 2 ** (deliveries - 1) : idle >= claimIdleMs,
    );
    const claimed: { entry: StreamEntry; attempt: number }[] = [];
    for (const [id, owner, idle, deliveries] of due) {
      const minIdle = owner === consumer ? Math.min(idle, retryBaseMs) : claimIdleMs;
      const entries = (await redis.call('XCLAIM', stream, group, consumer, String(minIdle), id)) as StreamEntry[];
      // Another reactor may have claimed it first; XCLAIM then returns nothing.
      for (const entry of entries) claimed.push({ entry, attempt: deliveries + 1 });
    }
    return claimed;
  }

  /**
   * Beats, and looks at the others: a reactor silent for `missThreshold` intervals is reported once;
   * at a later beat, when nothing of it is left pending (claimed by the living), it is forgotten.
   */
  async function heartbeat(): Promise<void> {
    await redis.hset(heartbeatKey(stream), consumer, String(Date.now()));
    metrics.reactorHeartbeats.inc();
    for (const other of await reactorHealth(redis, stream, heartbeatIntervalMs, missThreshold)) {
      if (other.healthy || other.consumer === consumer) continue;
      const lastBeat = await redis.hget(heartbeatKey(stream), other.consumer);
      const key = `${other.consumer}:${lastBeat}`;
      if (!reported.has(key)) {
        reported.add(key);
        metrics.reactorHeartbeatsMissed.inc();
        await options.onUnhealthy({ consumer: other.consumer, lastBeatAt: new Date(Number(lastBeat)) });
        continue;
      }
      const [count] = (await redis.call('XPENDING', stream, group, '-', '+', '1', other.consumer)) as unknown[];
      if (count === undefined) {
        await redis.hdel(heartbeatKey(stream), other.consumer);
        await redis.call('XGROUP', 'DELCONSUMER', stream, group, other.consumer);
      }
    }
  }

  async function run(): Promise<void> {
    let backoffMs = 250;
    while (running) {
      try {
        for (const { entry, attempt } of await claimDue()) await process(entry, attempt);
        for (const entry of await readNew()) await process(entry, 1);
        backoffMs = 250;
      } catch (err) {
        if (!running) break;
        logger.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: backoffMs }, 'reactor could not read the stream');
        await new Promise((r) => setTimeout(r, backoffMs));
        backoffMs = Math.min(backoffMs * 2, 5000);
      }
    }
  }

  return {
    async start() {
      if (running) return;
      await ensureGroup();
      running = true;
      await heartbeat();
      beat = setInterval(() => {
        heartbeat().catch((err: unknown) => logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'reactor heartbeat failed'));
      }, heartbeatIntervalMs);
      beat.unref();
      loop = run();
    },
    async stop() {
      running = false;
      if (beat) clearInterval(beat);
      await loop;
      // A reactor that stops on purpose is not a reactor that died.
      await redis.hdel(heartbeatKey(stream), consumer).catch(() => {});
    },
  };
}
