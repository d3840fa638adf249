import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { and, eq, notInArray } from 'drizzle-orm';
import { TERMINAL_PHASES } from '../core/phases';
import type { DbOrTx } from '../db/client';
import { runs } from '../db/schema';
import { policyChangedSignal } from '../workflows/messages';

/**
 * Pushes a policy change to every unfinished run of the tenant, so each re-checks before its next
 * step instead of waiting for its check interval. A run that finished meanwhile is skipped.
 */
export async function pushPolicyChange(db: DbOrTx, temporal: Client, tenantId: string, change: { actor: string; reason: string }): Promise<number> {
  const live = await db
    .select({ id: runs.id })
    .from(runs)
    .where(and(eq(runs.tenantId, tenantId), notInArray(runs.phase, [...TERMINAL_PHASES])));
  const results = await Promise.allSettled(
    live.map(({ id }) => temporal.workflow.getHandle(id).signal(policyChangedSignal, { actor: change.actor, reason: change.reason })),
  );
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof WorkflowNotFoundError));
  if (failures.length) throw new Error(`could not signal ${failures.length} run(s): ${String(failures[0]!.reason)}`);
  return results.filter((r) => r.status === 'fulfilled').length;
}
