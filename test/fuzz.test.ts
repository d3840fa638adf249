import { randomUUID } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app';
import { SUPPRESSION_REASONS } from '../core/alerts';
import { AUDIT_CHECKS, AUDIT_VERDICTS } from '../core/audit-reconciliation';
import { INCIDENT_STATUSES } from '../core/incidents';
import { RUN_PHASES, RUN_STATUSES } from '../core/phases';
import { incidents } from '../db/schema';
import {
  alertSettingsBody,
  bodyBytes,
  bodyFor,
  contentType,
  controlBody,
  headerValue,
  incidentChangeBody,
  json,
  policyBody,
  queryString,
  runBody,
  segment,
  type BodySpec,
} from './helpers/fuzz-inputs';
import { expectContractResponse } from './helpers/contract';
import { rawRequest } from './helpers/raw-http';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * Every endpoint the API registers, fed hostile requests: bodies of any JSON or none, in any
 * encoding and charset a client may claim, text from every class of code point, headers, path
 * segments and query strings valid, odd or broken. Whatever arrives, the API answers below 500,
 * a 4xx carries a JSON `error` reason, and a refused request writes nothing for the tenant.
 *
 * The API under test starts its workflows on a task queue no worker polls: the requests that
 * pass validation leave runs CREATED, and no activity writes behind the test's back while it
 * compares the tenant's rows before and after each request.
 */

/** Cases per endpoint; FUZZ_RUNS=5000 for a longer hunt. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 250);

let stack: Stack;
let tenant: TestTenant;
let keys: { admin: string; member: string; viewer: string };
let baseUrl: string;
let server: Server;
/**
 * Ids the paths may name: a finished run, an open incident, and a run left CREATED on the queue
 * nobody polls. Only pause and stop name the last: they are signals Temporal takes without a
 * worker, while reading its live state or resuming it waits on one until the deadline.
 */
const known = { runs: [] as string[], incidents: [] as string[], liveRuns: [] as string[] };

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
  keys = { admin: tenant.apiKey, member: await stack.createKey(tenant.tenantId, 'member'), viewer: await stack.createKey(tenant.tenantId, 'viewer') };
  const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
  await stack.waitForPhase(runId, 'terminal');
  const [incident] = await stack.db
    .insert(incidents)
    .values({ runId, tenantId: tenant.tenantId, dedupeKey: `fuzz:${randomUUID()}`, kind: 'escalation', severity: 'LOW', message: 'for the fuzz test' })
    .returning({ id: incidents.id });
  known.runs.push(runId);
  known.incidents.push(incident!.id);

  // Three reconciler intervals must not pass during the test, or /healthz would rightly say "late".
  const app = createApp({ ...stack.apiDeps, taskQueue: `fuzz-unpolled-${randomUUID()}`, auditIntervalSeconds: 3600 });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const live = await rawRequest(baseUrl, {
    method: 'POST',
    path: '/api/v1/runs',
    headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ plan: simPlan(1) }),
  });
  known.liveRuns.push(live.json.runId);
});
afterAll(async () => {
  keepAlive.destroy();
  await new Promise((resolve) => server?.close(resolve));
  await stack?.close();
});

/** What the tenant holds, in one query: any write a refused request made changes it. */
async function tenantState(): Promise<unknown> {
  const id = tenant.tenantId;
  const [state] = await stack.db.execute(sql`
    select
      (select count(*) from runs where tenant_id = ${id})::int as runs,
      (select count(*) from audit_expectations e join runs r on r.id = e.run_id where r.tenant_id = ${id})::int as expectations,
      (select count(*) from outbox where tenant_id = ${id})::int as outbox,
      (select count(*) from policies where tenant_id = ${id})::int as policies,
      (select count(*) from api_keys where tenant_id = ${id})::int as api_keys,
      (select status || ' ' || updated_at from tenants where id = ${id}) as tenant,
      (select md5(coalesce(string_agg(to_jsonb(i)::text, '|' order by i.id), '')) from incidents i where tenant_id = ${id}) as incidents,
      (select md5(coalesce(string_agg(to_jsonb(a)::text, '|'), '')) from alert_settings a where tenant_id = ${id}) as alert_settings
  `);
  return state;
}

