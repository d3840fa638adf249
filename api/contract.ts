import { z } from 'zod';
import type { oas31 } from 'zod-openapi';
import { SUBMITTING_ROLES, submitRefusal, type ApiRole } from '../core/authorization';
import { alertSettingsSchema } from '../core/alerts';
import { submitRunBody } from '../core/plan';
import { policyRules } from '../core/policy';
import {
  acceptBody,
  alertListQuery,
  approvalBody,
  approvalsQuery,
  controlBody,
  costsQuery,
  dismissBody,
  findingsQuery,
  incidentChangeBody,
  incidentListQuery,
  lessonsQuery,
  outputQuery,
  patternsQuery,
  proposalsQuery,
  pushListQuery,
  reportsQuery,
  retentionSettingsSchema,
  runListQuery,
  tenantPauseBody,
  tenantResumeBody,
} from './inputs';
import { PROBLEM_CODES, PROBLEMS, PROBLEM_TYPE_BASE, type ProblemCode } from './problems';

/**
 * The HTTP contract: every route with who may call it, what it reads and what it answers. The
 * router is built from it (`api/router.ts`): each route's roles, path parameters, query, body and
 * Idempotency-Key are checked there before its handler runs, and a handler is typed by its entry.
 * Response schemas name the fields clients rely on and let others through. `openapi.ts` renders
 * this as OpenAPI 3.1, and the test suite checks that real responses match.
 */

const isoTime = z.string().describe('ISO 8601 date-time');
const nullableTime = isoTime.nullable();
const id = z.uuid();
const page = <T extends z.ZodType>(key: string, item: T) => z.looseObject({ [key]: z.array(item), nextCursor: z.string().nullable() });

/** Every 4xx and 5xx: a Problem Details document (RFC 9457), `application/problem+json` (`api/problems.ts`). */
export const problemSchema = z.looseObject({
  type: z.string().describe(`the problem type: ${PROBLEM_TYPE_BASE}<code in kebab case>`),
  title: z.string().describe("the problem type's summary, the same for every occurrence of the code"),
  status: z.number().int().min(400).max(599).describe('the HTTP status'),
  detail: z.string().describe('why this request was refused, for a person to read'),
  code: z.enum(PROBLEM_CODES).describe('a stable name for the problem, to branch on'),
  error: z.string().describe('the same as `detail`, kept for clients written before problem details'),
});

const lesson = z.looseObject({
  id,
  runId: id,
  kind: z.enum(['failure', 'near_miss']),
  code: z.string(),
  phase: z.string().nullable(),
  stepIndex: z.number().int().nullable(),
  skill: z.string().nullable(),
  tool: z.string().nullable(),
  policyRule: z.string().nullable(),
  spendUsd: z.number().nullable(),
  patternKey: z.string(),
  observations: z.array(z.looseObject({ code: z.string() })),
  rolledBack: z.boolean(),
  createdAt: isoTime,
});

const proposal = z.looseObject({
  id,
  kind: z.string(),
  patternKey: z.string(),
  reason: z.string(),
  changes: z.array(z.looseObject({ op: z.enum(['add', 'remove', 'set']), path: z.string() })),
  basedOnVersion: z.number().int(),
  status: z.enum(['open', 'accepted', 'dismissed']),
  acceptedVersion: z.number().int().nullable(),
  createdAt: isoTime,
});

const runSummary = z.looseObject({
  runId: id,
  phase: z.string(),
  status: z.string(),
  costUsd: z.number(),
  stepsCompleted: z.number().int(),
  authorizationDecision: z.enum(['ALLOWED', 'DENIED']),
  errorCode: z.string().nullable(),
  createdAt: isoTime,
  finishedAt: nullableTime,
});

