import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { and, asc, eq } from 'drizzle-orm';
import { inject } from 'vitest';
import type { Db } from '../../db/client';
import type { RunState } from '../../workflows/messages';
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

/** The run's final state from its workflow: the result of a COMPLETED run, the failure details of a FAILED one. */
export async function finalRunState(handle: WorkflowHandle): Promise<RunState> {
  try {
    return (await handle.result()) as RunState;
  } catch (err) {
    if (err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.details?.[0]) {
      return err.cause.details[0] as RunState;
    }
    throw err;
  }
}

/** Writes the run's workflow history into the replay corpus (`test/histories/<name>.json`). */
export function recordHistory(runId: string, name: string, executionRunId?: string): void {
  // The CLI's JSON is the format historyFromJSON reads back in the replay test.
  const execution = executionRunId ? ['--run-id', executionRunId] : [];
  const json = execFileSync(inject('temporalCliPath'), ['workflow', 'show', '--workflow-id', runId, ...execution, '--output', 'json', '--address', inject('temporalAddress')]);
  writeFileSync(path.join(__dirname, '..', 'histories', `${name}.json`), json);
}

