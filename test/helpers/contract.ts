import { errorResponsesOf, routeFor } from '../../api/contract';
import { PROBLEM_CONTENT_TYPE } from '../../api/problems';

/**
 * Throws when a response does not match the API contract (`api/contract.ts`, published as
 * OpenAPI): a success body against its route's schema; a 4xx/5xx must be one of the error statuses
 * the route declares, a problem (`application/problem+json`, when `contentType` is given) whose
 * `status` is the one sent and whose `code` is one the route declares for that status.
 */
export function expectContractResponse(method: string, path: string, status: number, body: unknown, contentType?: string | null): void {
  const route = routeFor(method, path);
  if (!route) return;
  const error = status >= 400 ? errorResponsesOf(route).get(status) : undefined;
  if (error) {
    if (contentType !== undefined && !contentType?.startsWith(PROBLEM_CONTENT_TYPE)) {
      throw new Error(`${method} ${path} answered ${status} as ${contentType}, not ${PROBLEM_CONTENT_TYPE}`);
    }
    const parsed = error.schema.safeParse(body);
    if (!parsed.success) {
      throw new Error(`${method} ${path} answered ${status} without the problem its contract declares (codes ${error.codes.join(', ')}): ${parsed.error.message}\nbody: ${JSON.stringify(body).slice(0, 500)}`);
    }
    if ((body as { status: number }).status !== status) throw new Error(`${method} ${path} answered ${status} with a problem whose status is ${(body as { status: number }).status}`);
    return;
  }
  const declared = route.responses[status];
  if (!declared) {
    const declaredStatuses = [...Object.keys(route.responses), ...errorResponsesOf(route).keys()];
    throw new Error(`${method} ${path} answered ${status}, which the contract does not declare (${[...new Set(declaredStatuses.map(String))].join(', ')}): ${JSON.stringify(body).slice(0, 300)}`);
  }
  if (!declared.schema) return;
  const parsed = declared.schema.safeParse(body);
  if (!parsed.success) {
    throw new Error(`${method} ${path} ${status} does not match the contract: ${parsed.error.message}\nbody: ${JSON.stringify(body).slice(0, 500)}`);
  }
}