interface Endpoint {
  method: string;
  /** `:run` and `:incident` are filled with a path segment. */
  route: string;
  /** The body shape the route reads, when it reads one. */
  body?: fc.Arbitrary<unknown>;
  /** The query parameters it reads, and values with meaning to it (known once the test has set up). */
  query?: { keys: readonly string[]; values: () => readonly string[] };
  /** Whether `:run` may name the live run. */
  live?: boolean;
}

const ENDPOINTS: Endpoint[] = [
  // Before the runs: each accepted change is signalled to every live run, and the runs accumulate.
  { method: 'GET', route: '/api/v1/policies' },
  { method: 'PUT', route: '/api/v1/policies', body: policyBody },
  { method: 'POST', route: '/api/v1/tenant/suspend' },
  { method: 'POST', route: '/api/v1/tenant/activate' },
  { method: 'POST', route: '/api/v1/runs', body: runBody },
  { method: 'GET', route: '/api/v1/runs', query: { keys: ['status', 'phase'], values: () => [...RUN_STATUSES, ...RUN_PHASES] } },
  { method: 'GET', route: '/api/v1/runs/:run' },
  { method: 'GET', route: '/api/v1/runs/:run/audit' },
  { method: 'POST', route: '/api/v1/runs/:run/pause', body: controlBody, live: true },
  { method: 'POST', route: '/api/v1/runs/:run/resume', body: controlBody },
  { method: 'POST', route: '/api/v1/runs/:run/stop', body: controlBody, live: true },
  { method: 'GET', route: '/api/v1/audit/findings', query: { keys: ['verdict', 'check'], values: () => [...AUDIT_VERDICTS, ...AUDIT_CHECKS] } },
  { method: 'GET', route: '/api/v1/reports/stale-runs', query: { keys: [], values: () => [] } },
  { method: 'GET', route: '/api/v1/incidents', query: { keys: ['status', 'severity', 'runId'], values: () => [...INCIDENT_STATUSES, 'LOW', 'HIGH,CRITICAL', ...known.runs] } },
  { method: 'GET', route: '/api/v1/incidents/:incident' },
  { method: 'POST', route: '/api/v1/incidents/:incident/acknowledge', body: incidentChangeBody },
  { method: 'POST', route: '/api/v1/incidents/:incident/resolve', body: incidentChangeBody },
  { method: 'GET', route: '/api/v1/alerts', query: { keys: ['status', 'reason'], values: () => ['sent', 'suppressed', ...SUPPRESSION_REASONS] } },
  { method: 'GET', route: '/api/v1/alert-settings' },
  { method: 'PUT', route: '/api/v1/alert-settings', body: alertSettingsBody },
  { method: 'GET', route: '/healthz' },
  { method: 'GET', route: '/metrics' },
];

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: BodySpec;
  /** Over a kept-alive connection, or one of its own that the server closes after answering. */
  connection: 'keep-alive' | 'close';
}

/** One connection reused across cases, as most clients do; cheaper than one per case. */
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
const connection = fc.oneof({ weight: 3, arbitrary: fc.constant('keep-alive' as const) }, { weight: 1, arbitrary: fc.constant('close' as const) });

function authorization(): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 20, arbitrary: fc.constant(`Bearer ${keys.admin}`) },
    { weight: 2, arbitrary: fc.constantFrom(`Bearer ${keys.member}`, `Bearer ${keys.viewer}`, `bearer ${keys.admin}`, `Bearer   ${keys.admin}  `, `Bearer ${keys.admin} x`) },
    { weight: 2, arbitrary: headerValue.map((v) => `Bearer ${v}`) },
    { weight: 1, arbitrary: fc.oneof(headerValue, fc.constantFrom(undefined, 'Bearer', 'Basic dXNlcjpwYXNz', `Bearer ${'k'.repeat(4000)}`)) },
  );
}

function headers(): fc.Arbitrary<Record<string, string>> {
  return fc
    .record(
      {
        authorization: authorization(),
        'content-type': contentType,
        'idempotency-key': fc.option(fc.oneof(fc.uuid(), headerValue), { freq: 3 }),
        'accept-encoding': fc.option(fc.oneof(fc.constantFrom('gzip', 'br', '*', 'identity;q=0'), headerValue), { freq: 5 }),
        'x-forwarded-for': fc.option(headerValue, { freq: 8 }),
      },
      // The key and the content type are sent unless their arbitraries say otherwise (rarely), so
      // most cases get past authentication and the parser.
      { requiredKeys: ['authorization', 'content-type'] },
    )
    .map((h) => Object.fromEntries(Object.entries(h).filter((e): e is [string, string] => typeof e[1] === 'string')));
}

