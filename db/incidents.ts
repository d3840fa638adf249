import { and, eq, inArray, ne, sql } from 'drizzle-orm';
import type { OutboundEvent } from '../core/events';
import type { IncidentStatus } from '../core/incidents';
import type { Db, DbOrTx } from './client';
import { writeEvents } from './outbox';
import { incidents } from './schema';

/**
 * The incident lifecycle, one owner: open → acknowledged → resolved (or open → resolved). People
 * move incidents through the API, the audit reconciler resolves its own; every move is stamped
 * (who, when, note) and announced by an outbox event written in the same transaction.
 */

export type Incident = typeof incidents.$inferSelect;

export type IncidentRow = typeof incidents.$inferInsert;

/** Inserts once per (run, dedupe key); a replay returns the first row's id. */
export async function insertIncidentOnce(tx: DbOrTx, row: IncidentRow): Promise<{ id: string; inserted: boolean }> {
  const inserted = await tx.insert(incidents).values(row).onConflictDoNothing().returning({ id: incidents.id });
  if (inserted[0]) return { id: inserted[0].id, inserted: true };
  const [existing] = await tx
    .select({ id: incidents.id })
    .from(incidents)
    .where(and(eq(incidents.runId, row.runId), eq(incidents.dedupeKey, row.dedupeKey)));
  return { id: existing!.id, inserted: false };
}

export type IncidentAction = 'acknowledge' | 'resolve';

/** What a move does: apply it, nothing (already done, idempotent), or refuse it (conflict). */
export type IncidentMove = 'apply' | 'already' | 'conflict';

const MOVES: Readonly<Record<IncidentAction, Readonly<Record<IncidentStatus, IncidentMove>>>> = {
  // Acknowledging twice is a retry, not a mistake; acknowledging a closed incident is a mistake.
  acknowledge: { open: 'apply', acknowledged: 'already', resolved: 'conflict' },
  // Resolving twice is a retry too: answered with the incident as it is, whose resolvedBy and
  // resolvedAt name the first resolution (so two people closing it learn of each other), nothing written.
  resolve: { open: 'apply', acknowledged: 'apply', resolved: 'already' },
};

/** The lifecycle rule: what `action` does to an incident that is `status`. */
export function incidentMove(status: IncidentStatus, action: IncidentAction): IncidentMove {
  return MOVES[action][status];
}

export interface IncidentChange {
  incidentId: string;
  /** The caller's tenant: another tenant's incident is not found, exactly like a missing one. */
  tenantId: string;
  /** Who acts, e.g. `api-key:<id>` or `system`. */
  by: string;
  /** Replaces the stored note when given; the event carries it either way. */
  note?: string | null;
}

export type IncidentChangeResult =
  | { result: 'changed'; incident: Incident }
  /** The move was already made (acknowledging an acknowledged incident): nothing written. */
  | { result: 'unchanged'; incident: Incident }
  /** The move is illegal from the incident's current status (`incident.status`): nothing written. */
  | { result: 'conflict'; incident: Incident }
  | { result: 'not_found' };

const TOPIC = { acknowledge: 'incident.acknowledged', resolve: 'incident.resolved' } as const;
const DONE = { acknowledge: 'acknowledged', resolve: 'resolved' } as const;

function lifecycleEvent(incident: Incident, action: IncidentAction, by: string, note: string | null): OutboundEvent {
  return {
    topic: TOPIC[action],
    // One event per incident and move: a retried transaction never announces twice.
    dedupeKey: `${incident.id}:${DONE[action]}`,
    payload: { incidentId: incident.id, severity: incident.severity, kind: incident.kind, by, note },
  };
}

/** The columns a move stamps; `now()` is the transaction's time, one clock for every stamp. */
function stampsOf(action: IncidentAction, by: string, note: string | null) {
  const noted = note === null ? {} : { note };
  return action === 'acknowledge'
    ? { status: 'acknowledged' as const, acknowledgedAt: sql`now()`, acknowledgedBy: by, ...noted }
    : { status: 'resolved' as const, resolvedAt: sql`now()`, resolvedBy: by, ...noted };
}

async function changeIncident(db: Db, action: IncidentAction, change: IncidentChange): Promise<IncidentChangeResult> {
  const note = change.note ?? null;
  return db.transaction(async (tx) => {
    // The row lock serialises concurrent moves of one incident: the second sees the first's result.
    const [current] = await tx
      .select()
      .from(incidents)
      .where(and(eq(incidents.id, change.incidentId), eq(incidents.tenantId, change.tenantId)))
      .for('update');
    if (!current) return { result: 'not_found' };
    const move = incidentMove(current.status, action);
    if (move === 'conflict') return { result: 'conflict', incident: current };
    if (move === 'already') return { result: 'unchanged', incident: current };
    const [updated] = await tx.update(incidents).set(stampsOf(action, change.by, note)).where(eq(incidents.id, current.id)).returning();
    await writeEvents(tx, { runId: updated!.runId, tenantId: updated!.tenantId }, [lifecycleEvent(updated!, action, change.by, note)]);
    return { result: 'changed', incident: updated! };
  });
}

/** open → acknowledged, in one transaction with its `incident.acknowledged` event. */
export function acknowledgeIncident(db: Db, change: IncidentChange): Promise<IncidentChangeResult> {
  return changeIncident(db, 'acknowledge', change);
}

/** open | acknowledged → resolved, in one transaction with its `incident.resolved` event. */
export function resolveIncident(db: Db, change: IncidentChange): Promise<IncidentChangeResult> {
  return changeIncident(db, 'resolve', change);
}

/**
 * The reconciler's resolution of incidents whose cause is gone, in the caller's transaction:
 * resolved by 'system' with `reason` as the note, each with its `incident.resolved` event.
 * Incidents already resolved are left as they are. Not tenant-scoped: the caller owns the ids.
 * Returns the ids this call resolved.
 */
export async function resolveIncidentsBySystem(tx: DbOrTx, incidentIds: readonly string[], reason: string): Promise<string[]> {
  if (incidentIds.length === 0) return [];
  // The status condition is re-checked after waiting on a row another transaction holds, so an
  // incident resolved concurrently by a person is skipped here rather than resolved twice.
  const resolved = await tx
    .update(incidents)
    .set(stampsOf('resolve', 'system', reason))
    .where(and(inArray(incidents.id, [...incidentIds]), ne(incidents.status, 'resolved')))
    .returning();
  for (const incident of resolved) {
    await writeEvents(tx, { runId: incident.runId, tenantId: incident.tenantId }, [lifecycleEvent(incident, 'resolve', 'system', reason)]);
  }
  return resolved.map((i) => i.id);
}
