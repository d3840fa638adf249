import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_ROUTES, problemCodesOf, type RouteContract } from '../api/contract';
import { PROBLEMS, type ProblemCode } from '../api/problems';
import { startStack, type Stack } from './helpers/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

/** A request to `route` with its path parameters filled in: `valid` ones pass the contract, the others do not. */
function pathOf(route: RouteContract, valid: boolean): string {
  return route.path.replace(/:(\w+)/g, (_m, name: string) => {
    if (!valid) return 'not-one';
    return route.params?.[name]?.type === 'integer' ? '1' : '00000000-0000-4000-8000-000000000000';
  });
}

describe('the router built from the contract', () => {
  it('refuses every role the contract leaves out of a route before reading anything else, and lets in those it names', async () => {
    const tenant = await stack.createTenant();
    const viewer = await stack.createKey(tenant.tenantId, 'viewer');
    const keyed = API_ROUTES.filter((route) => route.auth !== 'none');
    expect(keyed.length).toBeGreaterThan(30);
    for (const route of keyed) {
      // Path parameters that are not valid: a role refused is told so before its path is read.
      const res = await stack.request(route.method.toUpperCase(), pathOf(route, false), { apiKey: viewer, body: route.method === 'get' ? undefined : { not: 'read' } });
      const refused = route.auth !== 'none' && !route.auth.includes('viewer');
      const answer = { route: `${route.method} ${route.path}`, refused: res.body.code === 'ROLE_NOT_ALLOWED' };
      expect(answer).toEqual({ route: `${route.method} ${route.path}`, refused });
    }
  });

  it('answers ROUTE_NOT_FOUND to anything the contract does not name, whoever asks', async () => {
    const tenant = await stack.createTenant();
    const viewer = await stack.createKey(tenant.tenantId, 'viewer');
    const run = '00000000-0000-4000-8000-000000000000';
    for (const [method, path] of [
      ['GET', '/api/v1/widgets'],
      ['POST', `/api/v1/runs/${run}/explode`],
      ['GET', `/api/v1/runs/${run}/pause`],
      ['DELETE', `/api/v1/runs/${run}`],
    ] as const) {
      for (const apiKey of [tenant.apiKey, viewer]) {
        const res = await stack.request(method, path, { apiKey });
        expect({ method, path, status: res.status, code: res.body.code }).toEqual({ method, path, status: 404, code: 'ROUTE_NOT_FOUND' });
      }
    }
  });
});

