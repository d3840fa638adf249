/**
 * Compile-time checks, run by `tsc` in the test command: the router is built from the contract
 * (`api/contract.ts`), so a route without a handler, a handler without a route, or a handler that
 * reads what its route does not declare does not compile.
 */
import type { ResponseContract, ROUTES } from '../../api/contract';
import type { HandlersOf, RouteHandlers } from '../../api/router';

declare const handlers: RouteHandlers;

const { listRuns: _dropped, ...allButOne } = handlers;
// @ts-expect-error a route of the contract without its handler
export const routeWithoutHandler: RouteHandlers = allButOne;

export const handlerWithoutRoute: RouteHandlers = {
  ...handlers,
  // @ts-expect-error a handler no route of the contract names
  listRunsAgain: () => undefined,
};

type GrownTable = typeof ROUTES & { listWidgets: { method: 'get'; path: '/api/v1/widgets'; summary: string; auth: ['admin']; responses: Record<number, ResponseContract> } };
// @ts-expect-error a route added to the table is a handler the app must now give
export const tableGrewWithoutHandler: HandlersOf<GrownTable> = handlers;

/** Each handler gets its route's input as the contract's schemas produce it. */
export const typedInput = {
  getPush: ({ params }) => {
    const pushId: number = params.id;
    void pushId;
  },
  listRuns: ({ query }) => {
    const limit: number = query.limit;
    // @ts-expect-error the runs list reads no such query parameter
    void query.widget;
    void limit;
  },
  pauseRun: ({ body, idempotencyKey }) => {
    const reason: string | undefined = body.reason;
    const key: string | undefined = idempotencyKey;
    void [reason, key];
  },
  getRun: ({ body, caller }) => {
    // @ts-expect-error a GET has no body
    void body.reason;
    void caller.tenantId;
  },
  health: ({ caller }) => {
    // @ts-expect-error a route without a key has no caller
    void caller.tenantId;
  },
} satisfies Partial<RouteHandlers>;

