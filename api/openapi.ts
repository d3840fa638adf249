import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiPathsObject, type ZodOpenApiResponseObject } from 'zod-openapi';
import { API_ROUTES, errorResponsesOf, IDEMPOTENCY_KEY, problemSchema, type PathParam, type RouteContract } from './contract';
import { PROBLEM_CONTENT_TYPE } from './problems';

/**
 * A path parameter as a client writes it. The contract's own schema reads the segment's text
 * (`z.coerce`), which the document would show as any number.
 */
const PATH_PARAM_SCHEMAS: Record<PathParam['type'], z.ZodType> = {
  uuid: z.uuid(),
  // Without the safe-integer bound zod writes into every integer: each route's refusal says its own range.
  integer: z
    .int()
    .min(0)
    .meta({
      override: ({ jsonSchema }) => {
        delete jsonSchema.maximum;
      },
    }),
};

function requestParams(route: RouteContract): ZodOpenApiOperationObject['requestParams'] {
  const path = Object.fromEntries([...route.path.matchAll(/:(\w+)/g)].map(([, name]) => [name!, PATH_PARAM_SCHEMAS[route.params![name!]!.type]]));
  // `required: false` said outright: without a key the API picks one (and answers it).
  const idempotencyKey = z.string().regex(IDEMPOTENCY_KEY).optional().meta({ param: { description: route.idempotencyKey, required: false } });
  return {
    path: z.object(path),
    ...(route.query ? { query: route.query } : {}),
    ...(route.idempotencyKey ? { header: z.object({ 'Idempotency-Key': idempotencyKey }) } : {}),
  };
}

function responses(route: RouteContract): Record<string, ZodOpenApiResponseObject> {
  const answers: Record<string, ZodOpenApiResponseObject> = {};
  const errors = errorResponsesOf(route);
  for (const [status, { description, headers, schema, contentType }] of Object.entries(route.responses)) {
    if (errors.has(Number(status))) continue;
    const body = schema ?? (contentType ? z.string() : undefined);
    answers[status] = { description, headers, ...(body ? { content: { [contentType ?? 'application/json']: { schema: body } } } : {}) };
  }
  // Each error status with the codes this route may answer with it: `Problem` and, beside it, `code` narrowed to them.
  for (const [status, { description, headers, schema }] of errors) {
    answers[String(status)] = { description, headers, content: { [PROBLEM_CONTENT_TYPE]: { schema } } };
  }
  return answers;
}

function operation(route: RouteContract): ZodOpenApiOperationObject {
  return {
    summary: route.summary,
    operationId: `${route.method}${route.path.replace(/\/:?(\w)/g, (_m, c: string) => c.toUpperCase()).replace(/[^A-Za-z0-9]/g, '')}`,
    security: route.auth === 'none' ? [] : [{ apiKey: [] }],
    ...(route.auth === 'none' ? {} : { 'x-roles': route.auth }),
    requestParams: requestParams(route),
    ...(route.body ? { requestBody: { required: false, content: { 'application/json': { schema: route.body } } } } : {}),
    responses: responses(route),
  };
}

/** The OpenAPI 3.1 document of the HTTP API, rendered from `API_ROUTES` (request schemas as a client sends them, responses as the API answers). */
export function openApiDocument() {
  const paths: ZodOpenApiPathsObject = {};
  for (const route of API_ROUTES) (paths[route.path.replace(/:(\w+)/g, '{$1}')] ??= {})[route.method] = operation(route);
  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Governed LLM runs',
      version: '1',
      description:
        'Submit, watch and govern LLM runs. Every key belongs to one tenant and has a role (admin, member, viewer); ' +
        'each operation lists the roles it accepts in x-roles. Every 4xx and 5xx is a Problem Details document (RFC 9457, ' +
        '`application/problem+json`) with `type`, `title`, `status`, `detail`, a stable `code` to branch on (each operation lists the codes it may answer), ' +
        'and `error`, the same sentence as `detail`.',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <api key>' } },
      // Registered by its schema: every problem refers to it.
      schemas: { Problem: problemSchema },
    },
    paths,
  });
}