describe('the OpenAPI document', () => {
  it('is served without a key, as OpenAPI 3.1 with auth, bodies, responses and the error shape', async () => {
    const res = await stack.request('GET', '/api/v1/openapi.json');
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toBe('3.1.0');
    const operations = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op })));
    expect(operations).toHaveLength(API_ROUTES.length);
    for (const { path, op } of operations) {
      expect(op.summary).toBeTruthy();
      if (path.startsWith('/api/v1/') && path !== '/api/v1/openapi.json') {
        expect(op.security).toEqual([{ apiKey: [] }]);
        const unauthorized = op.responses['401'].content['application/problem+json'].schema;
        expect(unauthorized.allOf[0]).toEqual({ $ref: '#/components/schemas/Problem' });
        expect(unauthorized.allOf[1].properties.code.enum).toEqual(['API_KEY_MISSING', 'API_KEY_INVALID']);
        expect(unauthorized.allOf[1].required).toContain('code');
        for (const status of ['429', '503']) expect(op.responses[status].headers['Retry-After'].schema.type).toBe('integer');
      }
    }
    const submit = doc.paths['/api/v1/runs'].post;
    expect(submit.requestBody.content['application/json'].schema.properties.plan.type).toBe('array');
    // A viewer key reads runs; its submit is a 403 and writes nothing.
    expect(submit['x-roles']).toEqual(['admin', 'member']);
    const list = doc.paths['/api/v1/runs'].get;
    expect(list.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['phase', 'status', 'limit', 'cursor']));
    expect(doc.paths['/api/v1/runs/{id}/pause'].post.parameters[0]).toMatchObject({ name: 'id', in: 'path', required: true });
  });

  it('rejects a response that breaks the contract (the check every test request goes through)', async () => {
    const { expectContractResponse } = await import('./helpers/contract');
    expect(() => expectContractResponse('GET', '/api/v1/runs', 200, { runs: [{ runId: 'not-a-uuid' }], nextCursor: null })).toThrow(/does not match the contract/);
    expect(() => expectContractResponse('POST', '/api/v1/runs', 500, { message: 'x' })).toThrow(/does not declare/);
    const problem = { type: 'https://governed.dev/problems/run-not-found', title: 'No such run', status: 404, detail: 'x', error: 'x', code: 'RUN_NOT_FOUND' };
    expect(() => expectContractResponse('GET', `/api/v1/runs/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, 404, problem, 'application/problem+json; charset=utf-8')).not.toThrow();
    // The old shape, the wrong type, a code the route never sends, a status it never sends.
    expect(() => expectContractResponse('GET', '/api/v1/runs/x', 404, { error: 'x' })).toThrow(/without the problem/);
    expect(() => expectContractResponse('GET', '/api/v1/runs/x', 404, problem, 'application/json; charset=utf-8')).toThrow(/not application\/problem\+json/);
    expect(() => expectContractResponse('GET', '/api/v1/runs/x', 404, { ...problem, code: 'INCIDENT_NOT_FOUND' })).toThrow(/without the problem/);
    expect(() => expectContractResponse('GET', '/api/v1/runs', 404, { ...problem, code: 'NOT_FOUND' })).toThrow(/does not declare/);
    expect(() => expectContractResponse('GET', '/api/v1/runs', 201, {})).toThrow(/does not declare/);
  });

  it('lists on each operation only the error statuses and codes it can send, as problem+json', async () => {
    const doc = (await stack.request('GET', '/api/v1/openapi.json')).body;
    const op = (path: string, method = 'post') => doc.paths[path][method];
    const codes = (path: string, status: number, method = 'post'): string[] => op(path, method).responses[String(status)]?.content['application/problem+json'].schema.allOf[1].properties.code.enum ?? [];

    // 422 only where an Idempotency-Key can be reused with another body: the submit.
    const with422 = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, ops]) => Object.entries(ops).filter(([, o]) => o.responses['422']).map(([m]) => `${m} ${path}`));
    expect(with422).toEqual(['post /api/v1/runs']);
    expect(codes('/api/v1/runs', 422)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
    // 409 only where a resource's state can refuse, and each cause has its own code.
    const with409 = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, ops]) => Object.entries(ops).filter(([, o]) => o.responses['409']).map(([m]) => `${m} ${path}`));
    expect(with409.sort()).toEqual(
      ['pause', 'stop', 'resume', 'approve', 'deny']
        .map((a) => `post /api/v1/runs/{id}/${a}`)
        .concat('post /api/v1/incidents/{id}/acknowledge', 'get /api/v1/runs/{id}/evidence', 'post /api/v1/lessons/proposals/{id}/accept', 'post /api/v1/lessons/proposals/{id}/dismiss')
        .sort(),
    );
    expect(codes('/api/v1/runs/{id}/evidence', 409, 'get')).toEqual(['RUN_NOT_FINISHED']);
    expect(codes('/api/v1/lessons/proposals/{id}/accept', 409)).toEqual(['PROPOSAL_DECIDED', 'PROPOSAL_ALREADY_APPLIED']);
    expect(codes('/api/v1/lessons/proposals/{id}/dismiss', 409)).toEqual(['PROPOSAL_DECIDED']);
    expect(codes('/api/v1/runs/{id}/pause', 409)).toEqual(['RUN_ALREADY_FINISHED', 'RUN_NOT_LIVE', 'SIGNAL_LIMIT_REACHED']);
    expect(codes('/api/v1/runs/{id}/resume', 409)).toEqual(expect.arrayContaining(['RUN_ALREADY_FINISHED', 'RUN_NOT_PAUSED', 'RESUME_NOT_ALLOWED']));
    expect(codes('/api/v1/incidents/{id}/acknowledge', 409)).toEqual(['INCIDENT_RESOLVED']);
    expect(op('/api/v1/incidents/{id}/resolve').responses['409']).toBeUndefined();
    // 403 only where a role or a pause reason can be refused; 404 only where something is looked up.
    expect(op('/api/v1/runs', 'get').responses['403']).toBeUndefined();
    expect(codes('/api/v1/runs/{id}/pause', 403)).toEqual(['ROLE_NOT_ALLOWED', 'PAUSE_REASON_NOT_ALLOWED']);
    expect(op('/api/v1/runs', 'get').responses['404']).toBeUndefined();
    expect(codes('/api/v1/runs/{id}', 404, 'get')).toEqual(['RUN_NOT_FOUND']);
    expect(codes('/api/v1/runs/{id}/steps/{stepIndex}/output', 404, 'get')).toEqual(['RUN_NOT_FOUND', 'STEP_NOT_FOUND', 'OUTPUT_NOT_READY']);
    // A problem's own fields: a control's 429 names its limit.
    const limited = op('/api/v1/runs/{id}/stop').responses['429'].content['application/problem+json'].schema.allOf[1];
    expect(limited.properties.limit.enum).toEqual(expect.arrayContaining(['per_key', 'per_run', 'failed_auth_per_address']));
    expect(doc.components.schemas.Problem.required).toEqual(['type', 'title', 'status', 'detail', 'code', 'error']);
    // No route without a key lists errors it cannot send.
    expect(Object.keys(op('/healthz', 'get').responses)).toEqual(['200', '503']);
    expect(Object.keys(op('/api/v1/openapi.json', 'get').responses)).toEqual(['200']);

    // Every code is one some route can send, but the general ones a bare status falls back to.
    const sent = new Set(API_ROUTES.flatMap((route) => problemCodesOf(route)));
    const general: ProblemCode[] = ['BAD_REQUEST', 'FORBIDDEN', 'CONFLICT', 'INTERNAL_ERROR'];
    // And those of the HTTP server itself, about a connection rather than a route.
    general.push('REQUEST_TIMEOUT', 'HEADERS_TOO_LARGE');
    expect((Object.keys(PROBLEMS) as ProblemCode[]).filter((code) => !sent.has(code) && !general.includes(code))).toEqual(['ROUTE_NOT_FOUND']);
  });

  it('documents the headers: Idempotency-Key on the submit and the controls, Location and Idempotent-Replayed on the submit', async () => {
    const doc = (await stack.request('GET', '/api/v1/openapi.json')).body;
    const keyed = ['/api/v1/runs', ...['pause', 'stop', 'resume', 'approve', 'deny'].map((a) => `/api/v1/runs/{id}/${a}`)];
    for (const path of keyed) {
      expect(doc.paths[path].post.parameters).toContainEqual(expect.objectContaining({ name: 'Idempotency-Key', in: 'header', required: false }));
    }
    expect(doc.paths['/api/v1/incidents/{id}/resolve'].post.parameters.map((p: { name: string }) => p.name)).not.toContain('Idempotency-Key');
    const accepted = doc.paths['/api/v1/runs'].post.responses['202'];
    expect(Object.keys(accepted.headers)).toEqual(['Location', 'Idempotent-Replayed']);
    expect(accepted.headers['Idempotent-Replayed'].schema.enum).toEqual(['true', 'false']);
    // Path parameters that are numbers say so.
    expect(doc.paths['/api/v1/tenant/pushes/{id}'].get.parameters[0].schema).toEqual({ type: 'integer', minimum: 0 });
    expect(doc.paths['/api/v1/runs/{id}/steps/{stepIndex}/output'].get.parameters[1]).toMatchObject({ name: 'stepIndex', schema: { type: 'integer' } });
  });
});