const runRecord = z.looseObject({
  id,
  tenantId: id,
  phase: z.string(),
  status: z.string(),
  plan: z.array(z.looseObject({ skill: z.string() })),
  budgetUsd: z.number(),
  costUsd: z.number(),
  stepsCompleted: z.number().int(),
  policyVersion: z.number().int(),
  pauseReason: z.string().nullable(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  createdAt: isoTime,
  finishedAt: nullableTime,
});

const liveState = z.looseObject({
  runId: id,
  phase: z.string(),
  status: z.string(),
  totalSteps: z.number().int(),
  stepsCompleted: z.number().int(),
  costUsd: z.number(),
  budgetUsd: z.number(),
  pause: z
    .looseObject({ reason: z.string(), expiresAt: isoTime, resumableBy: z.array(z.string()).describe('who may lift the pause, in words (an admin key, the service operator, ...)') })
    .nullable()
    .optional(),
});

const stepOutput = z.looseObject({
  stepIndex: z.number().int(),
  name: z.string().nullable(),
  skill: z.string().nullable(),
  contentType: z.enum(['text/plain', 'application/json']),
  sha256: z.string(),
  bytes: z.number().int(),
  content: z.string(),
});

const incident = z.looseObject({
  id,
  runId: id.nullable(),
  kind: z.string(),
  severity: z.string(),
  status: z.string(),
  errorCode: z.string().nullable(),
  message: z.string().nullable(),
  createdAt: isoTime,
});

const policy = z.looseObject({ version: z.number().int(), rules: z.looseObject({}) });
const skippedRuns = z
  .array(z.looseObject({ runId: id, reason: z.string() }))
  .describe("runs that refused the signal for good (at Temporal's signal limit, or failing while the push reached others): the push went on without them");
/** How far a push got; every answer about one carries them. */
const pushCounts = {
  pushId: z.number().int().describe('the push: GET /api/v1/tenant/pushes/{pushId} says how far it got'),
  totalRuns: z.number().int().nullable().describe('the live runs it targets, taken when its delivery began; null before'),
  reachedRuns: z.number().int().describe('runs it is done with so far: signalled, finished meanwhile, or skipped'),
  signalledRuns: z.number().int(),
};
const push = z.union([
  z.looseObject({ push: z.literal('pushed'), ...pushCounts, skippedRuns: skippedRuns.optional() }),
  z
    .looseObject({ push: z.literal('delivering'), ...pushCounts, progress: z.string(), note: z.string() })
    .describe('part of the runs were signalled within the request; the dispatcher signals the rest at once'),
  z.looseObject({ push: z.literal('queued'), ...pushCounts, progress: z.string(), note: z.string() }),
]);
const pushProgress = z.looseObject({
  ...pushCounts,
  kind: z.string(),
  state: z.enum(['pushed', 'delivering', 'waiting']),
  createdAt: isoTime,
  skippedCount: z.number().int(),
  attempts: z.number().int(),
  nextAttemptAt: nullableTime,
  pushedAt: nullableTime,
  lastError: z.string().nullable(),
});

const auditReport = z.looseObject({
  verdict: z.string(),
  missing: z.array(z.unknown()),
  drift: z.array(z.unknown()),
  invalid: z.array(z.unknown()),
  phantom: z.array(z.unknown()),
  lastReconciliation: z.looseObject({ at: isoTime, verdict: z.string().nullable() }).nullable(),
  recordedFindings: z.array(z.unknown()),
});

const staleReport = z.looseObject({ id: z.number().int(), generatedAt: isoTime, staleCount: z.number().int(), runs: z.array(z.looseObject({ runId: id })) });

/** What every control answers about itself: the id the run acts on once, and the key that repeats it safely. */
const controlIds = {
  requestId: z.string().describe('the id the run acts on once; a retry with the same Idempotency-Key has the same one'),
  idempotencyKey: z.string().describe("the caller's Idempotency-Key, or the one the API chose when none was sent: send it again to retry safely"),
};

/** What any authenticated route may answer 429 for: its key's requests per minute, or failed API key lookups. */
const AUTH_LIMITS = ['requests_per_key', 'failed_auth_per_address', 'failed_auth_per_key'] as const;
/** The control limits, and those: what a control's 429 may name. */
const CONTROL_LIMITS = ['per_key', 'per_run', ...AUTH_LIMITS] as const;

const retryAfter: Record<string, HeaderContract> = { 'Retry-After': { description: 'seconds until the request may succeed', schema: { type: 'integer', minimum: 1 } } };

/** A control's 429: its per-key limit (and, for a run's controls, its per-run limit) or the failed-key limits. */
const controlRateLimited: ResponseContract = {
  description:
    "a rate limit was reached: a control limit (per API key, or per run), the key's requests per minute, or too many failed API key lookups from this address or with this key; retry after Retry-After seconds",
  schema: z.looseObject({ limit: z.enum(CONTROL_LIMITS), retryAfterSeconds: z.number().int().positive() }),
};

const CONTROL_IDEMPOTENCY =
  'names this control so a retry is safe: the run acts on it once (1-200 visible ASCII characters; without one the API picks one and answers it)';

/** What an Idempotency-Key must be, as everywhere a client names a request: 1-200 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

export type Auth = 'none' | readonly ApiRole[];
const ANY_ROLE = ['admin', 'member', 'viewer'] as const satisfies Auth;
const OPERATORS = ['admin', 'member'] as const satisfies Auth;
const ADMIN = ['admin'] as const satisfies Auth;

/** A path parameter: what it must be, and the refusal naming it when it is not. */
export interface PathParam<T = unknown> {
  /** As OpenAPI shows it. */
  type: 'uuid' | 'integer';
  schema: z.ZodType<T>;
  refusal: (given: string) => string;
}

const uuidParam = (what: string): PathParam<string> => ({ type: 'uuid', schema: z.uuid(), refusal: () => `${what} must be a UUID` });
const RUN_ID = { id: uuidParam('run id') };
const INCIDENT_ID = { id: uuidParam('incident id') };
const PROPOSAL_ID = { id: uuidParam('proposal id') };
const PUSH_ID = {
  id: {
    type: 'integer',
    schema: z.coerce.number().refine(Number.isSafeInteger).pipe(z.number().min(1)),
    refusal: (given) => `push id must be a positive whole number, not '${given}'`,
  } satisfies PathParam<number>,
};
const STEP_INDEX = {
  type: 'integer',
  schema: z.coerce.number().int().min(0).max(100_000),
  refusal: () => 'step index must be a whole number from 0 (the first step)',
} satisfies PathParam<number>;

export interface RouteContract {
  method: 'get' | 'post' | 'put';
  /** Express-style, `:param` for path parameters. */
  path: string;
  summary: string;
  auth: Auth;
  /** Why a role outside `auth` is refused, where the route says more than that the role may not. */
  roleRefusal?: (role: ApiRole) => string | null;
  /** Every `:param` of `path`. */
  params?: Record<string, PathParam>;
  /** Read from the query string: an object of parameters, each one documented as such. */
  query?: z.ZodType<unknown, Record<string, unknown>>;
  body?: z.ZodType;
  /**
   * Set when the body is a whole document (a run, a policy, settings) rather than options: it must
   * be sent, and a refusal names it (`invalid policy: ...`). Options may be left out (read as `{}`).
   */
  document?: {
    name: string;
    /** The refusal of a body that is not a JSON object at all, where the route words it its own way. */
    notAnObject?: string;
  };
  /** When the route reads an `Idempotency-Key` header: what it does with it. */
  idempotencyKey?: string;
  /**
   * The problem codes the route may answer beyond those of every authenticated route
   * (`COMMON_PROBLEMS`; and ROLE_NOT_ALLOWED, implied by `auth`). Their statuses are its error statuses.
   */
  errors?: readonly ProblemCode[];
  /**
   * Success responses; for an error status, what the route says about it (its own description, or
   * fields a problem of that status carries beside the standard ones, like a 429's `limit`).
   */
  responses: Record<number, ResponseContract>;
}

/** A header an answer carries, as OpenAPI states it. */
export interface HeaderContract extends oas31.HeaderObject {
  description: string;
  /** JSON Schema of the value. */
  schema: oas31.SchemaObject;
}

export interface ResponseContract {
  description: string;
  schema?: z.ZodType;
  contentType?: string;
  /** Headers the answer carries, with what each says. */
  headers?: Record<string, HeaderContract>;
}

/**
 * What any authenticated route may answer, whatever it does: the door (a key, the failed-key
 * limits), the body parser and the input guard (any request may carry a body), and an outage.
 */
export const COMMON_PROBLEMS: readonly ProblemCode[] = [
  'VALIDATION_FAILED',
  'MALFORMED_JSON',
  'MALFORMED_REQUEST',
  'API_KEY_MISSING',
  'API_KEY_INVALID',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'RATE_LIMITED',
  'SERVICE_UNAVAILABLE',
];

/** Every error status an answer of the API may have but a 500, with what each means in general (by code: `problemCodesOf`). */
export const ERROR_STATUSES: Record<number, string> = Object.fromEntries(
  Object.values(PROBLEMS)
    .filter(({ status }) => status !== 500)
    .map(({ status }) => [
      status,
      Object.values(PROBLEMS)
        .filter((p) => p.status === status)
        .map((p) => p.title)
        .join('; '),
    ]),
);

/** What the run may refuse a resume, an approval or a denial for (`api/control-refusals.ts`). */
const UPDATE_REFUSALS: readonly ProblemCode[] = ['RUN_NOT_PAUSED', 'RESUME_NOT_ALLOWED', 'APPROVAL_MISMATCH', 'NOT_AWAITING_APPROVAL', 'CONTROL_REFUSED'];
/** What every control of one run may answer beyond the common problems. */
const RUN_CONTROL_PROBLEMS: readonly ProblemCode[] = ['IDEMPOTENCY_KEY_INVALID', 'RUN_NOT_FOUND', 'RUN_ALREADY_FINISHED', 'RUN_NOT_LIVE'];

const EXTRA_FIELDS: Partial<Record<number, z.ZodType>> = {
  429: z.looseObject({ limit: z.enum(AUTH_LIMITS), retryAfterSeconds: z.number().int().positive() }),
  503: z.looseObject({ retryAfterSeconds: z.number().int().positive() }),
};

/** The problem codes `route` may answer. */
export function problemCodesOf(route: RouteContract): ProblemCode[] {
  if (route.auth === 'none') return [...(route.errors ?? [])];
  const roleLimited = route.auth.length < ANY_ROLE.length;
  return [...new Set([...COMMON_PROBLEMS, ...(roleLimited ? (['ROLE_NOT_ALLOWED'] as const) : []), ...(route.errors ?? [])])];
}

export interface ErrorResponse {
  description: string;
  codes: ProblemCode[];
  /** The problem (`problemSchema`) and what this status says beyond it: `code` narrowed to `codes`, and its own fields. */
  schema: z.ZodType;
  headers?: Record<string, HeaderContract>;
}

/** Each error status `route` may answer, with the codes it may carry and the shape it has. */
export function errorResponsesOf(route: RouteContract): Map<number, ErrorResponse> {
  const byStatus = new Map<number, ProblemCode[]>();
  for (const code of problemCodesOf(route)) {
    const status = PROBLEMS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const answers = new Map<number, ErrorResponse>();
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    const declared = route.responses[status];
    const extra = (declared?.schema as z.ZodObject | undefined) ?? (EXTRA_FIELDS[status] as z.ZodObject | undefined);
    answers.set(status, {
      description: declared?.description ?? codes.map((code) => `${code}: ${PROBLEMS[code].title}`).join('; '),
      codes,
      // An intersection rather than one extended object: the document shows it as the shared `Problem` and this route's part.
      schema: z.intersection(problemSchema, z.looseObject({ code: z.enum(codes as [ProblemCode, ...ProblemCode[]]), ...extra?.shape })),
      headers: status === 429 || status === 503 ? retryAfter : undefined,
    });
  }
  return answers;
}

function runSignal(action: 'pause' | 'stop') {
  return {
    method: 'post',
    path: `/api/v1/runs/:id/${action}`,
    summary:
      action === 'pause'
        ? 'Pause the run before its next step (a key may only use a reason its role may resume); a pause of a paused run, or one repeated within seconds, sends no signal'
        : 'Stop the run before its next step, or at once if paused; a stop repeated within seconds sends no signal',
    auth: OPERATORS,
    params: RUN_ID,
    body: controlBody,
    idempotencyKey: CONTROL_IDEMPOTENCY,
    errors: [...RUN_CONTROL_PROBLEMS, 'SIGNAL_LIMIT_REACHED', ...(action === 'pause' ? (['PAUSE_REASON_NOT_ALLOWED'] as const) : [])],
    responses: {
      200: {
        description:
          action === 'pause'
            ? 'no signal sent: the run is already paused (`already_paused`), or a pause was sent to it within the last seconds (`coalesced`)'
            : 'no signal sent: a stop was sent to the run within the last seconds (`already_stopping`)',
        schema: z.looseObject({
          runId: id,
          requested: z.literal(action),
          outcome: action === 'pause' ? z.enum(['already_paused', 'coalesced']) : z.literal('already_stopping'),
          ...controlIds,
          note: z.string(),
        }),
      },
      202: { description: 'signalled', schema: z.looseObject({ runId: id, requested: z.literal(action), outcome: z.literal('signalled'), ...controlIds, note: z.string() }) },
      409: { description: "the run ended, has no live workflow, or has received Temporal's maximum number of signals (the reason names history.maximumSignalsPerExecution)" },
      429: controlRateLimited,
    },
  } satisfies RouteContract;
}

function toolDecision(decision: 'approve' | 'deny') {
  return {
    method: 'post',
    path: `/api/v1/runs/:id/${decision}`,
    summary:
      decision === 'approve'
        ? 'Approve the tool call the run waits on (a TOOL_APPROVAL pause), quoting the hash of the arguments you were shown'
        : 'Deny the tool call the run waits on: the model is told (or the run fails, under a FAIL_RUN tool policy)',
    auth: OPERATORS,
    params: RUN_ID,
    body: approvalBody,
    idempotencyKey: `${CONTROL_IDEMPOTENCY}; it is also the Temporal update id, so a retried ${decision} counts once and never decides a later call`,
    errors: [...RUN_CONTROL_PROBLEMS, ...UPDATE_REFUSALS],
    responses: {
      200: { description: `the ${decision === 'approve' ? 'approval' : 'denial'} is recorded; the run state after it`, schema: z.looseObject({ runId: id, ...controlIds, resumed: z.literal(true), state: liveState }) },
      202: {
        description: 'accepted, the new state not back within 2 s (`resumed: true`), or Temporal did not answer in time (`resumed: "unknown"`, see the note)',
        schema: z.looseObject({ runId: id, ...controlIds, resumed: z.union([z.literal(true), z.literal('unknown')]), note: z.string() }),
      },
      409: { description: 'the run is not waiting on a tool approval, the hash is not the pending call\'s (the arguments changed, or another call waits), or the key may not approve' },
      429: controlRateLimited,
    },
  } satisfies RouteContract;
}

function tenantStatus(action: 'suspend' | 'activate') {
  return {
    method: 'post',
    path: `/api/v1/tenant/${action}`,
    summary: action === 'suspend' ? 'Suspend the tenant: live runs terminate at their next check' : 'Activate the tenant again',
    auth: ADMIN,
    responses: { 200: { description: 'done', schema: z.intersection(z.looseObject({ tenantId: id, status: z.enum(['active', 'suspended']) }), push) } },
  } satisfies RouteContract;
}

function incidentMove(action: 'acknowledge' | 'resolve') {
  return {
    method: 'post',
    path: `/api/v1/incidents/:id/${action}`,
    summary:
      action === 'acknowledge'
        ? 'Acknowledge an open incident; acknowledging it again changes nothing'
        : 'Resolve an incident; resolving it again changes nothing (the answer names who resolved it, and when)',
    auth: OPERATORS,
    params: INCIDENT_ID,
    body: incidentChangeBody,
    errors: action === 'acknowledge' ? ['INCIDENT_NOT_FOUND', 'INCIDENT_RESOLVED'] : ['INCIDENT_NOT_FOUND'],
    responses: {
      200: { description: 'the incident as it is now', schema: incident },
      ...(action === 'acknowledge' ? { 409: { description: 'the incident is already resolved (`incidentStatus`)', schema: z.looseObject({ incidentStatus: z.string() }) } } : {}),
    } as Record<number, ResponseContract>,
  } satisfies RouteContract;
}

/** Every route by its name, which its handler is known by (`RouteHandlers`, `api/router.ts`). */
export const ROUTES = {
  health: {
    method: 'get',
    path: '/healthz',
    summary: 'Health of Postgres, Redis, Temporal, the audit loop and the reactors (answers within a second)',
    auth: 'none',
    responses: {
      200: { description: 'everything is healthy', schema: z.looseObject({ status: z.literal('ok') }) },
      503: { description: 'something is degraded; each check says what', schema: z.looseObject({ status: z.literal('degraded') }) },
    },
  },
  metrics: {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics of the API process',
    auth: 'none',
    responses: { 200: { description: 'Prometheus text exposition', contentType: 'text/plain' } },
  },
  openApi: {
    method: 'get',
    path: '/api/v1/openapi.json',
    summary: 'This document',
    auth: 'none',
    responses: { 200: { description: 'OpenAPI 3.1', schema: z.looseObject({ openapi: z.string() }) } },
  },
  submitRun: {
    method: 'post',
    path: '/api/v1/runs',
    summary: 'Submit a run: recorded with its audit contract, then started (or queued for the starter)',
    auth: SUBMITTING_ROLES,
    // Before the body is read: a viewer's submit is no run, denied or otherwise, and writes nothing.
    roleRefusal: submitRefusal,
    body: submitRunBody,
    document: { name: 'run', notAnObject: 'request body must be a JSON object with a "plan"' },
    idempotencyKey: 'a retry with the same key and body returns the same run (1-200 visible ASCII characters)',
    errors: ['IDEMPOTENCY_KEY_INVALID', 'IDEMPOTENCY_KEY_REUSED'],
    responses: {
      202: {
        description: 'accepted (a policy refusal is recorded as DENIED and ends FAILED; a viewer key gets 403 and nothing is recorded)',
        schema: z.looseObject({ runId: id, authorizationDecision: z.enum(['ALLOWED', 'DENIED']), workflow: z.enum(['started', 'queued']) }),
        headers: {
          Location: { description: 'the run: GET it for its state', schema: { type: 'string', format: 'uri-reference' } },
          'Idempotent-Replayed': {
            description: '`true` when an earlier request with the same Idempotency-Key created the run (this answer repeats its), `false` when this request did',
            schema: { type: 'string', enum: ['true', 'false'] },
          },
        },
      },
      422: { description: 'the Idempotency-Key was already used with another body (`runId` names the run it made)', schema: z.looseObject({ runId: id }) },
    },
  },
  listRuns: {
    method: 'get',
    path: '/api/v1/runs',
    summary: "The tenant's runs, newest first",
    auth: ANY_ROLE,
    query: runListQuery,
    responses: { 200: { description: 'a page of runs', schema: page('runs', runSummary) } },
  },
  getRun: {
    method: 'get',
    path: '/api/v1/runs/:id',
    summary: 'One run: its record, live state, trace, incidents, evaluations, log and acks',
    auth: ANY_ROLE,
    params: RUN_ID,
    errors: ['RUN_NOT_FOUND', 'RUN_PRUNED'],
    responses: {
      200: {
        description: 'the run',
        schema: z.looseObject({
          run: runRecord,
          live: liveState.nullable(),
          trace: z.looseObject({ status: z.string(), steps: z.array(z.looseObject({ stepIndex: z.number().int() })) }).nullable(),
          incidents: z.array(incident),
          policyEvaluations: z.array(z.looseObject({ kind: z.string(), decision: z.string() })),
          log: z.looseObject({}).nullable(),
          acks: z.array(z.looseObject({ domain: z.string(), action: z.string(), status: z.string() })),
          controls: z
            .array(
              z.looseObject({
                id,
                kind: z.string(),
                accepted: z.boolean(),
                actor: z.string().nullable(),
                authority: z.string().nullable().describe('in words (an admin key, the service operator, ...)'),
                detail: z.string().nullable(),
                createdAt: isoTime,
              }),
            )
            .describe('the latest 20 controls of the run, newest first: pauses, resumes, stops and those the run refused, with why'),
        }),
      },
    },
  },
  pauseRun: runSignal('pause'),
  stopRun: runSignal('stop'),
  resumeRun: {
    method: 'post',
    path: '/api/v1/runs/:id/resume',
    summary: 'Resume a paused run (a Temporal update: refused at once with 409 when it cannot be resumed); never a 5xx once Temporal may have accepted it',
    auth: OPERATORS,
    params: RUN_ID,
    body: controlBody,
    idempotencyKey: `${CONTROL_IDEMPOTENCY}; it is also the Temporal update id, so a retried resume cannot approve twice`,
    errors: [...RUN_CONTROL_PROBLEMS, ...UPDATE_REFUSALS],
    responses: {
      200: { description: 'resumed; the run state after it recorded the resume', schema: z.looseObject({ runId: id, ...controlIds, resumed: z.literal(true), state: liveState }) },
      202: {
        description:
          '`resumed: true`: the update was accepted and the new state was not back within 2 s. `resumed: "unknown"`: Temporal did not answer in time ' +
          'after the update was sent, so it may or may not have been accepted; the note says how to learn the outcome, and a retry with the same Idempotency-Key cannot resume twice',
        schema: z.union([
          z.looseObject({ runId: id, ...controlIds, resumed: z.literal(true), note: z.string() }),
          z.looseObject({ runId: id, ...controlIds, resumed: z.literal('unknown'), note: z.string() }),
        ]),
      },
      409: { description: 'the run is not paused, the caller may not lift its pause (the reason says why), it ended, or it has no live workflow' },
      429: controlRateLimited,
    },
  },
  runOutput: {
    method: 'get',
    path: '/api/v1/runs/:id/output',
    summary: "The run's work: each completed step's whole output (text or JSON, with its sha256 and size), and the run's output once it COMPLETED",
    auth: ANY_ROLE,
    params: RUN_ID,
    query: outputQuery,
    errors: ['RUN_NOT_FOUND'],
    responses: {
      200: {
        description: 'the outputs stored so far',
        schema: z.looseObject({ runId: id, phase: z.string(), complete: z.boolean(), output: stepOutput.nullable(), steps: z.array(stepOutput) }),
      },
    },
  },
  stepOutput: {
    method: 'get',
    path: '/api/v1/runs/:id/steps/:stepIndex/output',
    summary: "One step's whole output (`stepIndex` from 0); `?raw=1` answers the content alone, with its own content type and a Digest header",
    auth: ANY_ROLE,
    params: { ...RUN_ID, stepIndex: STEP_INDEX },
    query: outputQuery,
    errors: ['RUN_NOT_FOUND', 'STEP_NOT_FOUND', 'OUTPUT_NOT_READY'],
    responses: {
      200: {
        description: 'the step output (JSON), or with `raw=1` the content itself',
        schema: z.union([z.string(), stepOutput.extend({ runId: id })]),
        headers: { Digest: { description: 'with `raw=1`: `sha-256=<base64>` of the content', schema: { type: 'string' } } },
      },
      404: { description: 'no such run or step, or the step has not completed' },
    },
  },
  approveCall: toolDecision('approve'),
  denyCall: toolDecision('deny'),
  listApprovals: {
    method: 'get',
    path: '/api/v1/approvals',
    summary: "The tenant's tool approvals (pending by default): the tool, the exact arguments, the hash an approval quotes, and who decided",
    auth: ANY_ROLE,
    query: approvalsQuery,
    responses: {
      200: {
        description: 'approvals, newest first',
        schema: z.looseObject({
          approvals: z.array(z.looseObject({ runId: id, status: z.string(), tool: z.string(), arguments: z.string().nullable(), argsSha256: z.string(), requestedAt: isoTime })),
        }),
      },
    },
  },
  runAudit: {
    method: 'get',
    path: '/api/v1/runs/:id/audit',
    summary: "The run's audit, computed now with the reconciler's rules, beside what the last pass stored",
    auth: ANY_ROLE,
    params: RUN_ID,
    errors: ['RUN_NOT_FOUND', 'RUN_PRUNED'],
    responses: { 200: { description: 'the audit report', schema: auditReport } },
  },
  runEvidence: {
    method: 'get',
    path: '/api/v1/runs/:id/evidence',
    summary:
      "The run's tamper-evident evidence as JSONL: a header, then each record the audit contract covers with its link in the run's chain, then its tenant link; `governed evidence verify` checks it offline",
    auth: ANY_ROLE,
    params: RUN_ID,
    errors: ['RUN_NOT_FOUND', 'RUN_NOT_FINISHED'],
    responses: {
      200: { description: 'one JSON object a line (README, "Evidence")', contentType: 'application/jsonl' },
      409: { description: 'the run has not ended: its evidence is exported once it has' },
    },
  },
  auditFindings: {
    method: 'get',
    path: '/api/v1/audit/findings',
    summary: 'Open audit findings of the tenant, newest first',
    auth: ANY_ROLE,
    query: findingsQuery,
    responses: { 200: { description: 'a page of findings', schema: page('findings', z.looseObject({ id, runId: id, check: z.string(), severity: z.string() })) } },
  },
  staleRunReports: {
    method: 'get',
    path: '/api/v1/reports/stale-runs',
    summary: "The latest stale-run report (or the last `limit`), with only the tenant's runs",
    auth: ANY_ROLE,
    query: reportsQuery,
    errors: ['REPORT_NOT_FOUND'],
    responses: { 200: { description: 'one report, or `{ reports: [...] }` when `limit` is given', schema: z.union([staleReport, z.looseObject({ reports: z.array(staleReport) })]) } },
  },
  getPolicy: {
    method: 'get',
    path: '/api/v1/policies',
    summary: "The tenant's current policy",
    auth: ADMIN,
    responses: { 200: { description: 'the current version', schema: policy } },
  },
  putPolicy: {
    method: 'put',
    path: '/api/v1/policies',
    summary: 'Replace the policy: a new version, committed with its push to every live run; the current policy again changes nothing',
    auth: ADMIN,
    body: policyRules,
    document: { name: 'policy' },
    responses: {
      200: {
        description: 'the new version and whether live runs were told yet (`changed: true`), or, when the policy sent is the current one, that version (`changed: false`: no new version, nothing pushed)',
        schema: z.union([z.intersection(policy.extend({ changed: z.literal(true) }), push), policy.extend({ changed: z.literal(false) })]),
      },
    },
  },
  suspendTenant: tenantStatus('suspend'),
  activateTenant: tenantStatus('activate'),
  pauseTenant: {
    method: 'post',
    path: '/api/v1/tenant/pause',
    summary: 'Pause every live run of the tenant (MANUAL_PAUSE, tagged tenant-pause)',
    auth: ADMIN,
    body: tenantPauseBody,
    errors: ['NOT_FOUND'],
    responses: {
      202: { description: 'committed; pushed, delivering (how many runs were reached so far) or queued', schema: z.intersection(z.looseObject({ tenantId: id, requested: z.literal('pause') }), push) },
      404: { description: '`incidentId` names no incident of the tenant' },
      429: controlRateLimited,
    },
  },
  resumeTenant: {
    method: 'post',
    path: '/api/v1/tenant/resume',
    summary: 'Resume the runs the tenant-wide pause paused',
    auth: ADMIN,
    body: tenantResumeBody,
    responses: {
      202: { description: 'committed; pushed, delivering (how many runs were reached so far) or queued', schema: z.intersection(z.looseObject({ tenantId: id, requested: z.literal('resume') }), push) },
      429: controlRateLimited,
    },
  },
  listPushes: {
    method: 'get',
    path: '/api/v1/tenant/pushes',
    summary: "The tenant's latest changes on their way to its live runs (pushes), newest first",
    auth: ADMIN,
    query: pushListQuery,
    responses: { 200: { description: 'the latest pushes and how far each got', schema: z.looseObject({ pushes: z.array(pushProgress) }) } },
  },
  getPush: {
    method: 'get',
    path: '/api/v1/tenant/pushes/:id',
    summary: 'How far one push got: its runs reached, signalled and skipped',
    auth: ADMIN,
    params: PUSH_ID,
    errors: ['NOT_FOUND'],
    responses: { 200: { description: 'the push and the runs it skipped', schema: pushProgress.extend({ skippedRuns }) } },
  },
  listIncidents: {
    method: 'get',
    path: '/api/v1/incidents',
    summary: "The tenant's incidents, newest first",
    auth: ANY_ROLE,
    query: incidentListQuery,
    responses: { 200: { description: 'a page of incidents', schema: page('incidents', incident) } },
  },
  getIncident: {
    method: 'get',
    path: '/api/v1/incidents/:id',
    summary: 'One incident',
    auth: ANY_ROLE,
    params: INCIDENT_ID,
    errors: ['INCIDENT_NOT_FOUND'],
    responses: { 200: { description: 'the incident', schema: incident } },
  },
  acknowledgeIncident: incidentMove('acknowledge'),
  resolveIncident: incidentMove('resolve'),
  costs: {
    method: 'get',
    path: '/api/v1/costs',
    summary: "The tenant's spend from the cost rollups, by model, skill, submitting key, tool, hour or day; CSV with format=csv or Accept: text/csv",
    auth: ANY_ROLE,
    query: costsQuery,
    responses: {
      200: {
        description: 'the rows, dearest first within each period, and the total (as text/csv: a header line, then the rows)',
        schema: z.looseObject({
          from: isoTime,
          to: isoTime,
          groupBy: z.array(z.string()),
          rows: z.array(z.looseObject({ costUsd: z.number(), tokensIn: z.number(), tokensOut: z.number(), calls: z.number() })),
          total: z.looseObject({ costUsd: z.number(), tokensIn: z.number(), tokensOut: z.number(), calls: z.number() }),
        }),
      },
    },
  },
  listLessons: {
    method: 'get',
    path: '/api/v1/lessons',
    summary: "What the tenant's failed and near-miss runs taught, one lesson per run, newest first",
    auth: ANY_ROLE,
    query: lessonsQuery,
    responses: { 200: { description: 'a page of lessons', schema: page('lessons', lesson) } },
  },
  lessonPatterns: {
    method: 'get',
    path: '/api/v1/lessons/patterns',
    summary: 'The lessons grouped by pattern (the same code at the same tool, or step and skill), most frequent first',
    auth: ANY_ROLE,
    query: patternsQuery,
    responses: {
      200: {
        description: 'the patterns with their count, first and last seen',
        schema: z.looseObject({ patterns: z.array(z.looseObject({ patternKey: z.string(), code: z.string(), count: z.number().int(), firstSeen: isoTime, lastSeen: isoTime })) }),
      },
    },
  },
  listProposals: {
    method: 'get',
    path: '/api/v1/lessons/proposals',
    summary: 'Policy changes the patterns propose, each with the diff accepting it would make to the current policy',
    auth: ADMIN,
    query: proposalsQuery,
    responses: {
      200: {
        description: 'the proposals, newest first',
        schema: z.looseObject({ proposals: z.array(proposal.extend({ currentVersion: z.number().int(), diffText: z.string(), applicable: z.boolean() })) }),
      },
    },
  },
  acceptProposal: {
    method: 'post',
    path: '/api/v1/lessons/proposals/:id/accept',
    summary: 'Accept a proposal: the next policy version, committed with its push to every live run',
    auth: ADMIN,
    params: PROPOSAL_ID,
    body: acceptBody,
    errors: ['PROPOSAL_NOT_FOUND', 'PROPOSAL_DECIDED', 'PROPOSAL_ALREADY_APPLIED'],
    responses: {
      200: {
        description: 'the accepted proposal, the new policy version, its diff and whether live runs were told yet',
        schema: z.intersection(z.looseObject({ proposal, policy: z.looseObject({ version: z.number().int() }) }), push),
      },
      404: { description: 'no such proposal of the tenant' },
      409: { description: 'the proposal was decided already (`proposalStatus`), or the current policy already says what it proposes', schema: z.looseObject({ proposalStatus: z.string().optional() }) },
    },
  },
  dismissProposal: {
    method: 'post',
    path: '/api/v1/lessons/proposals/:id/dismiss',
    summary: 'Dismiss a proposal: the policy stays as it is, and the pattern does not propose the same change again',
    auth: ADMIN,
    params: PROPOSAL_ID,
    body: dismissBody,
    errors: ['PROPOSAL_NOT_FOUND', 'PROPOSAL_DECIDED'],
    responses: {
      200: { description: 'the dismissed proposal', schema: z.looseObject({ proposal }) },
      404: { description: 'no such proposal of the tenant' },
      409: { description: 'the proposal was decided already (`proposalStatus`)', schema: z.looseObject({ proposalStatus: z.string() }) },
    },
  },
  listAlerts: {
    method: 'get',
    path: '/api/v1/alerts',
    summary: 'Alerts the reactor decided on, sent or suppressed with the reason, newest first',
    auth: ANY_ROLE,
    query: alertListQuery,
    responses: { 200: { description: 'a page of alerts', schema: page('alerts', z.looseObject({ id, status: z.string() })) } },
  },
  getAlertSettings: {
    method: 'get',
    path: '/api/v1/alert-settings',
    summary: "The tenant's alert fatigue settings",
    auth: ADMIN,
    responses: { 200: { description: 'the settings', schema: alertSettingsSchema } },
  },
  putAlertSettings: {
    method: 'put',
    path: '/api/v1/alert-settings',
    summary: 'Replace the alert fatigue settings',
    auth: ADMIN,
    body: alertSettingsSchema,
    document: { name: 'alert settings' },
    responses: { 200: { description: 'the settings now stored', schema: alertSettingsSchema } },
  },
  getRetention: {
    method: 'get',
    path: '/api/v1/tenant/retention',
    summary: "How long the tenant's runs, outbox rows, control pushes and alerts are kept, and whether runs are exported first",
    auth: ADMIN,
    responses: { 200: { description: 'the settings (the defaults when never set)', schema: retentionSettingsSchema } },
  },
  putRetention: {
    method: 'put',
    path: '/api/v1/tenant/retention',
    summary: 'Replace the retention settings; the next retention pass applies them',
    auth: ADMIN,
    body: retentionSettingsSchema,
    document: { name: 'retention settings' },
    responses: { 200: { description: 'the settings now stored', schema: retentionSettingsSchema } },
  },
} satisfies Record<string, RouteContract>;

export type RouteName = keyof typeof ROUTES;

/** The routes in the order they are documented (and matched). */
export const API_ROUTES: readonly RouteContract[] = Object.values(ROUTES);

/** The contract of the route that answers `method path`, matching `:param` segments; undefined when none. */
export function routeFor(method: string, path: string): RouteContract | undefined {
  const segments = path.split('?')[0]!.split('/');
  return API_ROUTES.find((route) => {
    if (route.method !== method.toLowerCase()) return false;
    const pattern = route.path.split('/');
    // As express matches: a parameter is never an empty segment (`/runs//audit` is no route).
    return pattern.length === segments.length && pattern.every((p, i) => (p.startsWith(':') ? segments[i] !== '' : p === segments[i]));
  });
}
