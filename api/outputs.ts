import { and, asc, eq, isNull } from 'drizzle-orm';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import type { Db } from '../db/client';
import { runOfTenant } from '../db/runs';
import { stepOutputs } from '../db/schema';
import { HttpError } from './errors';
import type { RouteHandlers } from './router';

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
export function outputHandlers(deps: { db: Db }) {
  async function ownRun(id: string, tenantId: string) {
    const run = await runOfTenant(deps.db, id, tenantId);
    if (!run) throw new HttpError('RUN_NOT_FOUND', `run ${id} not found`);
    return run;
  }

  return {
    runOutput: async ({ caller, params }, res) => {
      const run = await ownRun(params.id, caller.tenantId);
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
    },

    stepOutput: async ({ caller, params: { id, stepIndex }, query: { raw } }, res) => {
      const run = await ownRun(id, caller.tenantId);
      if (stepIndex >= run.plan.length) throw new HttpError('STEP_NOT_FOUND', `run ${run.id} has ${run.plan.length} step(s): no step index ${stepIndex}`);
      const [row] = await deps.db
        .select()
        .from(stepOutputs)
        .where(and(eq(stepOutputs.runId, run.id), eq(stepOutputs.stepIndex, stepIndex), isNull(stepOutputs.turn)));
      if (!row) throw new HttpError('OUTPUT_NOT_READY', `step index ${stepIndex} of run ${run.id} has no output (yet): it has not completed`);
      res.set('Cache-Control', 'no-store');
      if (raw === '1' || raw === 'true') {
        res.set('Content-Type', `${row.contentType}; charset=utf-8`).set('Digest', `sha-256=${Buffer.from(row.sha256, 'hex').toString('base64')}`).send(row.content);
        return;
      }
      res.json({ runId: run.id, ...shown(row, run.plan) });
    },
  } satisfies Partial<RouteHandlers>;
}
