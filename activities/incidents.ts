import { and, eq } from 'drizzle-orm';
import { CREATE_INCIDENT } from '../core/audit';
import { FAILURE_SEVERITY, type RunOutcome } from '../core/outcome';
import { insertIncidentOnce, type IncidentRow } from '../db/incidents';
import { incidents } from '../db/schema';
import { recordAck } from '../db/acks';
import { declareLessonOwed } from '../db/audit';
import { nearMissFacts } from '../db/lessons';
import { owesLesson } from '../core/lessons';
import { ackRollback, type CompensationInput } from './compensation';
import type { ActivityDeps } from './deps';

/** What the incident step recorded, and (for a run that records lessons) whether its contract owes a lesson. */
export interface RecordedIncident {
  incidentId: string;
  owesLesson?: boolean;
}

export function createIncidentActivities({ db, metrics }: ActivityDeps) {
  /**
   * The incident domain's record of a run's outcome: a failure incident or an explicit "none".
   * `lessons`: the run records lessons (its saga has the lesson step). Then the outcome recorded
   * here, with the run's near misses, says whether the run owes one; its contract says so, and so
   * does the answer (`owesLesson`), from which the saga decides whether to run the lesson step.
   */
  async function createIncident(input: { runId: string; tenantId: string; outcome: RunOutcome; lessons?: boolean }): Promise<RecordedIncident> {
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
      if (!input.lessons) return { incidentId: id };
      const owes = owesLesson(outcome, await nearMissFacts(tx, input.runId));
      if (owes) await declareLessonOwed(tx, input.runId);
      return { incidentId: id, owesLesson: owes };
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
