import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeStreamEvent } from '../core/events';
import { connectDatabase, type Database } from '../db/client';
import { writeEvents } from '../db/outbox';
import { createRelay } from '../events/relay';
import { createLogger } from '../lib/logger';
import { createEventMetrics } from '../lib/metrics';
import { freshDatabase } from './helpers/fresh-database';

let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let database: Database;
let redis: Redis;
const stream = `governed:test:relay:${randomUUID()}`;
const group = 'readers';

beforeAll(async () => {
  fresh = await freshDatabase('relay');
  database = connectDatabase(fresh.url, { max: 3 });
  redis = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  await redis?.del(stream);
  redis?.disconnect();
  await database?.close();
  await fresh?.drop();
});

/** Reads up to `count` new entries as the group's reader and acknowledges them: outbox ids, in order. */
async function readAndAck(count: number): Promise<number[]> {
  const reply = (await (redis.xreadgroup as (...a: unknown[]) => Promise<unknown>)('GROUP', group, 'reader', 'COUNT', count, 'STREAMS', stream, '>')) as
    | [string, [string, string[]][]][]
    | null;
  const entries = reply?.[0]?.[1] ?? [];
  if (entries.length) await redis.xack(stream, group, ...entries.map(([id]) => id));
  return entries.map(([, fields]) => decodeStreamEvent(fields).id);
}

describe('the relay under a capped stream', () => {
  it('never trims what the group has not read: it holds events in the outbox until there is room', async () => {
    const runId = randomUUID();
    const tenantId = randomUUID();
    for (let i = 0; i < 12; i += 1) {
      await database.db.transaction((tx) => writeEvents(tx, { runId, tenantId }, [{ topic: 'run.paused', dedupeKey: `relay-test:${i}`, payload: { i } }]));
    }
    const relay = createRelay({
      db: database.db,
      sql: database.sql,
      redis,
      stream,
      group,
      maxLen: 5,
      batchSize: 100,
      logger: createLogger('test', 'silent'),
      metrics: createEventMetrics(new Registry()),
    });

    // Nobody reads yet (no group): five go out, the rest wait.
    expect(await relay.drain()).toBe(5);
    expect(await relay.drain()).toBe(0);
    expect(await redis.xlen(stream)).toBe(5);

    await redis.xgroup('CREATE', stream, group, '0');
    const read: number[] = [];
    for (let round = 0; round < 10 && read.length < 12; round += 1) {
      read.push(...(await readAndAck(3)));
      await relay.drain();
    }
    expect(read).toHaveLength(12);
    expect(read).toEqual([...read].sort((a, b) => a - b));
    expect(new Set(read).size).toBe(12);
    expect(await redis.xlen(stream)).toBeLessThanOrEqual(5);
  });
});
