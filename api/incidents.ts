import type { Response } from 'express';
import { and, eq, inArray, ne, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client';
import { acknowledgeIncident, resolveIncident, type Incident, type IncidentChange, type IncidentChangeResult } from '../db/incidents';
import { incidents } from '../db/schema';
import { actorOf, type Caller } from './auth';
import { HttpError } from './errors';
import { cursorTime, newestFirst, olderThanCursor, pageOf } from './paging';
import type { RouteHandlers } from './router';

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
export function incidentHandlers(deps: { db: Db }) {
  async function move(change: (db: Db, change: IncidentChange) => Promise<IncidentChangeResult>, caller: Caller, id: string, note: string | undefined, res: Response) {
    const outcome = await change(deps.db, { incidentId: id, tenantId: caller.tenantId, by: actorOf(caller), note });
    answer(res, id, outcome);
  }

  return {
  /** Newest first  ; leaves out the "no incident" records of runs that completed cleanly. */
    listIncidents: async ({ caller, query: { status, severity, runId, limit, cursor } }, res) => {
      const filters: (SQL | undefined)[] = [eq(incidents.tenantId, caller.tenantId), ne(incidents.kind, 'none')];
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
    },

    getIncident: async ({ caller, params: { id } }, res) => {
      const [incident] = await deps.db
        .select()
        .from(incidents)
        .where(and(eq(incidents.id, id), eq(incidents.tenantId, caller.tenantId)));
      // Another tenant's incident answers exactly like a missing one.
      if (!incident) throw new HttpError('INCIDENT_NOT_FOUND', `incident ${id} not found`);
      res.json(present(incident));
    },

    acknowledgeIncident: ({ caller, params: { id }, body }, res) => move(acknowledgeIncident, caller, id, body.note, res),
    resolveIncident: ({ caller, params: { id }, body }, res) => move(resolveIncident, caller, id, body.note, res),
  } satisfies Partial<RouteHandlers>;
}
