import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../lib/config';
import { DEFAULTS, apiUrl, checkDeps, endpointOf, healthLines, shown } from '../../scripts/preflight.mjs';

/** A loopback port nothing listens on (taken, then given back). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("npm start's checks before it starts (scripts/preflight.mjs)", () => {
  it('reads the same defaults as the processes it starts', () => {
    const config = loadConfig({});
    expect(DEFAULTS).toEqual({
      DATABASE_URL: config.DATABASE_URL,
      REDIS_URL: config.REDIS_URL,
      API_HOST: config.API_HOST,
      API_PORT: String(config.API_PORT),
    });
  });

  it('finds where a URL connects, and hides its password', () => {
    expect(endpointOf('postgres://u:pw@db.internal:6543/x', 5432)).toEqual({ host: 'db.internal', port: 6543, label: 'db.internal:6543' });
    expect(endpointOf('redis://127.0.0.1', 6379)).toEqual({ host: '127.0.0.1', port: 6379, label: '127.0.0.1:6379' });
    expect(endpointOf('redis://[::1]:6380', 6379)).toEqual({ host: '::1', port: 6380, label: '[::1]:6380' });
    expect(endpointOf('postgres://u@h/db?host=/run/pg', 5432)).toEqual({ path: '/run/pg/.s.PGSQL.5432', label: '/run/pg' });
    expect(endpointOf('not a url', 5432)).toBeNull();
    expect(shown('postgres://u:secret@h:5432/db')).toBe('postgres://u:***@h:5432/db');
    expect(apiUrl({ API_HOST: '0.0.0.0', API_PORT: '9000' })).toBe('http://127.0.0.1:9000');
  });

  it('stops for Postgres down and goes on without Redis, naming each variable and its address', async () => {
    const [pg, redis] = [await closedPort(), await closedPort()];
    const noRedis = await checkDeps({ DATABASE_URL: DEFAULTS.DATABASE_URL.replace('5432', String(pg)), REDIS_URL: `redis://127.0.0.1:${redis}` });
    expect(noRedis.fatal).toBe(true);
    expect(noRedis.lines.join('\n')).toContain(`Postgres is not reachable at 127.0.0.1:${pg}`);
    expect(noRedis.lines.join('\n')).toContain(`Redis is not reachable at 127.0.0.1:${redis}`);

    const listening = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', () => resolve()));
    try {
      const up = (listening.address() as net.AddressInfo).port;
      const result = await checkDeps({ DATABASE_URL: `postgres://postgres@127.0.0.1:${up}/x`, REDIS_URL: `redis://127.0.0.1:${redis}` });
      expect(result.fatal).toBe(false);
      const said = result.lines.join('\n');
      expect(said).toContain(`REDIS_URL=redis://127.0.0.1:${redis}`);
      expect(said).toContain('runs are still accepted and run to the end');
      expect(said).not.toContain('DATABASE_URL');
      expect((await checkDeps({ DATABASE_URL: `postgres://postgres@127.0.0.1:${up}/x`, REDIS_URL: `redis://127.0.0.1:${up}` })).lines).toEqual([]);
    } finally {
      await new Promise((resolve) => listening.close(resolve));
    }
  });

  it("says what /healthz reports down, with the variable that points at it", () => {
    const lines = healthLines(
      { status: 'degraded', postgres: 'ok', redis: 'down: connect ECONNREFUSED 127.0.0.1:1', temporal: 'ok', audit: 'waiting for the first reconciliation pass', reactors: {} },
      { REDIS_URL: 'redis://:pw@127.0.0.1:1' },
    );
    expect(lines.join('\n')).toContain('Redis      down: connect ECONNREFUSED 127.0.0.1:1 (REDIS_URL=redis://:***@127.0.0.1:1)');
    expect(lines.join('\n')).toContain('runs still run');
  });
});
