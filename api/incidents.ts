import { Router, type Response } from 'express';
import { and, desc, eq, inArray, ne, sql, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import { z } from 'zod';
import { INCIDENT_STATUSES } from '../core/incidents';
import { describeZodError } from '../core/plan';
import type { Db } from '../db/client';
import { acknowledgeIncident, resolveIncident, type Incident, type IncidentChange, type IncidentChangeResult } from '../db/incidents';
import { incidents } from '../db/schema';
import { callerOf, requireRole, type Caller } from './auth';
import { HttpError } from './errors';
import { decodeCursor, encodeCursor } from './paging';

/** Severities of real incidents: 'NONE' only marks a run's "no incident" record, which lists leave out. */
const LISTED_SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;

/**
 * One query parameter holding a comma-separated list (`severity=HIGH,CRITICAL`). A repeated
 * parameter arrives as an array and is refused, so a filter is never half-read.
 */
function commaSeparated<T extends readonly [string, ...string[]]>(name: string, values: T) {
  return z
    .string({ error: `give ${name} once, comma-separated (e.g. ${name}=${values.slice(0, 2).join(',')})` })
    .transform((value) => value.split(','))
    .pipe(z.array(z.enum(values)).min(1));
}

const listQuery = z
  .object({
    status: commaSeparated('status', INCIDENT_STATUSES).optional(),
    severity: commaSeparated('severity', LISTED_SEVERITIES).optional(),
    runId: z.uuid().optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict();

const changeBody = z.object({ note: z.string().min(1).max(2000).optional() }).strict();

/**
 * Keyset paging, newest first, over a (timestamp, id) pair. Postgres keeps microseconds but a
 * cursor (a JS Date) keeps milliseconds, so order and comparison both use the millisecond value:
 * comparing the raw column would skip rows stamped in the same millisecond as a page's last row.
 */
function toMilliseconds(at: PgColumn): SQL {
  return sql`date_trunc('milliseconds', ${at})`;
}

export function newestFirst(at: PgColumn, id: PgColumn): SQL[] {
  return [desc(toMilliseconds(at)), desc(id)];
}

/** Rows after the cursor's row in `newestFirst` order. */
export function olderThanCursor(at: PgColumn, id: PgColumn, cursor: string): SQL {
  const after = decodeCursor(cursor);
  return sql`(${toMilliseconds(at)}, ${id}) < (${after.at.toISOString()}::timestamptz, ${after.id}::uuid)`;
}

/** One page of rows fetched with `limit + 1`, and the cursor of the next page when there is one. */
export function pageOf<T>(rows: T[], limit: number, keyOf: (row: T) => { at: Date; id: string }): { page: T[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { page, nextCursor: rows.length > limit && last ? encodeCursor(keyOf(last).at, keyOf(last).id) : null };
}

export function parseQuery<T extends z.ZodType>(schema: T, query: unknown): z.infer<T> {
  const parsed = schema.safeParse(query);
  if (!parsed.success) throw new HttpError(400, `invalid query: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

/** Who the API records as acting: the same form the policy and run-control routes use. */
export function actorOf(caller: Caller): string {
  return `api-key:${caller.apiKeyId}`;
}

function parseIncidentId(value: unknown): string {
  const parsed = z.uuid().safeParse(value);
  if (!parsed.success) throw new HttpError(400, 'incident id must be a UUID');
  return parsed.data;
}

/** What callers see: the tenant is theirs and the dedupe key is the writer's business. */
function present({ tenantId: _tenant, dedupeKey: _key, ...incident }: Incident) {
  return incident;
}

function answer(res: Response, incidentId: string, outcome: IncidentChangeResult): void {
  switch (outcome.result) {
    case 'not_found':
      throw new HttpError(404, `incident ${incidentId} not found`);
    case 'conflict':
      throw new HttpError(409, `incident ${incidentId} is already ${outcome.incident.status}`, { status: outcome.incident.status });
    default:
      res.json(present(outcome.incident));
  }
}

/** The caller's tenant's incidents: read by any role, acknowledged and resolved by admins and members. */
export function incidentRoutes(deps: { db: Db }): Router {
  const router = Router();

  /** Newest first; leaves out the "no incident" records of runs that completed cleanly. */
  router.get('/incidents', async (req, res) => {
    const { status, severity, runId, limit, cursor } = parseQuery(listQuery, req.query);
    const filters: (SQL | undefined)[] = [eq(incidents.tenantId, callerOf(res).tenantId), ne(incidents.kind, 'none')];
    if (status) filters.push(inArray(incidents.status, status));
    if (severity) filters.push(inArray(incidents.severity, severity));
    if (runId) filters.push(eq(incidents.runId, runId));
    if (cursor) filters.push(olderThanCursor(incidents.createdAt, incidents.id, cursor));
    const rows = await deps.db
      .select()
      .from(incidents)
      .where(and(...filters))
      .orderBy(...newestFirst(incidents.createdAt, incidents.id))
      .limit(limit + 1);
    const { page, nextCursor } = pageOf(rows, limit, (row) => ({ at: row.createdAt, id: row.id }));
    res.json({ incidents: page.map(present), nextCursor });
  });

  router.get('/incidents/:id', async (req, res) => {
    const id = parseIncidentId(req.params.id);
    const [incident] = await deps.db
      .select()
      .from(incidents)
      .where(and(eq(incidents.id, id), eq(incidents.tenantId, callerOf(res).tenantId)));
    // Another tenant's incident answers exactly like a missing one.
    if (!incident) throw new HttpError(404, `incident ${id} not found`);
    res.json(present(incident));
  });

  const moves: [string, (db: Db, change: IncidentChange) => Promise<IncidentChangeResult>][] = [
    ['acknowledge', acknowledgeIncident],
    ['resolve', resolveIncident],
  ];
  for (const [action, move] of moves) {
    router.post(`/incidents/:id/${action}`, requireRole('admin', 'member'), async (req, res) => {
      const id = parseIncidentId(req.params.id);
      const body = changeBody.safeParse(req.body ?? {});
      if (!body.success) throw new HttpError(400, `invalid request: ${describeZodError(body.error)}`);
      const caller = callerOf(res);
      const outcome = await move(deps.db, { incidentId: id, tenantId: caller.tenantId, by: actorOf(caller), note: body.data.note });
      answer(res, id, outcome);
    });
  }

  return router;
}
