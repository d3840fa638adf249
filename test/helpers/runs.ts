import { and, asc, eq } from 'drizzle-orm';
import type { Db } from '../../db/client';
import { policyEvaluations, runControlEvents, runs } from '../../db/schema';
import { waitFor } from './wait';

export async function storedRun(db: Db, runId: string) {
  const [run] = await db.select().from(runs).where(eq(runs.id, runId));
  return run!;
}

export function waitForPause(db: Db, runId: string, timeoutMs?: number) {
  return waitFor(`run ${runId} to pause`, async () => {
    const run = await storedRun(db, runId);
    return run.pauseReason ? run : undefined;
  }, timeoutMs);
}

export function waitForSteps(db: Db, runId: string, steps: number) {
  return waitFor(`run ${runId} to complete ${steps} steps`, async () => {
    const run = await storedRun(db, runId);
    return run.stepsCompleted >= steps ? run : undefined;
  });
}

export function midRunEvaluations(db: Db, runId: string) {
  return db
    .select()
    .from(policyEvaluations)
    .where(and(eq(policyEvaluations.runId, runId), eq(policyEvaluations.kind, 'mid_run')))
    .orderBy(asc(policyEvaluations.createdAt));
}

export function controlEvents(db: Db, runId: string) {
  return db.select().from(runControlEvents).where(eq(runControlEvents.runId, runId)).orderBy(asc(runControlEvents.createdAt));
}
