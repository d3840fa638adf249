import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { serverLimitsOf } from '../compose/api';
import { connectDatabase, type Database } from '../db/client';
import { createTenant } from '../db/tenancy';
import { loadConfig } from '../lib/config';
import { freePort } from '../lib/listen';
import { waitFor } from './helpers/wait';

/**
 * Issue 17 item 11: `npm run api` (api/main.ts, as a process of its own) answers a request whose
 * body or headers never arrive with a 408 and closes it within API_REQUEST_TIMEOUT_MS /
 * API_HEADERS_TIMEOUT_MS (Node's defaults held it for 300 s / 60 s), and holds at most
 * API_MAX_CONNECTIONS connections at once.
 */

const REQUEST_TIMEOUT_MS = 3000;
const HEADERS_TIMEOUT_MS = 2000;
const MAX_CONNECTIONS = 4;
/** Node sweeps for expired requests every second (api/server.ts); the rest is a loaded machine's slack. */
const SLACK_MS = 2500;

let api: ChildProcess;
let output = '';
let port: number;
let database: Database;
let apiKey: string;

beforeAll(async () => {
  database = connectDatabase(inject('databaseUrl'), { max: 2 });
  ({ apiKey } = await createTenant(database.db, { name: `limits-${Date.now()}` }));
  port = await freePort();
  api = spawn(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
    cwd: path.join(__dirname, '..'),
    env: {
      ...process.env,
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: inject('redisUrl'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      API_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      API_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      API_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  api.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  api.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(
    'the API to listen',
    async () => {
      if (api.exitCode !== null) throw new Error(`api exited ${api.exitCode}: ${output}`);
      // Raw, one connection each, closed after: nothing of the probe stays open to count against the cap.
      return (await rawGet('/api/v1/openapi.json').catch(() => '')).startsWith('HTTP/1.1 200');
    },
    60_000,
  );
});

afterAll(async () => {
  if (api && api.exitCode === null) {
    const exited = new Promise((r) => api.once('exit', r));
    api.kill('SIGTERM');
    const timer = setTimeout(() => api.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await database?.close();
});

interface RawConnection {
  socket: net.Socket;
  /** Everything the server sent, as text. */
  received(): string;
  /** Resolves with the milliseconds from `openedAt` when the server closed it (or it failed). */
  closed: Promise<number>;
  isClosed(): boolean;
  openedAt: number;
}

/** A TCP connection to the API that sends exactly `bytes` and then nothing more. */
async function connectRaw(bytes?: string): Promise<RawConnection> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let data = '';
  let done = false;
  const openedAt = Date.now();
  socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
  const closed = new Promise<number>((resolve) => {
    const end = () => {
      done = true;
      resolve(Date.now() - openedAt);
    };
    socket.once('close', end);
    socket.once('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  if (bytes !== undefined) socket.write(bytes);
  return { socket, received: () => data, closed, isClosed: () => done, openedAt };
}

/** A whole GET on a connection of its own, closed after the answer: the answer as text. */
async function rawGet(target: string, headers = ''): Promise<string> {
  const conn = await connectRaw(`GET ${target} HTTP/1.1\r\nHost: api\r\n${headers}Connection: close\r\n\r\n`);
  await within(conn.closed, 10_000);
  conn.socket.destroy();
  return conn.received();
}

/** Waits for `promise`, or answers null after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return Promise.race([promise, new Promise<null>((r) => setTimeout(() => r(null), ms))]);
}

describe('the defaults', () => {
  it('are 30 s for a whole request, 10 s for its headers, 1024 connections', () => {
    expect(serverLimitsOf(loadConfig({}))).toEqual({ requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, maxConnections: 1024 });
    // Headers never get longer than the whole request.
    expect(serverLimitsOf(loadConfig({ API_REQUEST_TIMEOUT_MS: '5000', API_HEADERS_TIMEOUT_MS: '20000' })).headersTimeoutMs).toBe(5000);
  });
});

describe('a request that never finishes arriving', () => {
  it('whose body stalls is answered 408 and closed within the request timeout', async () => {
    const conn = await connectRaw(
      `POST /api/v1/runs HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"plan": [`,
    );
    const closedAfter = await within(conn.closed, REQUEST_TIMEOUT_MS + SLACK_MS + 2000);
    conn.socket.destroy();
    expect(closedAfter, 'still open: the server is waiting for the rest of the body').not.toBeNull();
    expect(closedAfter!).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 200);
    expect(closedAfter!).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
    const answer = conn.received();
    expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(answer).toMatch(/\r\nX-Content-Type-Options: nosniff\r\n/i);
    expect(answer).toMatch(/\r\nConnection: close\r\n/i);
    expect(answer).toMatch(/\r\nContent-Type: application\/problem\+json; charset=utf-8\r\n/i);
    expect(JSON.parse(answer.split('\r\n\r\n')[1]!)).toMatchObject({
      code: 'REQUEST_TIMEOUT',
      status: 408,
      error: 'the request did not arrive whole within 3 s (headers within 2 s); the connection is closed',
    });
  });

  it('whose headers stall is answered 408 and closed within the headers timeout', async () => {
    const conn = await connectRaw(`GET /api/v1/runs HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer ${apiKey}\r\n`);
    const closedAfter = await within(conn.closed, HEADERS_TIMEOUT_MS + SLACK_MS + 2000);
    conn.socket.destroy();
    expect(closedAfter, 'still open: the server is waiting for the rest of the headers').not.toBeNull();
    expect(closedAfter!).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
    expect(conn.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('while a whole request on another connection is answered at once', async () => {
    const stalled = await connectRaw(`POST /api/v1/runs HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{`);
    const answer = await rawGet('/api/v1/runs', `Authorization: Bearer ${apiKey}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toMatch(/\r\nX-Content-Type-Options: nosniff\r\n/i);
    expect(answer).toMatch(/\r\nCache-Control: no-store\r\n/i);
    stalled.socket.destroy();
    await stalled.closed;
  });
});

describe('concurrent connections', () => {
  it(`are capped at API_MAX_CONNECTIONS (${MAX_CONNECTIONS}): one more is closed unanswered, and a freed slot is used again`, async () => {
    // Four connections held open, each in the middle of its headers.
    const held = [];
    for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(await connectRaw('GET /api/v1/openapi.json HTTP/1.1\r\n'));
    await new Promise((r) => setTimeout(r, 300));

    const extra = await connectRaw('GET /api/v1/openapi.json HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
    const dropped = await within(extra.closed, 1500);
    expect(dropped, 'the fifth connection was kept open').not.toBeNull();
    expect(extra.received()).toBe('');
    // The cap held while all four were still open.
    expect(held.map((c) => c.isClosed())).toEqual(held.map(() => false));

    held[0]!.socket.destroy();
    await held[0]!.closed;
    await new Promise((r) => setTimeout(r, 200));
    const next = await connectRaw('GET /api/v1/openapi.json HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
    await within(next.closed, 5000);
    expect(next.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    for (const conn of held) conn.socket.destroy();
  });
});
