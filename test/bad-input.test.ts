import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { deflateSync, gzipSync } from 'node:zlib';
import { count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { auditExpectations, incidents, runs } from '../db/schema';
import { rawRequest } from './helpers/raw-http';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

let stack: Stack;
let tenant: TestTenant;
let other: TestTenant;

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
  other = await stack.createTenant();
});
afterAll(() => stack?.close());

async function writtenRows(tenantId: string) {
  const [runRows] = await stack.db.select({ n: count() }).from(runs).where(eq(runs.tenantId, tenantId));
  const [expectationRows] = await stack.db
    .select({ n: count() })
    .from(auditExpectations)
    .innerJoin(runs, eq(runs.id, auditExpectations.runId))
    .where(eq(runs.tenantId, tenantId));
  return { runs: runRows!.n, expectations: expectationRows!.n };
}

describe('bad input gets a 4xx with a reason and writes nothing', () => {
  const cases: { name: string; status: number; reason: RegExp; send: () => Promise<{ status: number; body: any }> }[] = [
    {
      name: 'malformed JSON',
      status: 400,
      reason: /malformed JSON/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody: '{"plan": [' }),
    },
    {
      name: 'an empty plan',
      status: 400,
      reason: /plan must have at least one step/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: [] } }),
    },
    {
      name: 'a missing plan',
      status: 400,
      reason: /plan/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { budgetUsd: 1 } }),
    },
    {
      name: 'an unknown skill',
      status: 400,
      reason: /unknown skill 'shell\.exec'/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: [{ skill: 'shell.exec', input: {} }] } }),
    },
    {
      name: 'a step input its skill rejects',
      status: 400,
      reason: /plan\.0\.input\.prompt/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: [{ skill: 'sim.llm', input: { prompt: 42 } }] } }),
    },
    {
      name: 'a negative budget',
      status: 400,
      reason: /budgetUsd must be greater than 0/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1), budgetUsd: -1 } }),
    },
    {
      name: 'an unexpected field',
      status: 400,
      reason: /budget/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1), budget: 3 } }),
    },
    {
      name: 'a body that is not an object',
      status: 400,
      reason: /JSON object/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody: '[1,2]' }),
    },
    {
      name: 'an oversized body',
      status: 413,
      reason: /larger than the \d+ byte limit/,
      send: () =>
        stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: [{ skill: 'sim.llm', input: { prompt: 'x'.repeat(100_000) } }] } }),
    },
    {
      // llm.chat's message objects let unknown fields through, and JSON.stringify overflows the stack on them.
      name: 'a body nested thousands of levels deep',
      status: 400,
      reason: /nests deeper than 32 levels/,
      send: () =>
        stack.request('POST', '/api/v1/runs', {
          apiKey: tenant.apiKey,
          rawBody: `{"plan":[{"skill":"llm.chat","input":{"messages":[{"role":"user","content":"x","extra":${'['.repeat(5000)}${']'.repeat(5000)}}]}}]}`,
        }),
    },
    {
      name: 'a body that is not JSON',
      status: 415,
      reason: /application\/json/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, rawBody: 'plan=1', headers: { 'content-type': 'text/plain' } }),
    },
    {
      name: 'a bad Idempotency-Key',
      status: 400,
      reason: /Idempotency-Key/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1) }, headers: { 'idempotency-key': 'x'.repeat(300) } }),
    },
    {
      name: 'a missing API key',
      status: 401,
      reason: /missing API key/,
      send: () => stack.request('POST', '/api/v1/runs', { body: { plan: simPlan(1) } }),
    },
    {
      name: 'a wrong API key',
      status: 401,
      reason: /invalid or revoked API key/,
      send: () => stack.request('POST', '/api/v1/runs', { apiKey: 'gr_not-a-real-key', body: { plan: simPlan(1) } }),
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const before = await writtenRows(tenant.tenantId);
      const res = await c.send();
      expect(res.status).toBe(c.status);
      expect(res.body.error).toMatch(c.reason);
      expect(await writtenRows(tenant.tenantId)).toEqual(before);
    });
  }

  it("hides another tenant's run, and rejects a malformed run id", async () => {
    const runId = await stack.submitRun(other.apiKey, { plan: simPlan(1) });
    const foreign = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error).toMatch(/not found/);
    const own = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: other.apiKey });
    expect(own.status).toBe(200);
    const listed = await stack.request('GET', '/api/v1/runs', { apiKey: tenant.apiKey });
    expect(listed.body.runs.map((r: { runId: string }) => r.runId)).not.toContain(runId);
    const malformed = await stack.request('GET', '/api/v1/runs/not-a-uuid', { apiKey: tenant.apiKey });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatch(/UUID/);
  });

  it('rejects bad list filters and cursors', async () => {
    const badPhase = await stack.request('GET', '/api/v1/runs?phase=DANCING', { apiKey: tenant.apiKey });
    expect(badPhase.status).toBe(400);
    expect(badPhase.body.error).toMatch(/phase/);
    const badCursor = await stack.request('GET', '/api/v1/runs?cursor=zzz', { apiKey: tenant.apiKey });
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.error).toMatch(/cursor/);
  });
});

