import { z } from 'zod';
import { API_ROUTES, errorResponsesOf, problemSchema, type HeaderContract, type RouteContract } from './contract';
import { PROBLEM_CONTENT_TYPE } from './problems';

type JsonSchema = Record<string, unknown>;

/** Request schemas as a client sends them (before coercion and defaults). */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

function parameters(route: RouteContract): JsonSchema[] {
  const path = [...route.path.matchAll(/:(\w+)/g)].map(([, name]) => ({
    name,
    in: 'path',
    required: true,
    schema: route.params?.[name!]?.type === 'integer' ? { type: 'integer', minimum: 0 } : { type: 'string', format: 'uuid' },
  }));
  const query = route.query ? jsonSchema(route.query, 'input') : null;
  const properties = (query?.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((query?.required as string[] | undefined) ?? []);
  const headers = route.idempotencyKey
    ? [{ name: 'Idempotency-Key', in: 'header', required: false, description: route.idempotencyKey, schema: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7e]+$' } }]
    : [];
  return [...path, ...Object.entries(properties).map(([name, schema]) => ({ name, in: 'query', required: required.has(name), schema })), ...headers];
}

function headersOf(headers: Record<string, HeaderContract> | undefined): JsonSchema {
  return headers ? { headers: Object.fromEntries(Object.entries(headers).map(([name, { description, schema }]) => [name, { description, schema }])) } : {};
}

function operation(route: RouteContract): JsonSchema {
  const responses: Record<string, JsonSchema> = {};
  const errors = errorResponsesOf(route);
  for (const [status, response] of Object.entries(route.responses)) {
    if (errors.has(Number(status))) continue;
    responses[status] = {
      description: response.description,
      ...headersOf(response.headers),
      ...(response.schema
        ? { content: { [response.contentType ?? 'application/json']: { schema: jsonSchema(response.schema, 'output') } } }
        : response.contentType
          ? { content: { [response.contentType]: { schema: { type: 'string' } } } }
          : {}),
    };
  }
  // Each error status with the codes this route may answer with it: the problem, `code` narrowed to them.
  for (const [status, error] of errors) {
    const own = error.extra ? jsonSchema(error.extra, 'output') : null;
    responses[String(status)] = {
      description: error.description,
      ...headersOf(error.headers),
      content: {
        [PROBLEM_CONTENT_TYPE]: {
          schema: {
            allOf: [
              { $ref: '#/components/schemas/Problem' },
              { type: 'object', properties: { code: { enum: error.codes }, ...(own?.properties as JsonSchema | undefined) }, ...(own?.required ? { required: own.required } : {}) },
            ],
          },
        },
      },
    };
  }
  return {
    summary: route.summary,
    operationId: `${route.method}${route.path.replace(/\/:?(\w)/g, (_m, c: string) => c.toUpperCase()).replace(/[^A-Za-z0-9]/g, '')}`,
    security: route.auth === 'none' ? [] : [{ apiKey: [] }],
    ...(route.auth === 'none' ? {} : { 'x-roles': route.auth }),
    parameters: parameters(route),
    ...(route.body ? { requestBody: { required: false, content: { 'application/json': { schema: jsonSchema(route.body, 'input') } } } } : {}),
    responses,
  };
}

/** The OpenAPI 3.1 document of the HTTP API, rendered from `API_ROUTES`. */
export function openApiDocument(): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const route of API_ROUTES) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    (paths[path] ??= {})[route.method] = operation(route);
  }
  return {
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
      schemas: { Problem: jsonSchema(problemSchema, 'output') },
    },
    paths,
  };
}
