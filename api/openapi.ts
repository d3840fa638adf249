import { z } from 'zod';
import { API_ROUTES, ERROR_STATUSES, errorBody, type RouteContract } from './contract';

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
    schema: { type: 'string', format: 'uuid' },
  }));
  const query = route.query ? jsonSchema(route.query, 'input') : null;
  const properties = (query?.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((query?.required as string[] | undefined) ?? []);
  const headers = route.idempotencyKey
    ? [{ name: 'Idempotency-Key', in: 'header', required: false, description: route.idempotencyKey, schema: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7e]+$' } }]
    : [];
  return [...path, ...Object.entries(properties).map(([name, schema]) => ({ name, in: 'query', required: required.has(name), schema })), ...headers];
}

function operation(route: RouteContract): JsonSchema {
  const responses: Record<string, JsonSchema> = {};
  for (const [status, response] of Object.entries(route.responses)) {
    responses[status] = {
      description: response.description,
      ...(response.headers
        ? { headers: Object.fromEntries(Object.entries(response.headers).map(([name, description]) => [name, { schema: { type: 'integer' }, description }])) }
        : {}),
      ...(response.schema
        ? { content: { [response.contentType ?? 'application/json']: { schema: jsonSchema(response.schema, 'output') } } }
        : response.contentType
          ? { content: { [response.contentType]: { schema: { type: 'string' } } } }
          : {}),
    };
  }
  const errors = route.auth === 'none' ? [400, 503] : Object.keys(ERROR_STATUSES).map(Number);
  for (const status of errors) {
    responses[String(status)] ??= { $ref: `#/components/responses/Error${status}` };
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
        'each operation lists the roles it accepts in x-roles. Errors are `{"error": "..."}` with a reason.',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <api key>' } },
      schemas: { Error: jsonSchema(errorBody, 'output') },
      responses: Object.fromEntries(
        Object.entries(ERROR_STATUSES).map(([status, description]) => [
          `Error${status}`,
          {
            description,
            ...(status === '503' || status === '429' ? { headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'seconds' } } } : {}),
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
          },
        ]),
      ),
    },
    paths,
  };
}
