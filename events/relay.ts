import { and, asc, inArray, isNull, min, sql } from 'drizzle-orm';
import type Redis from 'ioredis';
import type postgres from 'postgres';
import { encodeStreamEvent, type EventTopic } from '../core/events';
import type { Db } from '../db/client';
import { outbox } from '../db/schema';
import type { Logger } from '../lib/logger';
import type { EventMetrics } from '../lib/metrics';

/** Postgres channel the outbox trigger notifies on commit (migration 0007). */
export const OUTBOX_CHANNEL = 'governed_outbox';

/** One relay publishes at a time, so the stream keeps the outbox's order (and each run's). */
export const RELAY_LOCK = 0x6f7574626f78; // "outbox"

export interface RelayOptions {
  db: Db;
  /** The raw client, for LISTEN. */
  sql: postgres.Sql;
  redis: Redis;
  stream: string;
  /** The consumer group whose progress bounds what may be trimmed. */
  group: string;
  /**
   * Cap of the stream. Only entries the group has read and acknowledged are trimmed; when unread
   * entries alone reach the cap, the relay stops publishing and events wait in the outbox.
   */
  maxLen: number;
  batchSize?: number;
  /** The fallback sweep, for a notification lost with a dropped connection. */
  sweepMs?: number;
  logger: Logger;
  metrics: EventMetrics;
}

export interface Relay {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Publishes until nothing committed is left; the number published. */
  drain(): Promise<number>;
}

/**
 * Moves committed, unretracted outbox rows to the Redis Stream, oldest first (the events of one
 * run, written by one transaction after another, keep their order). A row is marked published only
 * after Redis accepted it; a relay that dies between the two sends the row again, and the consumer
 * drops the copy by its outbox id. Redis down: rows wait and go out when it is back. The stream is
 * never trimmed past what the group still has to read.
 */
export function createRelay(options: RelayOptions): Relay {
  const { db, redis, stream, group, maxLen, logger, metrics } = options;
  const batchSize = options.batchSize ?? 500;
  const sweepMs = options.sweepMs ?? 5000;
  let running = false;
  let wake: (() => void) | null = null;
  let pending = true;
  let loop: Promise<void> | null = null;
  let unlisten: (() => Promise<void>) | null = null;

  /**
   * Trims what the group has read and acknowledged, and says how many more entries the stream may
   * take: the cap minus what is still unread or unacknowledged. Before the group exists nothing has
   * been read, so nothing is trimmed and every entry counts.
   */
  async function room(): Promise<number> {
    const groups = (await redis.call('XINFO', 'GROUPS', stream).catch((err: unknown) => {
      if (String(err).includes('no such key')) return [];
      throw err;
    })) as unknown[][];
    const info = groups.map((g) => fieldsOf(g)).find((g) => g.name === group);
    if (!info) return maxLen - Number(await redis.xlen(stream));
    const [pending, oldestPending] = (await redis.call('XPENDING', stream, group)) as [number, string | null];
    // Everything before the oldest unacknowledged entry, or up to the last one delivered, is done with.
    const keepFrom = pending > 0 && oldestPending ? oldestPending : nextId(String(info['last-delivered-id']));
    await redis.call('XTRIM', stream, 'MINID', '~', keepFrom);
    // `lag` (entries not yet delivered) is unknown to Redis after some deletions: count the stream then.
    const unread = typeof info.lag === 'number' ? info.lag : Number(await redis.xlen(stream));
    return maxLen - unread - pending;
  }

  /** One batch under the relay lock; null when another relay holds it. */
  async function publishBatch(): Promise<number | null> {
    return db.transaction(async (tx) => {
      const [lock] = await tx.execute<{ locked: boolean }>(sql`select pg_try_advisory_xact_lock(${RELAY_LOCK}) as locked`);
      if (!lock?.locked) return null;
      const space = await room();
      if (space <= 0) {
        logger.warn({ stream, maxLen }, 'the stream holds maxLen unread events; publishing waits for the reactors');
        return 0;
      }
      const rows = await tx
        .select()
        .from(outbox)
        .where(and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)))
        .orderBy(asc(outbox.id))
        .limit(Math.min(batchSize, space));
      if (rows.length === 0) return 0;
      const pipeline = redis.pipeline();
      for (const row of rows) {
        const fields = encodeStreamEvent({
          id: row.id,
          topic: row.topic as EventTopic,
          runId: row.runId,
          tenantId: row.tenantId,
          dedupeKey: row.dedupeKey,
          createdAt: row.createdAt.toISOString(),
          payload: row.payload,
        });
        pipeline.xadd(stream, '*', ...fields);
      }
      const results = (await pipeline.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed || results.length !== rows.length) throw failed?.[0] ?? new Error('redis answered part of the batch');
      await tx
        .update(outbox)
        .set({ publishedAt: sql`now()` })
        .where(inArray(outbox.id, rows.map((r) => r.id)));
      for (const row of rows) metrics.eventsRelayed.inc({ topic: row.topic });
      return rows.length;
    });
  }

  async function measureLag(): Promise<void> {
    const [row] = await db
      .select({ oldest: min(outbox.createdAt) })
      .from(outbox)
      .where(and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)));
    metrics.relayLag.set(row?.oldest ? Math.max(0, (Date.now() - new Date(row.oldest).getTime()) / 1000) : 0);
  }

  async function drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const published = await publishBatch();
      if (!published) return total;
      total += published;
      if (published < batchSize) return total;
    }
  }

  async function run(): Promise<void> {
    let backoffMs = 250;
    while (running) {
      if (!pending) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, sweepMs);
          timer.unref();
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
      pending = false;
      if (!running) break;
      try {
        await drain();
        await measureLag();
        backoffMs = 250;
      } catch (err) {
        pending = true;
        logger.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: backoffMs }, 'relay could not publish; events wait in the outbox');
        await measureLag().catch(() => {});
        await new Promise((r) => setTimeout(r, backoffMs).unref());
        backoffMs = Math.min(backoffMs * 2, 5000);
      }
    }
  }

  return {
    async start() {
      if (running) return;
      running = true;
      const listening = await options.sql.listen(OUTBOX_CHANNEL, () => {
        pending = true;
        wake?.();
      });
      unlisten = listening.unlisten;
      loop = run();
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
      await unlisten?.();
    },
    drain,
  };
}

/** XINFO answers flat [name, value, ...] lists. */
function fieldsOf(list: unknown[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (let i = 0; i + 1 < list.length; i += 2) fields[String(list[i])] = list[i + 1];
  return fields;
}

/** The id right after `id`: MINID keeps entries at or after it. */
function nextId(id: string): string {
  const [ms = '0', seq = '0'] = id.split('-');
  return `${ms}-${BigInt(seq) + 1n}`;
}
