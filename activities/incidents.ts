import { and, eq } from 'drizzle-orm';
import { CREATE_INCIDENT } from '../core/audit';
import { FAILURE_SEVERITY, type RunOutcome } from '../core/outcome';
import type { DbOrTx } from '../db/client';
import { incidents } from '../db/schema';
import { recordAck } from './audit';
import { ackRollback, type CompensationInput } from './compensation';
import type { ActivityDeps } from './deps';

type IncidentRow = typeof incidents.$inferInsert;

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

export function createIncidentActivities({ db, metrics }: ActivityDeps) {
  /** The incident domain's record of a run's outcome: a failure incident or an explicit "none". */
  async function createIncident(input: { runId: string; tenantId: string; outcome: RunOutcome }): Promise<{ incidentId: string }> {
    const { outcome } = input;
    const row: IncidentRow =
      outcome.kind === 'succeeded'
        ? {
            runId: input.runId,
            tenantId: input.tenantId,
            dedupeKey: 'outcome',
            kind: 'none',
            severity: 'NONE',
            message: 'run completed without incident',
            // A record that nothing happened has nothing to work on.
            status: 'resolved',
            resolvedAt: new Date(),
            resolvedBy: 'system',
          }
        : {
            runId: input.runId,
            tenantId: input.tenantId,
            dedupeKey: 'outcome',
            kind: 'failure',
            severity: FAILURE_SEVERITY[outcome.code],
            errorCode: outcome.code,
            message: outcome.message,
          };
    return db.transaction(async (tx) => {
      const { id, inserted } = await insertIncidentOnce(tx, row);
      await recordAck(tx, { runId: input.runId, action: CREATE_INCIDENT, status: 'OK', resultId: id });
      metrics.domainWrites.inc({ domain: 'incidents', action: 'create_incident', result: inserted ? 'inserted' : 'existing' });
      return { incidentId: id };
    });
  }

  async function rollbackIncident(input: CompensationInput): Promise<{ undone: boolean }> {
    return db.transaction(async (tx) => {
      const [row] = await tx
        .update(incidents)
        .set({ rolledBack: true })
        .where(and(eq(incidents.runId, input.runId), eq(incidents.dedupeKey, 'outcome')))
        .returning({ id: incidents.id });
      return ackRollback(tx, CREATE_INCIDENT, input, row?.id);
    });
  }

  return { createIncident, rollbackIncident };
}
