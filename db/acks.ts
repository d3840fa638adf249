import { and, eq } from 'drizzle-orm';
import { FINALIZE_RUN, type AckStatus, type AuditAction } from '../core/audit';
import { markRunFinalized } from './audit';
import type { DbOrTx } from './client';
import { domainAcks } from './schema';

export interface AckInput {
  runId: string;
  action: AuditAction;
  status: AckStatus;
  resultId?: string | null;
  error?: string | null;
  rollbackReason?: string | null;
  metadata?: Record<string, unknown>;
}

/**
 * Records a domain's acknowledgement in the caller's transaction, so an ack exists exactly when
 * the write it acknowledges does. At most one ack per (run, action, status).
 */
export async function recordAck(tx: DbOrTx, ack: AckInput): Promise<{ inserted: boolean }> {
  const rows = await tx
    .insert(domainAcks)
    .values({
      runId: ack.runId,
      domain: ack.action.domain,
      action: ack.action.action,
      status: ack.status,
      resultId: ack.resultId ?? null,
      error: ack.error ?? null,
      rolledBack: ack.status === 'ROLLED_BACK',
      rollbackReason: ack.rollbackReason ?? null,
      metadata: ack.metadata ?? {},
    })
    .onConflictDoNothing()
    .returning({ id: domainAcks.id });
  const inserted = rows.length > 0;
  if (inserted && ack.status === 'OK' && ack.action.domain === FINALIZE_RUN.domain && ack.action.action === FINALIZE_RUN.action) {
    await markRunFinalized(tx, ack.runId);
  }
  return { inserted };
}

export async function hasAck(tx: DbOrTx, runId: string, action: AuditAction, status: AckStatus): Promise<boolean> {
  const rows = await tx
    .select({ id: domainAcks.id })
    .from(domainAcks)
    .where(
      and(
        eq(domainAcks.runId, runId),
        eq(domainAcks.domain, action.domain),
        eq(domainAcks.action, action.action),
        eq(domainAcks.status, status),
      ),
    )
    .limit(1);
  return rows.length > 0;
}
