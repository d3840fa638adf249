import type { AddressInfo } from 'node:net';
import net from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import Redis from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp, type ApiDeps } from '../api/app';
import { RETRY_AFTER_SECONDS } from '../api/errors';
import { HEALTH_CHECK_TIMEOUT_MS } from '../api/health';
import { connectDatabase, type Database } from '../db/client';
import { rawRequest, type RawResponse } from './helpers/raw-http';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy';

/**
 * The API answers an outage of Postgres or Temporal with a prompt 503 and Retry-After, never a 500
 * after the libraries' own 20-40 s of retries. Each API here reaches its dependencies through a
 * proxy the test cuts, or a listener that accepts and never answers; the test's own stack (and its
 * worker) keep the real connections.
 */

const CONNECT_TIMEOUT_SECONDS = 1;
const TEMPORAL_DEADLINE_MS = 1500;
/** What "promptly" means here: the longer bound, plus room for a loaded CI machine. */
const PROMPT_MS = Math.max(CONNECT_TIMEOUT_SECONDS * 1000, TEMPORAL_DEADLINE_MS) + 1500;

let stack: Stack;
let tenant: TestTenant;
let pgProxy: TcpProxy;
let temporalProxy: TcpProxy;
/** Accepts connections and never says a word, like a host behind a dropped route. */
let silent: net.Server;
const held = new Set<net.Socket>();
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
  const pgUrl = new URL(inject('databaseUrl'));
  pgProxy = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
  const [temporalHost, temporalPort] = inject('temporalAddress').split(':');
  temporalProxy = await startTcpProxy({ host: temporalHost!, port: Number(temporalPort) });
  silent = net.createServer((socket) => {
    held.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});
afterEach(() => {
  pgProxy.restore();
  temporalProxy.restore();
});
afterAll(async () => {
  // A /healthz check leaves its gRPC call retrying until its deadline; closing the connection
  // under a pending retry makes the SDK throw from a timer ("Channel has been shut down").
  await new Promise((resolve) => setTimeout(resolve, HEALTH_CHECK_TIMEOUT_MS + 500));
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => silent?.close(resolve));
  await pgProxy?.close();
  await temporalProxy?.close();
  await stack?.close();
});

function port(of: { address(): unknown }): number {
  return (of.address() as AddressInfo).port;
}

function databaseAt(portNumber: number): Database {
  const url = new URL(inject('databaseUrl'));
  url.hostname = '127.0.0.1';
  url.port = String(portNumber);
  const database = connectDatabase(url.toString(), { max: 2, connectTimeoutSeconds: CONNECT_TIMEOUT_SECONDS });
  cleanups.push(() => database.close());
  return database;
}

async function temporalAt(portNumber: number): Promise<Client> {
  // Lazy: connecting eagerly would itself wait out the outage.
  const connection = await Connection.lazy({ address: `127.0.0.1:${portNumber}` });
  cleanups.push(() => connection.close());
  return new Client({ connection });
}

