import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../api/app';
import { API_ROUTES } from '../api/contract';
import { startStack, type Stack } from './helpers/stack';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

interface Layer {
  name: string;
  rawPath?: string;
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
}

/** Every `METHOD path` the express app really answers, mounted routers included. */
function registeredRoutes(app: Express): string[] {
  const found: string[] = [];
  const walk = (layers: Layer[], prefix: string) => {
    for (const layer of layers) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods)) found.push(`${method.toUpperCase()} ${prefix}${layer.route.path === '/' && prefix ? '' : layer.route.path}`);
      } else if (layer.name === 'router' && layer.handle.stack) {
        walk(layer.handle.stack, `${prefix}${layer.rawPath ?? ''}`);
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
  return [...new Set(found)].sort();
}

describe('the OpenAPI document', () => {
  it('covers exactly the routes the app registers', () => {
    const registered = registeredRoutes(createApp(stack.apiDeps));
    const documented = API_ROUTES.map((r) => `${r.method.toUpperCase()} ${r.path}`).sort();
    expect(registered.length).toBeGreaterThan(20);
    expect(registered.filter((r) => !documented.includes(r))).toEqual([]);
    expect(documented.filter((r) => !registered.includes(r))).toEqual([]);
  });

  it('is served without a key, as OpenAPI 3.1 with auth, bodies, responses and the error shape', async () => {
    const res = await stack.request('GET', '/api/v1/openapi.json');
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toBe('3.1.0');
    const operations = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op })));
    expect(operations).toHaveLength(API_ROUTES.length);
    for (const { path, op } of operations) {
      expect(op.summary).toBeTruthy();
      expect(Object.keys(op.responses).length).toBeGreaterThan(1);
      if (path.startsWith('/api/v1/') && path !== '/api/v1/openapi.json') {
        expect(op.security).toEqual([{ apiKey: [] }]);
        expect(op.responses['401']).toEqual({ $ref: '#/components/responses/Error401' });
      }
    }
    const submit = doc.paths['/api/v1/runs'].post;
    expect(submit.requestBody.content['application/json'].schema.properties.plan.type).toBe('array');
    // A viewer key reads runs; its submit is a 403 and writes nothing.
    expect(submit['x-roles']).toEqual(['admin', 'member']);
    expect(doc.components.responses.Error429.headers['Retry-After']).toBeDefined();
    const list = doc.paths['/api/v1/runs'].get;
    expect(list.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['phase', 'status', 'limit', 'cursor']));
    expect(doc.paths['/api/v1/runs/{id}/pause'].post.parameters[0]).toMatchObject({ name: 'id', in: 'path', required: true });
    expect(doc.components.responses.Error503.headers['Retry-After']).toBeDefined();
  });

  it('rejects a response that breaks the contract (the check every test request goes through)', async () => {
    const { expectContractResponse } = await import('./helpers/contract');
    expect(() => expectContractResponse('GET', '/api/v1/runs', 200, { runs: [{ runId: 'not-a-uuid' }], nextCursor: null })).toThrow(/does not match the contract/);
    expect(() => expectContractResponse('POST', '/api/v1/runs', 500, { message: 'x' })).toThrow(/error shape/);
    expect(() => expectContractResponse('GET', '/api/v1/runs', 201, {})).toThrow(/does not declare/);
  });
});
