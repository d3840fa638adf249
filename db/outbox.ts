import type { OutboundEvent } from '../core/events';
import type { DbOrTx } from './client';
import { outbox } from './schema';

/** Writes events in the caller's transaction: they exist only if the change they announce commits. */
export async function writeEvents(
  tx: DbOrTx,
  scope: { runId: string; tenantId: string },
  events: readonly OutboundEvent[],
): Promise<void> {
  if (events.length === 0) return;
  await tx
    .insert(outbox)
    .values(
      events.map((e) => ({
        topic: e.topic,
        runId: scope.runId,
        tenantId: scope.tenantId,
        dedupeKey: e.dedupeKey,
        payload: { ...e.payload, runId: scope.runId, tenantId: scope.tenantId },
      })),
    )
    .onConflictDoNothing();
}
