import { type Client } from '@temporalio/client';
import { asc, eq } from 'drizzle-orm';
import { authorityInWords, stateForTenant } from '../core/authority-words';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import { latestControlsOfRun } from '../db/control-events';
import { runEvidenceLines } from '../db/evidence';
import { listRuns, runOfTenant } from '../db/runs';
import { domainAcks, incidents, policyEvaluations, runLogs, traceSteps, traces } from '../db/schema';
import { runStateQuery, type RunState } from '../workflows/messages';
import { HttpError } from './errors';
import { runNotFound } from './retention';
import { cursorTime, newestFirst, olderThanCursor, pageOf } from './paging';
import type { RouteHandlers } from './router';
import { submitRun, type SubmitDeps } from './submit-run';
import type { ApiMetrics } from '../lib/metrics';

export interface RunRoutesDeps extends SubmitDeps {
  temporal: Client;
  metrics: ApiMetrics;
}

export function runHandlers(deps: RunRoutesDeps) {
  return {
    submitRun: async ({ caller, body, idempotencyKey }, res) => {
      const result = await submitRun(deps, caller, body, idempotencyKey);
      if (!result.replayed) deps.metrics.runsSubmitted.inc({ decision: result.authorizationDecision });
      res
        .status(202)
        .set('Location', `/api/v1/runs/${result.runId}`)
        .set('Idempotent-Replayed', String(result.replayed))
        .json({
          runId: result.runId,
          authorizationDecision: result.authorizationDecision,
          workflow: result.workflow,
          ...(result.workflow === 'queued' ? { note: 'the run is recorded; it starts as soon as Temporal answers' } : {}),
        });
    },

    listRuns: async ({ caller, query: { status, phase, limit, cursor } }, res) => {
      const rows = await listRuns(deps.db, {
        tenantId: caller.tenantId,
        status,
        phase,
        ...(cursor ? { olderThan: (at, id) => olderThanCursor(at, id, cursor) } : {}),
        limit: limit + 1,
        orderBy: newestFirst,
        cursorTime,
      });
      const { page, nextCursor } = pageOf(rows, limit, (row) => row.runId);
      res.json({ runs: page, nextCursor });
    },

    getRun: async ({ caller, params: { id } }, res) => {
      const run = await runOfTenant(deps.db, id, caller.tenantId);
      // Another tenant's run answers exactly like a missing one; a pruned one of the caller's, with its tombstone.
      if (!run) throw await runNotFound(deps.db, id, caller.tenantId);
      const [trace, steps, incidentRows, evaluations, logRows, acks, controls, live] = await Promise.all([
        deps.db.select().from(traces).where(eq(traces.runId, run.id)),
        deps.db.select().from(traceSteps).where(eq(traceSteps.runId, run.id)).orderBy(asc(traceSteps.stepIndex)),
        deps.db.select().from(incidents).where(eq(incidents.runId, run.id)).orderBy(asc(incidents.createdAt)),
        deps.db.select().from(policyEvaluations).where(eq(policyEvaluations.runId, run.id)).orderBy(asc(policyEvaluations.createdAt)),
        deps.db.select().from(runLogs).where(eq(runLogs.runId, run.id)),
        deps.db.select().from(domainAcks).where(eq(domainAcks.runId, run.id)).orderBy(asc(domainAcks.createdAt)),
        latestControlsOfRun(deps.db, run.id, CONTROLS_SHOWN),
        isTerminalPhase(run.phase as RunPhase) ? Promise.resolve(null) : liveState(deps.temporal, run.id),
      ]);
      const { requestHash: _hash, ...record } = run;
      res.json({
        run: record,
        live: live && stateForTenant(live),
        trace: trace[0] ? { ...trace[0], steps } : null,
        incidents: incidentRows,
        policyEvaluations: evaluations,
        log: logRows[0] ?? null,
        acks,
        // Refusals included: a pause the run could not take (it ended first) is said here, not only logged.
        controls: controls.map((c) => ({ ...c, authority: c.authority && authorityInWords(c.authority) })),
      });
    },

    /**
     * The run's evidence as JSONL (README, "Evidence"), for `governed evidence verify` to check
     * offline. Only once the run has ended: until then its own record's totals move between links.
     */
    runEvidence: async ({ caller, params: { id } }, res) => {
      const run = await runOfTenant(deps.db, id, caller.tenantId);
      if (!run) throw new HttpError('RUN_NOT_FOUND', `run ${id} not found`);
      if (!isTerminalPhase(run.phase as RunPhase)) {
        throw new HttpError('RUN_NOT_FINISHED', `run ${id} is ${run.phase}: its evidence is exported once it has ended`, { phase: run.phase });
      }
      const lines = await runEvidenceLines(deps.db, run);
      res
        .status(200)
        .set('Content-Type', `${EVIDENCE_CONTENT_TYPE}; charset=utf-8`)
        .set('Cache-Control', 'no-store')
        .set('Content-Disposition', `attachment; filename="run-${run.id}.jsonl"`)
        .send(lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    },
  } satisfies Partial<RouteHandlers>;
}

export const EVIDENCE_CONTENT_TYPE = 'application/jsonl';

/** The latest controls a run's answer shows (its whole list is in its evidence). */
const CONTROLS_SHOWN = 20;

/** The workflow's own view, when a worker answers within two seconds; the stored record otherwise. */
async function liveState(temporal: Client, id: string): Promise<RunState | null> {
  try {
    return await temporal.withDeadline(Date.now() + 2000, () => temporal.workflow.getHandle(id).query(runStateQuery));
  } catch {
    return null;
  }
}
