import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiRole } from '../../core/authorization';
import type { Caller } from '../../api/auth';
import { API_ROUTES, ROUTES, type RouteName } from '../../api/contract';
import { errorHandler } from '../../api/errors';
import { routerOf, TENANT_ROUTES, type RouteHandlers } from '../../api/router';

/** The router built from the table, in front of handlers that only record what they were given. */
const given: { route: RouteName; input: unknown }[] = [];
const handlers = Object.fromEntries(
  (Object.keys(ROUTES) as RouteName[]).map((route) => [
    route,
    (input: unknown, res: express.Response) => {
      given.push({ route, input });
      res.json({ ok: true });
    },
  ]),
) as unknown as RouteHandlers;

let base: string;
let close: () => void;
beforeAll(async () => {
  const app = express();
  app.use(express.json());
  // The key's role stands in for authentication, which is not the router's business.
  app.use((req, res, next) => {
    res.locals.caller = { tenantId: 't', tenantName: 't', tenantStatus: 'active', apiKeyId: 'k', role: req.get('x-role') as ApiRole, requestsPerMinute: null } satisfies Caller;
    next();
  });
  app.use(routerOf(TENANT_ROUTES, handlers));
  app.use(errorHandler({ unavailable: () => undefined, unhandled: () => undefined }));
  const server = app.listen(0);
  await new Promise((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => server.close();
});
afterAll(() => close?.());

async function call(method: string, path: string, role: ApiRole, options: { body?: unknown; headers?: Record<string, string> } = {}) {
  given.length = 0;
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'x-role': role, ...(options.body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, handled: given.map((g) => g.route), input: given[0]?.input as Record<string, unknown> | undefined };
}

const RUN = '00000000-0000-4000-8000-000000000001';

describe('the route table', () => {
  it('gives every path parameter of every route a schema', () => {
    for (const route of API_ROUTES) {
      const named = [...route.path.matchAll(/:(\w+)/g)].map(([, name]) => name);
      expect({ path: route.path, params: Object.keys(route.params ?? {}).sort() }).toEqual({ path: route.path, params: named.sort() });
    }
  });
});

describe('the router built from the table', () => {
  it('hands a route its input as the contract reads it: path parameters, query defaults, the body and the Idempotency-Key', async () => {
    const push = await call('GET', '/api/v1/tenant/pushes/7', 'admin');
    expect(push).toMatchObject({ status: 200, handled: ['getPush'], input: { params: { id: 7 }, caller: { role: 'admin' } } });
    const runs = await call('GET', '/api/v1/runs?status=running', 'viewer');
    expect(runs.input).toMatchObject({ query: { status: 'running', limit: 50 } });
    const pause = await call('POST', `/api/v1/runs/${RUN}/pause`, 'member', { headers: { 'idempotency-key': 'retry-1' } });
    expect(pause.input).toMatchObject({ params: { id: RUN }, body: {}, idempotencyKey: 'retry-1' });
  });

  it("refuses a role the route's entry leaves out before its path or body is read, and the handler never runs", async () => {
    const refused = await call('POST', '/api/v1/runs/not-a-run/pause', 'viewer', { body: { nonsense: true } });
    expect(refused).toMatchObject({ status: 403, handled: [], body: { code: 'ROLE_NOT_ALLOWED', detail: "role 'viewer' may not do this (needs admin or member)" } });
    // A route may word its refusal itself: a viewer's submit is told that nothing was recorded.
    const submit = await call('POST', '/api/v1/runs', 'viewer', { body: {} });
    expect(submit.body).toMatchObject({ code: 'ROLE_NOT_ALLOWED', detail: expect.stringMatching(/may not start runs .*nothing was recorded/) });
  });

  it('answers what is wrong with the input as a 400 naming it, and the handler never runs', async () => {
    const cases: [string, string, { body?: unknown; headers?: Record<string, string> }, string, RegExp][] = [
      ['GET', '/api/v1/runs/not-a-run', {}, 'VALIDATION_FAILED', /^run id must be a UUID$/],
      ['GET', `/api/v1/runs/${RUN}/steps/-1/output`, {}, 'VALIDATION_FAILED', /^step index must be a whole number/],
      ['GET', '/api/v1/tenant/pushes/0', {}, 'VALIDATION_FAILED', /^push id must be a positive whole number, not '0'$/],
      ['GET', '/api/v1/runs?limit=0', {}, 'VALIDATION_FAILED', /^invalid query: limit: /],
      ['POST', `/api/v1/runs/${RUN}/pause`, { body: { pauseReason: 'NOT_A_REASON' } }, 'VALIDATION_FAILED', /^invalid request: pauseReason: /],
      ['POST', `/api/v1/runs/${RUN}/stop`, { headers: { 'idempotency-key': 'two words' } }, 'IDEMPOTENCY_KEY_INVALID', /^Idempotency-Key must be 1-200 visible ASCII characters$/],
      // A document must be sent; options may be left out.
      ['PUT', '/api/v1/policies', {}, 'VALIDATION_FAILED', /^invalid policy: /],
      ['POST', '/api/v1/runs', { body: [1] }, 'VALIDATION_FAILED', /^request body must be a JSON object with a "plan"$/],
      ['POST', '/api/v1/runs', { body: { plan: 'none' } }, 'VALIDATION_FAILED', /^invalid run: /],
    ];
    for (const [method, path, options, code, detail] of cases) {
      const res = await call(method, path, 'admin', options);
      expect({ path, status: res.status, code: res.body.code, handled: res.handled }).toEqual({ path, status: 400, code, handled: [] });
      expect(res.body.detail).toMatch(detail);
    }
  });
});
