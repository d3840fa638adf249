import { desc, eq } from 'drizzle-orm';
import type { DbOrTx } from './client';
import { runControlEvents } from './schema';

/** A control of a run as its tenant reads it: who asked for what, and whether the run took it. */
export interface RunControl {
  id: string;
  kind: string;
  accepted: boolean;
  actor: string | null;
  authority: string | null;
  detail: string | null;
  createdAt: Date;
}

/** The run's latest controls (pauses, resumes, stops, refusals, expiry warnings), newest first. */
export async function latestControlsOfRun(db: DbOrTx, runId: string, limit: number): Promise<RunControl[]> {
  return db
    .select({
      id: runControlEvents.id,
      kind: runControlEvents.kind,
      accepted: runControlEvents.accepted,
      actor: runControlEvents.actor,
      authority: runControlEvents.authority,
      detail: runControlEvents.detail,
      createdAt: runControlEvents.createdAt,
    })
    .from(runControlEvents)
    .where(eq(runControlEvents.runId, runId))
    .orderBy(desc(runControlEvents.createdAt), desc(runControlEvents.id))
    .limit(limit);
}
