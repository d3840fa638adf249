import { eq } from 'drizzle-orm';
import type { PlanStep } from '../core/plan';
import type { DbOrTx } from './client';
import { runs } from './schema';

/**
 * The `runs` row, one owner: reads and writes of a run's own record live here (the rest of the
 * codebase is moving onto this module, see issue 22).
 */

/** The plan a run was submitted with, or undefined for no such run. */
export async function runPlan(db: DbOrTx, runId: string): Promise<PlanStep[] | undefined> {
  const [row] = await db.select({ plan: runs.plan }).from(runs).where(eq(runs.id, runId));
  return row?.plan;
}
