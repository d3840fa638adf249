import net from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectDatabase } from '../db/client';
import { isDatabaseUnavailable } from '../db/unavailable';
import { startTcpProxy } from '../testing/tcp-proxy';

/** Accepts every connection and ends it at once, as a proxy in front of a dead Postgres does. */
let closer: net.Server;
let closerPort: number;
const accepted = new Set<net.Socket>();

beforeAll(async () => {
  closer = net.createServer((socket) => {
    accepted.add(socket);
    socket.on('error', () => {});
    socket.end();
  });
  await new Promise<void>((resolve) => closer.listen(0, '127.0.0.1', resolve));
  closerPort = (closer.address() as net.AddressInfo).port;
});
afterAll(async () => {
  for (const socket of accepted) socket.destroy();
  await new Promise((resolve) => closer.close(resolve));
});

function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still waiting after ${ms}ms`)), ms))]);
}

describe('a connection the server ends without answering', () => {
  it('fails the query with CONNECTION_CLOSED at once instead of leaving it waiting', async () => {
    const database = connectDatabase(`postgres://postgres@127.0.0.1:${closerPort}/x`, { max: 1 });
    try {
      const failure = await within(2000, database.db.execute(sql`select 1`).then(() => null, (err: unknown) => err));
      expect((failure as { cause?: { code?: string } }).cause?.code).toBe('CONNECTION_CLOSED');
      expect(isDatabaseUnavailable(failure)).toBe(true);
    } finally {
      await database.close();
    }
  });

  it('moves on to the next host when several are given', async () => {
    const real = new URL(inject('databaseUrl'));
    const url = `postgres://${real.username}@127.0.0.1:${closerPort},${real.hostname}:${real.port || 5432}${real.pathname}`;
    const database = connectDatabase(url, { max: 1 });
    try {
      expect(await within(5000, database.db.execute(sql`select 1 as one`))).toEqual([{ one: 1 }]);
    } finally {
      await database.close();
    }
  });
});

describe('a pool through an outage, with other callers polling meanwhile', () => {
  it('fails each query within seconds and succeeds within seconds once the database is back', { timeout: 60_000 }, async () => {
    const real = new URL(inject('databaseUrl'));
    const proxy = await startTcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
    const through = new URL(real);
    through.hostname = '127.0.0.1';
    through.port = String(proxy.port);
    const database = connectDatabase(through.toString(), { max: 5 });
    let polling = true;
    // Other users of the same pool (a dispatcher, a relay) keep it failing while the outage lasts.
    const poller = (async () => {
      while (polling) {
        await Promise.all([database.sql`select 1`.catch(() => 0), database.sql.begin((tx) => tx`select 2`).catch(() => 0)]);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    try {
      await database.sql`select 1`;
      proxy.cut('reset');
      const waits: number[] = [];
      for (const pause of [0, 200, 500, 1000, 2000, 4000, 500, 1000]) {
        await new Promise((r) => setTimeout(r, pause));
        const started = Date.now();
        await expect(within(10_000, database.sql.begin((tx) => tx`select 1`))).rejects.toMatchObject({ code: 'ECONNRESET' });
        waits.push(Date.now() - started);
      }
      // postgres.js's own reconnect backoff grows to 20 s over a pool's failures; queries queued
      // behind it waited 13 s and more to fail.
      expect(Math.max(...waits)).toBeLessThan(2_500);
      proxy.restore();
      const started = Date.now();
      await within(10_000, database.sql.begin((tx) => tx`select 1`));
      expect(Date.now() - started).toBeLessThan(2_500);
    } finally {
      polling = false;
      await poller;
      proxy.restore();
      await database.close();
      await proxy.close();
    }
  });
});

