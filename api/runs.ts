import { Router } from 'express';
import { type Client } from '@temporalio/client';
import { and, asc, desc, eq, lt, or, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { describeZodError } from '../core/plan';
import { RUN_PHASES, RUN_STATUSES, isTerminalPhase, type RunPhase } from '../core/phases';
import { domainAcks, incidents, policyEvaluations, runLogs, runs, traceSteps, traces } from '../db/schema';
import { runStateQuery, type RunState } from '../workflows/messages';
import { callerOf } from './auth';
import { HttpError } from './errors';
import { decodeCursor, encodeCursor, parseRunId } from './paging';
import { submitRun, type SubmitDeps } from './submit-run';
import type { ApiMetrics } from '../lib/metrics';

const listQuery = z
  .object({
    status: z.enum(RUN_STATUSES).optional(),
    phase: z.enum(RUN_PHASES).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict();

export interface RunRoutesDeps extends SubmitDeps {
  temporal: Client;
  metrics: ApiMetrics;
}

export function runRoutes(deps: RunRoutesDeps): Router {
  const router = Router();

  router.post('/', async (req, res) => {
    const result = await submitRun(deps, callerOf(res), req.body, req.get('idempotency-key'));
    if (!result.replayed) deps.metrics.runsSubmitted.inc({ decision: result.authorizationDecision });
    res
      .status(202)
      .set('Location', `/api/v1/runs/${result.runId}`)
      .set('Idempotent-Replayed', String(result.replayed))
      .json({ runId: result.runId, authorizationDecision: result.authorizationDecision });
  });

  router.get('/', async (req, res) => {
    const parsed = listQuery.safeParse(req.query);
    if (!parsed.success) throw new HttpError(400, `invalid query: ${describeZodError(parsed.error)}`);
    const { status, phase, limit, cursor } = parsed.data;
    const filters: (SQL | undefined)[] = [eq(runs.tenantId, callerOf(res).tenantId)];
    if (status) filters.push(eq(runs.status, status));
    if (phase) filters.push(eq(runs.phase, phase));
    if (cursor) {
      const after = decodeCursor(cursor);
      filters.push(or(lt(runs.createdAt, after.at), and(eq(runs.createdAt, after.at), lt(runs.id, after.id))));
    }
    const rows = await deps.db
      .select({
        runId: runs.id,
        phase: runs.phase,
        status: runs.status,
        costUsd: runs.costUsd,
        stepsCompleted: runs.stepsCompleted,
        authorizationDecision: runs.authorizationDecision,
        errorCode: runs.errorCode,
        createdAt: runs.createdAt,
        finishedAt: runs.finishedAt,
      })
      .from(runs)
      .where(and(...filters))
      .orderBy(desc(runs.createdAt), desc(runs.id))
      .limit(limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    res.json({ runs: page, nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt, last.runId) : null });
  });

  router.get('/:id', async (req, res) => {
    const id = parseRunId(req.params.id);
    const [run] = await deps.db
      .select()
      .from(runs)
      .where(and(eq(runs.id, id), eq(runs.tenantId, callerOf(res).tenantId)));
    // Another tenant's run answers exactly like a missing one.
    if (!run) throw new HttpError(404, `run ${id} not found`);
    const [trace, steps, incidentRows, evaluations, logRows, acks, live] = await Promise.all([
      deps.db.select().from(traces).where(eq(traces.runId, run.id)),
      deps.db.select().from(traceSteps).where(eq(traceSteps.runId, run.id)).orderBy(asc(traceSteps.stepIndex)),
      deps.db.select().from(incidents).where(eq(incidents.runId, run.id)).orderBy(asc(incidents.createdAt)),
      deps.db.select().from(policyEvaluations).where(eq(policyEvaluations.runId, run.id)).orderBy(asc(policyEvaluations.createdAt)),
      deps.db.select().from(runLogs).where(eq(runLogs.runId, run.id)),
      deps.db.select().from(domainAcks).where(eq(domainAcks.runId, run.id)).orderBy(asc(domainAcks.createdAt)),
      isTerminalPhase(run.phase as RunPhase) ? Promise.resolve(null) : liveState(deps.temporal, run.id),
    ]);
    const { requestHash: _hash, ...record } = run;
    res.json({
      run: record,
      live,
      trace: trace[0] ? { ...trace[0], steps } : null,
      incidents: incidentRows,
      policyEvaluations: evaluations,
      log: logRows[0] ?? null,
      acks,
    });
  });

  return router;
}

/** The workflow's own view, when a worker answers within two seconds; the stored record otherwise. */
async function liveState(temporal: Client, id: string): Promise<RunState | null> {
  try {
    return await temporal.withDeadline(Date.now() + 2000, () => temporal.workflow.getHandle(id).query(runStateQuery));
  } catch {
    return null;
  }
}
