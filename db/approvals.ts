import { and, eq, sql } from 'drizzle-orm';
import type { DbOrTx } from './client';
import { toolApprovals } from './schema';

/**
 * Tool approvals, one owner: the pending call a person was shown (the tool and the hash of its
 * exact arguments) and what they decided, by whom and when. Written in the transaction of the
 * pause, resume or timeout it belongs to.
 */

export interface ApprovalRequest {
  runId: string;
  tenantId: string;
  pauseNumber: number;
  stepIndex: number;
  turn: number;
  callIndex: number;
  tool: string;
  argsSha256: string;
}

export async function insertPendingApproval(tx: DbOrTx, approval: ApprovalRequest): Promise<void> {
  await tx.insert(toolApprovals).values(approval).onConflictDoNothing();
}

export async function decideApproval(
  tx: DbOrTx,
  decision: { runId: string; pauseNumber: number; status: 'approved' | 'denied' | 'expired'; by: string | null; authority: string | null; requestId: string | null; reason: string | null },
): Promise<{ tool: string } | null> {
  const [decided] = await tx
    .update(toolApprovals)
    .set({ status: decision.status, decidedAt: sql`now()`, decidedBy: decision.by, authority: decision.authority, requestId: decision.requestId, reason: decision.reason })
    .where(and(eq(toolApprovals.runId, decision.runId), eq(toolApprovals.pauseNumber, decision.pauseNumber), eq(toolApprovals.status, 'pending')))
    .returning({ tool: toolApprovals.tool });
  return decided ?? null;
}
