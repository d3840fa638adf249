import { Router, type Response } from 'express';
import { setTimeout } from 'node:timers/promises';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, WorkflowUpdateStage, type Client } from '@temporalio/client';
import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import { describeZodError } from '../core/plan';
import { DEFAULT_RESUME_AUTHORITIES, PAUSE_REASONS, canResume, type ResumeAuthority } from '../core/policy-check';
import type { Db } from '../db/client';
import { runs } from '../db/schema';
import { pauseSignal, resumeUpdate, stopSignal, type ControlRequest } from '../workflows/messages';
import { actorOf, callerOf, requireRole, type Caller } from './auth';
import { HttpError } from './errors';
import { parseRunId } from './paging';

/** How long a resume waits for the run's new state once accepted; well inside the request's Temporal deadline. */
const RESUME_STATE_WAIT_MS = 2_000;

export const controlBody = z
  .object({
    reason: z.string().max(500).optional(),
    pauseReason: z.enum(PAUSE_REASONS).optional(),
  })
  .strict();

/** What the caller may claim when resuming: its role's authority, and ownership of the run's key. */
function authoritiesOf(caller: Caller, runApiKeyId: string | null): ResumeAuthority[] {
  const held: ResumeAuthority[] = [caller.role === 'admin' ? 'TENANT_ADMIN' : 'TENANT_USER'];
  if (runApiKeyId === caller.apiKeyId) held.push('API_KEY_OWNER');
  return held;
}

/** Operator controls over HTTP: the same signals and update `temporal workflow signal` sends. */
export function runControlRoutes(deps: { db: Db; temporal: Client }): Router {
  const router = Router();
  router.use('/:id/:action', requireRole('admin', 'member'));

  async function controllableRun(param: string, res: Response) {
    const id = parseRunId(param);
    const caller = callerOf(res);
    const [run] = await deps.db
      .select({ id: runs.id, phase: runs.phase, apiKeyId: runs.apiKeyId })
      .from(runs)
      .where(and(eq(runs.id, id), eq(runs.tenantId, caller.tenantId)));
    if (!run) throw new HttpError(404, `run ${id} not found`);
    if (isTerminalPhase(run.phase as RunPhase)) throw new HttpError(409, `run is already ${run.phase}`);
    return { run, caller };
  }

  function parseBody(body: unknown) {
    const parsed = controlBody.safeParse(body ?? {});
    if (!parsed.success) throw new HttpError(400, `invalid request: ${describeZodError(parsed.error)}`);
    return parsed.data;
  }

  function request(caller: Caller, runApiKeyId: string | null, reason?: string): ControlRequest {
    const [authority, ...authorities] = authoritiesOf(caller, runApiKeyId);
    return { actor: actorOf(caller), authority, authorities, reason };
  }

  async function signalled(send: () => Promise<void>): Promise<void> {
    try {
      await send();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new HttpError(409, 'run has no live workflow');
      throw err;
    }
  }

  router.post('/:id/pause', async (req, res) => {
    const body = parseBody(req.body);
    const { run, caller } = await controllableRun(req.params.id, res);
    // A key may not set a pause that only others may lift: it could hold a run hostage.
    const pauseReason = body.pauseReason ?? 'MANUAL_PAUSE';
    const held = authoritiesOf(caller, run.apiKeyId);
    if (!canResume(DEFAULT_RESUME_AUTHORITIES[pauseReason], held)) {
      throw new HttpError(403, `a ${caller.role} key may not pause with ${pauseReason}: only ${DEFAULT_RESUME_AUTHORITIES[pauseReason].join(', ')} may resume it`);
    }
    await signalled(() =>
      deps.temporal.workflow.getHandle(run.id).signal(pauseSignal, { ...request(caller, run.apiKeyId, body.reason), pauseReason: body.pauseReason }),
    );
    res.status(202).json({ runId: run.id, requested: 'pause', note: 'the run pauses before its next step' });
  });

  router.post('/:id/stop', async (req, res) => {
    const body = parseBody(req.body);
    const { run, caller } = await controllableRun(req.params.id, res);
    await signalled(() => deps.temporal.workflow.getHandle(run.id).signal(stopSignal, request(caller, run.apiKeyId, body.reason)));
    res.status(202).json({ runId: run.id, requested: 'stop', note: 'the run stops before its next step, or at once if paused' });
  });

  router.post('/:id/resume', async (req, res) => {
    const body = parseBody(req.body);
    const { run, caller } = await controllableRun(req.params.id, res);
    try {
      // Accepted means resumed: the update's validator has passed and the workflow holds it. The
      // new state follows once the run has recorded its resume, normally in milliseconds; on a
      // slow day the answer says accepted rather than letting the request deadline turn an
      // accepted resume into a 503 whose retry would then be told "not paused".
      const update = await deps.temporal.workflow
        .getHandle(run.id)
        .startUpdate(resumeUpdate, { args: [request(caller, run.apiKeyId, body.reason)], waitForStage: WorkflowUpdateStage.ACCEPTED });
      const state = await Promise.race([update.result(), setTimeout(RESUME_STATE_WAIT_MS, null)]);
      if (state) res.json({ runId: run.id, resumed: true, state });
      else res.status(202).json({ runId: run.id, resumed: true, note: 'accepted: the run resumes before its next step' });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw new HttpError(409, err.cause?.message ?? err.message);
      if (err instanceof WorkflowNotFoundError) throw new HttpError(409, 'run has no live workflow');
      throw err;
    }
  });

  return router;
}
