import { Router } from 'express';
import { and, asc, eq, isNull } from 'drizzle-orm';
import { z } from 'zod';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import type { Db } from '../db/client';
import { runOfTenant } from '../db/runs';
import { stepOutputs } from '../db/schema';
import { callerOf } from './auth';
import { HttpError } from './errors';
import { parseQuery, parseRunId } from './paging';

/** `?raw=1`: the content alone, with its own content type, for a pipe or a browser. */
export const outputQuery = z.object({ raw: z.enum(['0', '1', 'true', 'false']).optional() }).strict();

const stepIndexParam = z.coerce.number().int().min(0).max(100_000);

type StoredOutput = typeof stepOutputs.$inferSelect;

/** A step's output as the API shows it: its place in the plan, what it is, and the whole of it. */
function shown(output: StoredOutput, plan: { skill: string; name?: string }[]) {
  const step = plan[output.stepIndex];
  return {
    stepIndex: output.stepIndex,
    name: step?.name ?? null,
    skill: step?.skill ?? null,
    contentType: output.contentType,
    sha256: output.sha256,
    bytes: output.bytes,
    createdAt: output.createdAt,
    content: output.content,
  };
}

/**
 * The work a run produced: each step's whole output, as it was stored with the step's record, and
 * the run's own output (the last step's, once the run completed). Tenant-scoped like every run route.
 */
export function outputRoutes(deps: { db: Db }): Router {
  const router = Router();

  async function ownRun(param: string, tenantId: string) {
    const id = parseRunId(param);
    const run = await runOfTenant(deps.db, id, tenantId);
    if (!run) throw new HttpError('RUN_NOT_FOUND', `run ${id} not found`);
    return run;
  }

  router.get('/:id/output', async (req, res) => {
    parseQuery(outputQuery, req.query);
    const run = await ownRun(req.params.id, callerOf(res).tenantId);
    const rows = await deps.db
      .select()
      .from(stepOutputs)
      .where(and(eq(stepOutputs.runId, run.id), isNull(stepOutputs.turn)))
      .orderBy(asc(stepOutputs.stepIndex));
    const steps = rows.map((r) => shown(r, run.plan));
    // The run's output is its last step's, and only once there is nothing more to come.
    const final = run.phase === 'COMPLETED' ? (steps.find((s) => s.stepIndex === run.plan.length - 1) ?? null) : null;
    res.set('Cache-Control', 'no-store').json({
      runId: run.id,
      phase: run.phase,
      complete: isTerminalPhase(run.phase as RunPhase),
      output: final,
      steps,
    });
  });

  router.get('/:id/steps/:stepIndex/output', async (req, res) => {
    const { raw } = parseQuery(outputQuery, req.query);
    const run = await ownRun(req.params.id, callerOf(res).tenantId);
    const index = stepIndexParam.safeParse(req.params.stepIndex);
    if (!index.success) throw new HttpError(400, 'step index must be a whole number from 0 (the first step)');
    if (index.data >= run.plan.length) throw new HttpError('STEP_NOT_FOUND', `run ${run.id} has ${run.plan.length} step(s): no step index ${index.data}`);
    const [row] = await deps.db
      .select()
      .from(stepOutputs)
      .where(and(eq(stepOutputs.runId, run.id), eq(stepOutputs.stepIndex, index.data), isNull(stepOutputs.turn)));
    if (!row) throw new HttpError('OUTPUT_NOT_READY', `step index ${index.data} of run ${run.id} has no output (yet): it has not completed`);
    res.set('Cache-Control', 'no-store');
    if (raw === '1' || raw === 'true') {
      res.set('Content-Type', `${row.contentType}; charset=utf-8`).set('Digest', `sha-256=${Buffer.from(row.sha256, 'hex').toString('base64')}`).send(row.content);
      return;
    }
    res.json({ runId: run.id, ...shown(row, run.plan) });
  });

  return router;
}