function requestsFor(endpoint: Endpoint): fc.Arbitrary<FuzzRequest> {
  const pathTemplate = endpoint.route;
  const path = fc
    .tuple(segment(endpoint.live ? [...known.runs, ...known.liveRuns] : known.runs), segment(known.incidents), endpoint.query ? queryString(endpoint.query.keys, endpoint.query.values()) : fc.constant(''), fc.constantFrom('', '', '', '/'))
    .map(([run, incident, query, trailing]) => `${pathTemplate.replace(':run', run).replace(':incident', incident)}${trailing}${query}`);
  return fc.record({
    method: fc.constant(endpoint.method),
    path,
    headers: headers(),
    body: bodyFor(endpoint.body).map((b) => b ?? undefined),
    connection,
  });
}

/** Anything else: other methods on the API's paths, and paths it does not have. */
function strayRequests(): fc.Arbitrary<FuzzRequest> {
  const path = fc
    .tuple(fc.constantFrom('/api/v1', '/api/v1/runs', '/api/v1/runs/x', '/API/V1/RUNS', '/api/v2', '', '/healthz', '/metrics'), fc.array(segment([...known.runs, 'pause', 'audit', 'runs']), { maxLength: 3 }))
    .map(([prefix, segments]) => `${prefix}/${segments.join('/')}`);
  return fc.record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
    path,
    headers: headers(),
    body: bodyFor(json).map((b) => b ?? undefined),
    connection,
  });
}

async function send(request: FuzzRequest) {
  const headersToSend = { ...request.headers };
  if (request.body?.encoding.header !== undefined) headersToSend['content-encoding'] = request.body.encoding.header;
  return rawRequest(baseUrl, {
    method: request.method,
    path: request.path,
    headers: headersToSend,
    body: request.body ? bodyBytes(request.body) : undefined,
    agent: request.connection === 'keep-alive' ? keepAlive : undefined,
    // Every answer is due within the API's own deadlines; one that hangs fails the case.
    timeoutMs: 10_000,
  });
}

/** The tenant's state after the last case, when it is known; only this test writes to the tenant. */
let lastState: unknown;

/** The contract, for one request. */
async function answersWell(request: FuzzRequest): Promise<void> {
  const before = lastState ?? (await tenantState());
  lastState = undefined;
  const res = await send(request);
  const outcome = `${request.method} ${res.status} ${String(res.json?.error ?? '').slice(0, 50)}`;
  outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  expect(res.status, `${res.status} ${res.text.slice(0, 300)}`).toBeLessThan(500);
  if (res.status >= 400) {
    // A HEAD answer has no body to carry the reason.
    if (request.method !== 'HEAD') {
      expect(res.headers['content-type'], res.text.slice(0, 300)).toMatch(/^application\/problem\+json/);
      expect(typeof res.json?.error === 'string' && res.json.error.length > 0, res.text.slice(0, 300)).toBe(true);
      // A problem with a code its route declares for this status (routes it does not match are not checked).
      expectContractResponse(request.method, request.path, res.status, res.json, res.headers['content-type']);
    }
    const after = await tenantState();
    expect(after, `${res.status} ${res.text.slice(0, 300)}`).toEqual(before);
    lastState = after;
  }
}

/** How often each answer came, printed with FUZZ_STATS=1 to check the cases reach past the door. */
const outcomes = new Map<string, number>();
afterAll(() => {
  if (!process.env.FUZZ_STATS) return;
  console.info([...outcomes].sort((a, b) => b[1] - a[1]).map(([outcome, n]) => `${n}\t${outcome}`).join('\n'));
});

describe('hostile requests never get a 5xx, always a reason, and a refusal writes nothing', () => {
  for (const endpoint of ENDPOINTS) {
    it(`${endpoint.method} ${endpoint.route}`, async () => {
      await fc.assert(fc.asyncProperty(requestsFor(endpoint), answersWell), { numRuns: RUNS });
    }, 300_000);
  }

  it('any method on any path', async () => {
    await fc.assert(fc.asyncProperty(strayRequests(), answersWell), { numRuns: RUNS });
  }, 300_000);
});
