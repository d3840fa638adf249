import type { CarriedMoves } from '../core/contracts';
import { eq } from 'drizzle-orm';
import { CREATE_LOG_RECORD } from '../core/audit';
import { runLogs } from '../db/schema';
import { recordAck } from '../db/acks';
import type { ActivityDeps } from './deps';
import { recordMoves } from '../db/runs';
import { countMoves } from './runs';

export function createLogActivities({ db, metrics }: ActivityDeps) {
  /** The run's log record: what ran, what it cost and how it ended. */
  async function createRunLog(
    input: CarriedMoves & {
      runId: string;
      tenantId: string;
      status: string;
      record: Record<string, unknown>;
    },
  ): Promise<{ logId: string }> {
    const { logId, made } = await db.transaction(async (tx) => {
      const made = await recordMoves(tx, input.transitions);
      const inserted = await tx
        .insert(runLogs)
        .values({ runId: input.runId, tenantId: input.tenantId, status: input.status, record: input.record })
        .onConflictDoNothing()
        .returning({ id: runLogs.id });
      const id = inserted[0]?.id ?? (await tx.select({ id: runLogs.id }).from(runLogs).where(eq(runLogs.runId, input.runId)))[0]!.id;
      await recordAck(tx, { runId: input.runId, action: CREATE_LOG_RECORD, status: 'OK', resultId: id });
      metrics.domainWrites.inc({ domain: 'logs', action: 'create_log_record', result: inserted.length ? 'inserted' : 'existing' });
      return { logId: id, made };
    });
    countMoves(metrics, made);
    return { logId };
  }

  return { createRunLog };
}