describe('text Postgres cannot store is refused at the door, naming where it is', () => {
  const prompt = (text: string) => ({ plan: [{ skill: 'sim.llm', input: { prompt: text } }] });
  /** An open incident of the tenant: its note is a text column. */
  let incidentId: string;
  beforeAll(async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    const [row] = await stack.db
      .insert(incidents)
      .values({ runId, tenantId: tenant.tenantId, dedupeKey: `test:${randomUUID()}`, kind: 'escalation', severity: 'LOW', message: 'for the note test' })
      .returning({ id: incidents.id });
    incidentId = row!.id;
  });
  const cases: { name: string; method: string; path: string | (() => string); body?: unknown; reason: RegExp }[] = [
    { name: 'a NUL in a step input', method: 'POST', path: '/api/v1/runs', body: prompt('plan\u0000a trip'), reason: /^plan\[0\]\.input\.prompt contains a NUL character$/ },
    { name: 'a lone high surrogate', method: 'POST', path: '/api/v1/runs', body: prompt('x\uD800y'), reason: /^plan\[0\]\.input\.prompt contains an unpaired surrogate$/ },
    { name: 'a lone low surrogate', method: 'POST', path: '/api/v1/runs', body: prompt('\uDC00'), reason: /^plan\[0\]\.input\.prompt contains an unpaired surrogate$/ },
    {
      name: 'a NUL in a key',
      method: 'POST',
      path: '/api/v1/runs',
      body: { plan: [{ skill: 'sim.llm', input: { prompt: 'x', 'a\u0000': 1 } }] },
      reason: /^a key in plan\[0\]\.input contains a NUL character$/,
    },
    {
      name: 'a NUL in an incident note',
      method: 'POST',
      path: () => `/api/v1/incidents/${incidentId}/acknowledge`,
      body: { note: 'seen\u0000' },
      reason: /^note contains a NUL character$/,
    },
    { name: 'a NUL in a run control reason', method: 'POST', path: `/api/v1/runs/${randomUUID()}/pause`, body: { reason: '\u0000' }, reason: /^reason contains a NUL character$/ },
    { name: 'a NUL in a query value', method: 'GET', path: '/api/v1/runs?cursor=%00', reason: /^query parameter cursor contains a NUL character$/ },
    { name: 'a NUL in a path segment', method: 'GET', path: '/api/v1/runs/%00', reason: /^path segment "%00" contains a NUL character$/ },
    { name: 'malformed percent-encoding in a path parameter', method: 'GET', path: '/api/v1/runs/%E0%A4%A', reason: /^path segment "%E0%A4%A" is not valid percent-encoding$/ },
    { name: 'percent-encoding of no UTF-8 in a path parameter', method: 'GET', path: '/api/v1/incidents/%ED%A0%80', reason: /not valid percent-encoding/ },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const before = await writtenRows(tenant.tenantId);
      const res = await rawRequest(stack.baseUrl, {
        method: c.method,
        path: typeof c.path === 'function' ? c.path() : c.path,
        headers: { authorization: `Bearer ${tenant.apiKey}`, ...(c.body ? { 'content-type': 'application/json' } : {}) },
        body: c.body === undefined ? undefined : JSON.stringify(c.body),
      });
      expect({ status: res.status, error: res.json?.error }).toEqual({ status: 400, error: expect.stringMatching(c.reason) });
      expect(await writtenRows(tenant.tenantId)).toEqual(before);
    });
  }

  it('accepts every other code point: controls such as tab and ESC, RTL marks, astral characters', async () => {
    const text = 'tab\t newline\n escape\u001b delete\u007f rtl\u202e\u200f astral 😀𝄞 bom\ufeff';
    const runId = await stack.submitRun(tenant.apiKey, prompt(text));
    const [stored] = await stack.db.select({ plan: runs.plan }).from(runs).where(eq(runs.id, runId));
    expect(stored!.plan[0]!.input).toEqual({ prompt: text });
  });
});

