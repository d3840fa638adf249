/**
 * Every 4xx and 5xx the API answers is a Problem Details document (RFC 9457), served as
 * `application/problem+json`: `type`, `title`, `status`, `detail`, and `code`, a stable name a
 * client can branch on (two 409s of different causes have different codes). `error` repeats
 * `detail` for the clients written before, and whatever else the problem carries (`limit`,
 * `retryAfterSeconds`, `runId`, ...) sits beside them. This file is the one list of codes.
 */

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Where a problem's `type` lives: this base and the code in kebab case (`RUN_NOT_FOUND` → `.../run-not-found`). */
export const PROBLEM_TYPE_BASE = 'https://governed.dev/problems/';

interface ProblemKind {
  status: number;
  /** The same for every occurrence of the code: what went wrong, in general. `detail` says what, this time. */
  title: string;
}

export const PROBLEMS = {
  // 400: the request itself
  VALIDATION_FAILED: { status: 400, title: 'The request does not satisfy the schema: a body, query, path parameter or text is invalid' },
  MALFORMED_JSON: { status: 400, title: 'The body is not valid JSON' },
  MALFORMED_REQUEST: { status: 400, title: 'The request could not be read (its path encoding, or a body that could not be decoded)' },
  IDEMPOTENCY_KEY_INVALID: { status: 400, title: 'The Idempotency-Key header is not 1-200 visible ASCII characters' },
  BAD_REQUEST: { status: 400, title: 'The request was refused' },
  // Answered by the HTTP server itself, before any route (`api/server.ts`): the connection is closed
  REQUEST_TIMEOUT: { status: 408, title: 'The request did not arrive whole in time' },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  // 401, 403: who is asking
  API_KEY_MISSING: { status: 401, title: 'No API key was sent' },
  API_KEY_INVALID: { status: 401, title: 'The API key is invalid or revoked' },
  ROLE_NOT_ALLOWED: { status: 403, title: "The key's role may not do this" },
  PAUSE_REASON_NOT_ALLOWED: { status: 403, title: 'The key may not set a pause only others may lift' },
  FORBIDDEN: { status: 403, title: 'Not allowed' },
  // 404: what is asked about (another tenant's resource answers exactly like a missing one)
  RUN_NOT_FOUND: { status: 404, title: 'No such run' },
  STEP_NOT_FOUND: { status: 404, title: 'The run has no such step' },
  OUTPUT_NOT_READY: { status: 404, title: 'The step has no output yet' },
  INCIDENT_NOT_FOUND: { status: 404, title: 'No such incident' },
  PROPOSAL_NOT_FOUND: { status: 404, title: 'No such policy proposal' },
  REPORT_NOT_FOUND: { status: 404, title: 'No stale-run report has been written yet' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  // 410: it was here
  RUN_PRUNED: { status: 410, title: "The run was removed by its tenant's retention; only its tombstone is left" },
  // 409: the resource is in a state that refuses this
  RUN_ALREADY_FINISHED: { status: 409, title: 'The run has already ended' },
  RUN_NOT_LIVE: { status: 409, title: 'The run has no live workflow' },
  RUN_NOT_FINISHED: { status: 409, title: 'The run has not ended yet' },
  SIGNAL_LIMIT_REACHED: { status: 409, title: "The run has received Temporal's maximum number of signals" },
  RUN_NOT_PAUSED: { status: 409, title: 'The run is not paused' },
  RESUME_NOT_ALLOWED: { status: 409, title: "The key may not lift this run's pause" },
  APPROVAL_MISMATCH: { status: 409, title: "The approval does not quote the pending tool call's hash" },
  NOT_AWAITING_APPROVAL: { status: 409, title: 'The run is not waiting on a tool approval' },
  CONTROL_REFUSED: { status: 409, title: 'The run refused the request' },
  INCIDENT_RESOLVED: { status: 409, title: 'The incident is already resolved' },
  PROPOSAL_DECIDED: { status: 409, title: 'The policy proposal was already accepted or dismissed' },
  PROPOSAL_ALREADY_APPLIED: { status: 409, title: 'The current policy already says what the proposal proposes' },
  CONFLICT: { status: 409, title: 'The resource is not in a state that allows this' },
  // 413, 415, 422: the body
  BODY_TOO_LARGE: { status: 413, title: 'The body is over the limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The body is not JSON, or its encoding or charset is not supported' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'The Idempotency-Key was already used with a different body' },
  // 429, 5xx: try again
  RATE_LIMITED: { status: 429, title: 'A rate limit was reached; retry after Retry-After seconds' },
  INTERNAL_ERROR: { status: 500, title: 'Internal error' },
  SERVICE_UNAVAILABLE: { status: 503, title: 'A dependency (Postgres or Temporal) is unavailable; retry after Retry-After seconds' },
} as const satisfies Record<string, ProblemKind>;

export type ProblemCode = keyof typeof PROBLEMS;
export const PROBLEM_CODES = Object.keys(PROBLEMS) as [ProblemCode, ...ProblemCode[]];

/** The code an error raised with a bare status gets: the general one of its status. */
export function generalCode(status: number): ProblemCode {
  switch (status) {
    case 400:
      return 'VALIDATION_FAILED';
    case 401:
      return 'API_KEY_INVALID';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'CONFLICT';
    case 413:
      return 'BODY_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 429:
      return 'RATE_LIMITED';
    case 503:
      return 'SERVICE_UNAVAILABLE';
    default:
      return status >= 500 ? 'INTERNAL_ERROR' : 'BAD_REQUEST';
  }
}

export function problemType(code: ProblemCode): string {
  return `${PROBLEM_TYPE_BASE}${code.toLowerCase().replaceAll('_', '-')}`;
}

/** The members RFC 9457 and this API define; a problem's own fields may not replace them. */
const RESERVED = new Set(['type', 'title', 'status', 'detail', 'instance', 'code', 'error']);

/** The body of a problem answer. `status` is the HTTP status sent, which is the code's own unless a framework error says otherwise. */
export function problemBody(code: ProblemCode, detail: string, extra: Record<string, unknown> = {}, status: number = PROBLEMS[code].status) {
  const own = Object.fromEntries(Object.entries(extra).filter(([key]) => !RESERVED.has(key)));
  return { type: problemType(code), title: PROBLEMS[code].title, status, detail, code, error: detail, ...own };
}
