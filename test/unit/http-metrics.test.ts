import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { API_ROUTES } from '../../api/contract';
import { httpMetrics, routeLabel } from '../../api/http-metrics';
import { createApiMetrics } from '../../lib/metrics';

describe('the route label of an answer', () => {
  it('is the route template, whatever the parameters, case or trailing slash', () => {
    expect(routeLabel('GET', '/api/v1/runs/1b1c7f0e-2b1a-4b8e-9e8e-1f0a2b3c4d5e')).toBe('/api/v1/runs/:id');
    expect(routeLabel('GET', '/api/v1/runs/not-a-uuid')).toBe('/api/v1/runs/:id');
    expect(routeLabel('GET', '/api/v1/runs/')).toBe('/api/v1/runs');
    expect(routeLabel('POST', '/API/v1/Runs')).toBe('/api/v1/runs');
    expect(routeLabel('HEAD', '/healthz')).toBe('/healthz');
    expect(routeLabel('GET', '/api/v1/runs/x/steps/3/output')).toBe('/api/v1/runs/:id/steps/:stepIndex/output');
  });

  it('is one value for every path no route serves', () => {
    for (const [method, path] of [
      ['GET', '/api/v1/nowhere'],
      ['DELETE', '/api/v1/runs/x'],
      ['GET', '/api/v1/runs//audit'],
      ['GET', '/'],
    ] as const) {
      expect(routeLabel(method, path), `${method} ${path}`).toBe('unmatched');
    }
  });

  it('starts every status a route may answer at zero', async () => {
    const metrics = createApiMetrics(new Registry());
    httpMetrics(metrics);
    const { values } = await metrics.httpAnswers.get();
    const series = new Set(values.map((v) => `${v.labels.method} ${v.labels.route} ${v.labels.status}`));
    for (const route of API_ROUTES) {
      for (const status of [...Object.keys(route.responses), '500']) expect(series, `${route.path} ${status}`).toContain(`${route.method.toUpperCase()} ${route.path} ${status}`);
    }
    expect(series).toContain('GET /api/v1/runs/:id 404');
    expect(series).toContain('GET unmatched 404');
    expect(values.every((v) => v.value === 0)).toBe(true);
  });
});
