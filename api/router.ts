import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';
import { describeZodError } from '../core/plan';
import { callerOf, type Caller } from './auth';
import { IDEMPOTENCY_KEY, ROUTES, type PathParam, type RouteContract, type RouteName } from './contract';
import { HttpError } from './errors';

/** What a handler is given: its route's input, read and checked against the contract before it runs. */
export type RouteInput<R> = {
  params: R extends { params: infer P } ? { [K in keyof P]: P[K] extends PathParam<infer T> ? T : never } : Record<never, never>;
  query: R extends { query: infer Q extends z.ZodType } ? z.output<Q> : undefined;
  body: R extends { body: infer B extends z.ZodType } ? z.output<B> : undefined;
  /** The Idempotency-Key the caller sent, well formed, on routes that read one. */
  idempotencyKey: R extends { idempotencyKey: string } ? string | undefined : undefined;
  /** Who is asking; none on the routes without a key. */
  caller: R extends { auth: 'none' } ? undefined : Caller;
};

export type RouteHandler<R> = (input: RouteInput<R>, res: Response, req: Request) => Promise<void> | void;

/** A handler for every route of `routes`, and nothing else. */
export type HandlersOf<Routes> = { [K in keyof Routes]: RouteHandler<Routes[K]> };

/** A handler for every route of the contract, and nothing else. */
export type RouteHandlers = HandlersOf<typeof ROUTES>;

function pathParamsOf(route: RouteContract): string[] {
  return [...route.path.matchAll(/:(\w+)/g)].map(([, name]) => name!);
}

/**
 * Reads the request as `route` declares it, in the order a caller is best told what is wrong:
 * the role, the path, the Idempotency-Key, the query, the body.
 */
function inputOf(route: RouteContract, req: Request, res: Response): Record<string, unknown> {
  let caller: Caller | undefined;
  if (route.auth !== 'none') {
    caller = callerOf(res);
    if (!route.auth.includes(caller.role)) {
      throw new HttpError('ROLE_NOT_ALLOWED', route.roleRefusal?.(caller.role) ?? `role '${caller.role}' may not do this (needs ${route.auth.join(' or ')})`);
    }
  }
  const params: Record<string, unknown> = {};
  for (const [name, param] of Object.entries(route.params ?? {})) {
    const given = String(req.params[name]);
    const parsed = param.schema.safeParse(given);
    if (!parsed.success) throw new HttpError(400, param.refusal(given));
    params[name] = parsed.data;
  }
  const idempotencyKey = route.idempotencyKey ? req.get('idempotency-key') : undefined;
  if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
    throw new HttpError('IDEMPOTENCY_KEY_INVALID', 'Idempotency-Key must be 1-200 visible ASCII characters');
  }
  let query;
  if (route.query) {
    const parsed = route.query.safeParse(req.query);
    if (!parsed.success) throw new HttpError(400, `invalid query: ${describeZodError(parsed.error)}`);
    query = parsed.data;
  }
  let body;
  if (route.body) {
    const given: unknown = route.document ? req.body : (req.body ?? {});
    const notAnObject = given === null || typeof given !== 'object' || Array.isArray(given);
    if (notAnObject && route.document?.notAnObject) throw new HttpError(400, route.document.notAnObject);
    const parsed = route.body.safeParse(given);
    if (!parsed.success) throw new HttpError(400, `invalid ${route.document?.name ?? 'request'}: ${describeZodError(parsed.error)}`);
    body = parsed.data;
  }
  return { params, query, body, idempotencyKey, caller };
}

/**
 * The router of `routes`, each answered by its handler once its input passed the contract.
 * `before`: middlewares a route runs ahead of everything else (the tenant-wide pause's control limit).
 */
export function routerOf(routes: readonly RouteName[], handlers: RouteHandlers, before: Partial<Record<RouteName, RequestHandler[]>> = {}): Router {
  const router = Router();
  for (const name of routes) {
    const route: RouteContract = ROUTES[name];
    const undeclared = pathParamsOf(route).filter((param) => !route.params?.[param]);
    if (undeclared.length) throw new Error(`route ${name} (${route.path}) declares no schema for :${undeclared.join(', :')}`);
    const handler = handlers[name] as RouteHandler<RouteContract>;
    router[route.method](route.path, ...(before[name] ?? []), async (req, res) => {
      await handler(inputOf(route, req, res) as RouteInput<RouteContract>, res, req);
    });
  }
  return router;
}

/** The routes a caller reaches without a key, and those that need one. */
export const PUBLIC_ROUTES = (Object.keys(ROUTES) as RouteName[]).filter((name) => ROUTES[name].auth === 'none');
export const TENANT_ROUTES = (Object.keys(ROUTES) as RouteName[]).filter((name) => ROUTES[name].auth !== 'none');
