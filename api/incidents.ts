import { Router, type Response } from 'express';
import { and, eq, inArray, ne, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { INCIDENT_STATUSES } from '../core/incidents';
import { describeZodError } from '../core/plan';
import type { Db } from '../db/client';
import { acknowledgeIncident, resolveIncident, type Incident, type IncidentChange, type IncidentChangeResult } from '../db/incidents';
import { incidents } from '../db/schema';
import { actorOf, callerOf, requireRole } from './auth';
import { HttpError } from './errors';
import { cursorTime, newestFirst, olderThanCursor, pageOf, parseId, parseQuery } from './paging';

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

export const listQuery = z
  .object({
    status: commaSeparated('status', INCIDENT_STATUSES).optional(),
    severity: commaSeparated('severity', LISTED_SEVERITIES).optional(),
    runId: z.uuid().optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict();

export const changeBody = z.object({ note: z.string().min(1).max(2000).optional() }).strict();

function parseIncidentId(value: unknown): string {
  return parseId(value, 'incident id');
}

/** What callers see: the tenant is theirs and the dedupe key is the writer's business. */
function present({ tenantId: _tenant, dedupeKey: _key, ...incident }: Incident) {
  return incident;
}

function answer(res: Response, incidentId: string, outcome: IncidentChangeResult): void {
  switch (outcome.result) {
    case 'not_found':
      throw new HttpError('INCIDENT_NOT_FOUND', `incident ${incidentId} not found`);
    case 'conflict':
      // `status` is the HTTP status in a problem: the incident's is `incidentStatus`.
      throw new HttpError('INCIDENT_RESOLVED', `incident ${incidentId} is already ${outcome.incident.status}`, { incidentStatus: outcome.incident.status });
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
      .select({ incident: incidents, cursorAt: cursorTime(incidents.createdAt) })
      .from(incidents)
      .where(and(...filters))
      .orderBy(...newestFirst(incidents.createdAt, incidents.id))
      .limit(limit + 1);
    const { page, nextCursor } = pageOf(rows, limit, (row) => row.incident.id);
    res.json({ incidents: page.map((row) => present(row.incident)), nextCursor });
  });

  router.get('/incidents/:id', async (req, res) => {
    const id = parseIncidentId(req.params.id);
    const [incident] = await deps.db
      .select()
      .from(incidents)
      .where(and(eq(incidents.id, id), eq(incidents.tenantId, callerOf(res).tenantId)));
    // Another tenant's incident answers exactly like a missing one.
    if (!incident) throw new HttpError('INCIDENT_NOT_FOUND', `incident ${id} not found`);
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