describe('bodies: read only for an authenticated caller, and a body that cannot be decoded is a 4xx', () => {
  const garbage = Buffer.from('this is not gzip at all \x00\x01\x02', 'latin1');
  const send = (headers: Record<string, string>, body: string | Buffer) =>
    rawRequest(stack.baseUrl, { method: 'POST', path: '/api/v1/runs', headers: { 'content-type': 'application/json', ...headers }, body });
  const keys = { none: {}, wrong: { authorization: 'Bearer gr_not-a-real-key' } };

  for (const [who, auth] of Object.entries(keys)) {
    it.each([
      ['gzip garbage', { 'content-encoding': 'gzip' }, garbage],
      ['deflate garbage', { 'content-encoding': 'deflate' }, garbage],
      ['an unknown Content-Encoding', { 'content-encoding': 'x-bogus' }, garbage],
      ['malformed JSON', {}, '{"plan": ['],
      ['an oversized body', {}, JSON.stringify({ plan: simPlan(1, { prompt: 'x'.repeat(100_000) }) })],
    ])(`answers 401 to ${who === 'none' ? 'no' : 'a wrong'} API key with %s`, async (_name, headers, body) => {
      const before = await writtenRows(tenant.tenantId);
      const res = await send({ ...auth, ...headers }, body);
      expect({ status: res.status, error: res.json?.error }).toEqual({ status: 401, error: expect.stringMatching(/API key/) });
      expect(await writtenRows(tenant.tenantId)).toEqual(before);
    });
  }

  it.each([
    ['gzip garbage', 'gzip', garbage, 400, /^the request body could not be decoded as Content-Encoding gzip: /],
    ['deflate garbage', 'deflate', garbage, 400, /^the request body could not be decoded as Content-Encoding deflate: /],
    ['brotli garbage', 'br', garbage, 400, /^the request body could not be decoded as Content-Encoding br: /],
    ['truncated gzip', 'gzip', gzipSync(JSON.stringify({ plan: simPlan(1) })).subarray(0, 20), 400, /could not be decoded as Content-Encoding gzip/],
    ['an unknown Content-Encoding', 'x-bogus', garbage, 415, /unsupported content encoding "x-bogus"/],
  ])('refuses %s from an authenticated caller', async (_name, encoding, body, status, reason) => {
    const before = await writtenRows(tenant.tenantId);
    const res = await send({ authorization: `Bearer ${tenant.apiKey}`, 'content-encoding': encoding }, body);
    expect({ status: res.status, error: res.json?.error }).toEqual({ status, error: expect.stringMatching(reason) });
    expect(await writtenRows(tenant.tenantId)).toEqual(before);
  });

  it('answers a refused caller only once its body has arrived, so closing the connection loses nothing', async () => {
    // Closing a socket with unread bytes resets it, dropping whatever of the answer was not sent yet.
    const port = Number(new URL(stack.baseUrl).port);
    const socket = net.connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk) => received.push(chunk));
    const ended = new Promise<string>((resolve) => {
      socket.once('end', () => resolve('end'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    const half = 'x'.repeat(30_000);
    socket.write(`POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${2 * half.length}\r\n\r\n${half}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(Buffer.concat(received).length).toBe(0);
    socket.write(half);
    expect(await ended).toBe('end');
    const answer = Buffer.concat(received).toString();
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error).toMatch(/missing API key/);
  });

  it('still reads a well-encoded body', async () => {
    const auth = { authorization: `Bearer ${tenant.apiKey}` };
    const gzipped = await send({ ...auth, 'content-encoding': 'gzip' }, gzipSync(JSON.stringify({ plan: [] })));
    expect(gzipped.json?.error).toMatch(/plan must have at least one step/);
    const deflated = await send({ ...auth, 'content-encoding': 'deflate' }, deflateSync(JSON.stringify({ plan: [] })));
    expect(deflated.json?.error).toMatch(/plan must have at least one step/);
  });
});

describe('list cursors', () => {
  const cursor = (raw: string) => Buffer.from(raw).toString('base64url');
  const id = '00000000-0000-4000-8000-000000000000';
  const lists = ['/api/v1/runs', '/api/v1/incidents', '/api/v1/alerts', '/api/v1/audit/findings'];

  it.each([
    ['year 0', `0000-01-01T00:00:00.000000Z|${id}`],
    ['before 1970', `1969-12-31T23:59:59.999999Z|${id}`],
    ['a sixth-digit year', `+275760-09-13T00:00:00.000000Z|${id}`],
    ['a day that does not exist', `2026-02-30T00:00:00.000000Z|${id}`],
    ['hour 24', `2026-01-01T24:00:00.000000Z|${id}`],
    ['a leap second', `2016-12-31T23:59:60.000000Z|${id}`],
    ['milliseconds only', `2026-01-01T00:00:00.000Z|${id}`],
    ['an id that is no UUID', '2026-01-01T00:00:00.000000Z|42'],
    ['a third field', `2026-01-01T00:00:00.000000Z|${id}|x`],
    ['a NUL', `2026-01-01T00:00:00.000000Z\u0000|${id}`],
  ])('refuses one carrying %s with a 400 on every list', async (_name, raw) => {
    for (const list of lists) {
      const res = await stack.request('GET', `${list}?cursor=${cursor(raw)}`, { apiKey: tenant.apiKey });
      expect({ list, status: res.status, error: res.body.error }).toEqual({ list, status: 400, error: 'invalid cursor' });
    }
  });

  it.each([
    ['the first instant it allows', `1970-01-01T00:00:00.000000Z|${id}`],
    ['the last instant of year 9999', `9999-12-31T23:59:59.999999Z|${id}`],
    ['a leap day', `2024-02-29T12:00:00.000001Z|${id}`],
  ])('takes one carrying %s on every list', async (_name, raw) => {
    for (const list of lists) {
      const res = await stack.request('GET', `${list}?cursor=${cursor(raw)}`, { apiKey: tenant.apiKey });
      expect({ list, status: res.status }).toEqual({ list, status: 200 });
    }
  });
});

describe('Temporal unreachable at submit', () => {
  it('answers 202 with the start queued, keeps the run CREATED with its audit contract, and the starter starts it', async () => {
    const { Client, Connection } = await import('@temporalio/client');
    const { createApp } = await import('../api/app');
    const connection = await Connection.connect({ address: inject('temporalAddress') });
    const deadClient = new Client({ connection });
    await connection.close();
    const app = createApp({ ...stack.apiDeps, temporal: deadClient });
    const server = await new Promise<import('node:http').Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const port = (server.address() as import('node:net').AddressInfo).port;
    const headers = { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json', 'idempotency-key': `outage-${Date.now()}` };
    const body = JSON.stringify({ plan: simPlan(1) });
    const refused = await fetch(`http://127.0.0.1:${port}/api/v1/runs`, { method: 'POST', headers, body });
    server.close();
    expect(refused.status).toBe(202);
    const { runId, workflow } = (await refused.json()) as { runId: string; workflow: string };
    expect(workflow).toBe('queued');

    const [stored] = await stack.db.select().from(runs).where(eq(runs.id, runId));
    expect(stored).toMatchObject({ phase: 'CREATED', status: 'queued', workflowStartedAt: null });
    const [expectations] = await stack.db.select({ n: count() }).from(auditExpectations).where(eq(auditExpectations.runId, runId));
    expect(expectations!.n).toBe(6);

    const retried = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1) }, headers: { 'idempotency-key': headers['idempotency-key'] } });
    expect(retried.status).toBe(202);
    expect(retried.body.runId).toBe(runId);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  });
});
