import type { AuditAction } from '../core/audit';
import type { SagaPhase } from '../core/saga';
import type { DbOrTx } from '../db/client';
import { recordAck } from '../db/acks';

export interface CompensationInput {
  runId: string;
  reason: string;
  /** The saga phase whose write this compensation undoes. */
  undoesPhase: SagaPhase;
}

/**
 * The shared tail of every compensation: when the step had written something (`resultId`),
 * its row was marked rolled back in `tx`, and one ROLLED_BACK ack records it.
 */
export async function ackRollback(
  tx: DbOrTx,
  action: AuditAction,
  input: CompensationInput,
  resultId: string | undefined,
): Promise<{ undone: boolean }> {
  if (!resultId) return { undone: false };
  await recordAck(tx, {
    runId: input.runId,
    action,
    status: 'ROLLED_BACK',
    resultId,
    rollbackReason: input.reason,
    metadata: { rollbackPhase: input.undoesPhase, rollbackSuccess: true },
  });
  return { undone: true };
}