/** An API like the stack's, with some of its dependencies swapped. */
async function apiWith(swap: Partial<ApiDeps>): Promise<string> {
  const app = createApp({ ...stack.apiDeps, temporalDeadlineMs: TEMPORAL_DEADLINE_MS, ...swap });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${port(server)}`;
}

async function timed(send: () => Promise<RawResponse>): Promise<RawResponse & { ms: number }> {
  const started = Date.now();
  const res = await send();
  return { ...res, ms: Date.now() - started };
}

function expectPrompt503(res: RawResponse & { ms: number }, dependency: RegExp): void {
  expect({ status: res.status, retryAfter: res.headers['retry-after'], error: res.json?.error }).toEqual({
    status: 503,
    retryAfter: String(RETRY_AFTER_SECONDS),
    error: expect.stringMatching(dependency),
  });
  expect(res.ms).toBeLessThan(PROMPT_MS);
}

const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });

describe('Postgres unavailable', () => {
  it.each(['reset', 'close'] as const)('answers 503 with Retry-After at once when connections are cut (%s), and recovers', async (mode) => {
    const api = await apiWith({ db: databaseAt(pgProxy.port).db });
    expect((await rawRequest(api, { method: 'GET', path: '/api/v1/runs', headers: auth() })).status).toBe(200);
    pgProxy.cut(mode);
    expectPrompt503(await timed(() => rawRequest(api, { method: 'GET', path: '/api/v1/runs', headers: auth() })), /^the database is unavailable/);
    pgProxy.restore();
    expect((await rawRequest(api, { method: 'GET', path: '/api/v1/runs', headers: auth() })).status).toBe(200);
  });

  it('answers 503 within the connect timeout when Postgres accepts and never answers', async () => {
    const api = await apiWith({ db: databaseAt(port(silent)).db });
    expectPrompt503(await timed(() => rawRequest(api, { method: 'GET', path: '/api/v1/runs', headers: auth() })), /^the database is unavailable/);
  });
});

describe('Temporal unavailable', () => {
  let runId: string;
  beforeAll(async () => {
    // A run that stays EXECUTING while the test sends it controls through the cut connection.
    runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1, { latencyMs: 60_000 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
  });
  afterAll(async () => {
    if (runId) await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey, body: { reason: 'test over' } });
  });

  const pause = (api: string) =>
    timed(() => rawRequest(api, { method: 'POST', path: `/api/v1/runs/${runId}/pause`, headers: { ...auth(), 'content-type': 'application/json' }, body: '{}' }));

  it('answers 503 with Retry-After within the request deadline when connections are cut, not after the SDK retries', async () => {
    const api = await apiWith({ temporal: await temporalAt(temporalProxy.port) });
    temporalProxy.cut();
    expectPrompt503(await pause(api), /^Temporal is unavailable/);
  });

  it('answers 503 within the request deadline when Temporal accepts and never answers', async () => {
    const api = await apiWith({ temporal: await temporalAt(port(silent)) });
    const res = await pause(api);
    expectPrompt503(res, /^Temporal is unavailable/);
    expect(res.ms).toBeGreaterThanOrEqual(TEMPORAL_DEADLINE_MS - 100);
  });
});

describe('/healthz', () => {
  /** A second, as the probes that read it allow; the margin is for a loaded CI machine. */
  const ANSWERS_WITHIN_MS = 1000 + 500;

  async function health(api: string) {
    const res = await timed(() => rawRequest(api, { method: 'GET', path: '/healthz' }));
    expect(res.ms).toBeLessThan(ANSWERS_WITHIN_MS);
    return res;
  }

  it('answers within a second when every dependency accepts and never answers, saying each timed out', async () => {
    const redis = new Redis(`redis://127.0.0.1:${port(silent)}`, { maxRetriesPerRequest: 1 });
    redis.on('error', () => {});
    cleanups.push(async () => redis.disconnect());
    const api = await apiWith({ db: databaseAt(port(silent)).db, temporal: await temporalAt(port(silent)), redis });
    const res = await health(api);
    expect(res.ms).toBeGreaterThanOrEqual(HEALTH_CHECK_TIMEOUT_MS - 50);
    expect({ httpStatus: res.status, ...res.json }).toMatchObject({
      httpStatus: 503,
      status: 'degraded',
      postgres: 'down: timed out',
      redis: 'down: timed out',
      temporal: 'down: timed out',
      audit: 'unknown: the audit store could not be read',
    });
  });

  it('answers within a second when connections are cut, saying what is down', async () => {
    const api = await apiWith({ db: databaseAt(pgProxy.port).db, temporal: await temporalAt(temporalProxy.port) });
    expect((await health(api)).json).toMatchObject({ postgres: 'ok', temporal: 'ok' });
    pgProxy.cut();
    temporalProxy.cut();
    const res = await health(api);
    expect({ httpStatus: res.status, ...res.json }).toMatchObject({ httpStatus: 503, postgres: expect.stringMatching(/^down: /), temporal: expect.stringMatching(/^down: /) });
  });
});
