import type { RequestHandler } from 'express';
import { atZero, type ApiMetrics } from '../lib/metrics';
import { API_ROUTES, ERROR_STATUSES, routeFor } from './contract';

/** The `route` label of every answer no route gave (404 for a path the API does not serve, or a 401 before it): one value, whatever the path. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * The route template that serves `method path` (`/api/v1/runs/:id`), as express matches it (in any
 * case, with or without one trailing slash; HEAD by the GET route), or `unmatched`. Read from the
 * path the client asked for, not from express's routing state, which a mounted router rewrites
 * (`/:id`, `/`) and an error raised before the route leaves unset: a route's failures carry the
 * same label as its successes.
 */
export function routeLabel(method: string, path: string): string {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  if (trimmed.includes('//')) return UNMATCHED_ROUTE;
  return routeFor(method === 'HEAD' ? 'GET' : method, trimmed.toLowerCase())?.path ?? UNMATCHED_ROUTE;
}

/** The statuses a route may answer, as the OpenAPI document lists them (`api/openapi.ts`), and 500. */
function statusesOf(route: (typeof API_ROUTES)[number]): string[] {
  const errors = route.auth === 'none' ? [400, 503] : Object.keys(ERROR_STATUSES).map(Number);
  return [...new Set([...Object.keys(route.responses).map(Number), ...errors, 500])].map(String);
}

const zeroed = new WeakSet<ApiMetrics>();

/**
 * Every answer a route may give, set at zero before the first request, so the first of each after a
 * start is a rise `rate()` and `increase()` see: the count of each status, and the latency of each
 * success (a histogram per status would be a thousand series for answers that mostly never come).
 */
function zeroRoutes(metrics: ApiMetrics): void {
  if (zeroed.has(metrics)) return;
  zeroed.add(metrics);
  for (const route of API_ROUTES) {
    const method = route.method.toUpperCase();
    const statuses = statusesOf(route);
    atZero(metrics.httpAnswers, statuses.map((status) => ({ method, route: route.path, status })));
    atZero(
      metrics.httpRequests,
      statuses.filter((status) => status.startsWith('2')).map((status) => ({ method, route: route.path, status })),
    );
  }
  const unmatched = [...Object.keys(ERROR_STATUSES), '500'];
  for (const method of ['GET', 'POST', 'PUT']) atZero(metrics.httpAnswers, unmatched.map((status) => ({ method, route: UNMATCHED_ROUTE, status })));
}

/** Times and counts every answer, errors included, by method, route template and status. */
export function httpMetrics(metrics: ApiMetrics): RequestHandler {
  zeroRoutes(metrics);
  return (req, res, next) => {
    // Mounted at the root: req.path is the whole path, before any router rewrites it.
    const route = routeLabel(req.method, req.path);
    const end = metrics.httpRequests.startTimer();
    res.on('finish', () => {
      const labels = { method: req.method, route, status: String(res.statusCode) };
      end(labels);
      metrics.httpAnswers.inc(labels);
    });
    next();
  };
}
