import { errorBody, routeFor } from '../../api/contract';

/**
 * Throws when a response does not match the API contract (`api/contract.ts`, published as
 * OpenAPI): a success body against its route's schema, any 4xx/5xx against the error shape.
 */
export function expectContractResponse(method: string, path: string, status: number, body: unknown): void {
  const route = routeFor(method, path);
  if (!route) return;
  if (status >= 400 && !route.responses[status]) {
    const parsed = errorBody.safeParse(body);
    if (!parsed.success) throw new Error(`${method} ${path} answered ${status} without the error shape: ${JSON.stringify(body).slice(0, 300)}`);
    return;
  }
  const declared = route.responses[status];
  if (!declared) throw new Error(`${method} ${path} answered ${status}, which the contract does not declare (${Object.keys(route.responses).join(', ')})`);
  if (!declared.schema) return;
  const parsed = declared.schema.safeParse(body);
  if (!parsed.success) {
    throw new Error(`${method} ${path} ${status} does not match the contract: ${parsed.error.message}\nbody: ${JSON.stringify(body).slice(0, 500)}`);
  }
}
