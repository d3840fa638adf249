import { createHash, randomUUID } from 'node:crypto';
import type { Response } from 'express';
import { setTimeout } from 'node:timers/promises';
import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  WorkflowUpdateStage,
  type Client,
} from '@temporalio/client';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import { authoritiesInWords, orList, stateForTenant } from '../core/authority-words';
import { DEFAULT_RESUME_AUTHORITIES, canResume, type ResumeAuthority } from '../core/policy-check';
import type { Db } from '../db/client';
import { runOfTenant } from '../db/runs';
import { isSignalLimitReached } from '../dispatch/control-pusher';
import type { Logger } from '../lib/logger';
import { pauseSignal, resumeUpdate, stopSignal, type ControlRequest, type ResumeRequest } from '../workflows/messages';
import { actorOf, type Caller } from './auth';
import { controlRefusal } from './control-refusals';
import { HttpError, isTemporalUnavailable } from './errors';
import type { ControlGuards } from './rate-limit';
import type { RouteHandlers } from './router';

/** How long a resume waits for the run's new state once accepted; well inside the request's Temporal deadline. */
const RESUME_STATE_WAIT_MS = 2_000;

/** Who asks to control which run, under which Idempotency-Key (if they sent one). */
interface ControlTarget {
  caller: Caller;
  runId: string;
  idempotencyKey: string | undefined;
}

type ControlAction = 'pause' | 'stop' | 'resume' | 'approve' | 'deny';

export interface RunControlDeps {
  db: Db;
  temporal: Client;
  logger: Logger;
  controls: ControlGuards;
}

/** What the caller may claim when resuming: its role's authority, and ownership of the run's key. */
function authoritiesOf(caller: Caller, runApiKeyId: string | null): ResumeAuthority[] {
  const held: ResumeAuthority[] = [caller.role === 'admin' ? 'TENANT_ADMIN' : 'TENANT_USER'];
  if (runApiKeyId === caller.apiKeyId) held.push('API_KEY_OWNER');
  return held;
}

/**
 * The id the run acts on once (and, for a resume, Temporal's update id): the same for a retry of
 * one request — same key, same action, same Idempotency-Key — and different when another key or
 * another action happens to use the same Idempotency-Key, which must not be taken for a retry.
 */
export function controlRequestId(apiKeyId: string, action: ControlAction, idempotencyKey: string): string {
  const digest = createHash('sha256').update(`${apiKeyId}\n${action}\n${idempotencyKey}`).digest('base64url').slice(0, 27);
  return `api-${action}-${digest}`;
}

/**
 * Why a signal cannot be sent to this run, ever: it has received as many as Temporal accepts for
 * one execution. A 409 that names the limit and the way out, rather than a 500.
 */
function signalLimitConflict(runId: string): HttpError {
  return new HttpError(
    'SIGNAL_LIMIT_REACHED',
    `run ${runId} has received Temporal's maximum number of signals for one execution (history.maximumSignalsPerExecution, ` +
      `10,000 by default), so it can no longer be paused or stopped by a signal; cancelling its workflow ` +
      `(temporal workflow cancel --workflow-id ${runId}) ends it like a stop`,
  );
}

/**
 * True when a resume's update may have reached Temporal without the API hearing the outcome: the
 * SDK's update call timed out or was cancelled (`WorkflowUpdateRPCTimeoutOrCancelledError`), or the
 * request's Temporal deadline (`api/deadline.ts`) or the connection gave out while it was under way.
 */
function outcomeUnknown(err: unknown): boolean {
  return err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isTemporalUnavailable(err);
}

/**
 * Operator controls over HTTP: the same signals and update `temporal workflow signal` sends, each
 * carrying a request id the run acts on once. Every control counts against the caller's key
 * (`api/rate-limit.ts`); those that would reach the run count against the run too, and a pause or
 * stop the run has already been sent is answered without another signal.
 */
export function runControlHandlers(deps: RunControlDeps) {
  const { limiter, recent } = deps.controls;

  /**
   * What every control does once the contract passed its input: counts against the key, and finds
   * the run. Without an Idempotency-Key of the caller's, one of ours: the answer names it, so even
   * that caller can retry safely.
   */
  async function begin(input: ControlTarget, res: Response, action: ControlAction) {
    const { caller, runId } = input;
    const idempotencyKey = input.idempotencyKey ?? randomUUID();
    await limiter.admitKey(caller.apiKeyId, res);
    const run = await runOfTenant(deps.db, runId, caller.tenantId);
    if (!run) throw new HttpError('RUN_NOT_FOUND', `run ${runId} not found`);
    if (isTerminalPhase(run.phase as RunPhase)) throw new HttpError('RUN_ALREADY_FINISHED', `run is already ${run.phase}`);
    return { run, ids: { requestId: controlRequestId(caller.apiKeyId, action, idempotencyKey), idempotencyKey } };
  }

  function controlRequest(caller: Caller, runApiKeyId: string | null, requestId: string, reason?: string): ControlRequest {
    const [authority, ...authorities] = authoritiesOf(caller, runApiKeyId);
    return { actor: actorOf(caller), authority, authorities, reason, requestId };
  }

  /**
   * Sends a pause or stop the caller has claimed (`recent.claim`): counted against the run first;
   * on any failure the claim is given back, so a repeat is not told that a signal went out.
   */
  async function sendClaimed(action: 'pause' | 'stop', runId: string, send: () => Promise<void>): Promise<void> {
    try {
      await limiter.admitRun(runId, action);
      await send();
    } catch (err) {
      await recent.release(action, runId);
      if (err instanceof WorkflowNotFoundError) throw new HttpError('RUN_NOT_LIVE', 'run has no live workflow');
      if (isSignalLimitReached(err)) throw signalLimitConflict(runId);
      throw err;
    }
  }


  /**
   * A resume, an approval or a denial: one Temporal update, refused at once (409) when the run
   * cannot take it, and never answered 5xx once Temporal may have accepted it.
   */
  async function sendResume(res: Response, request: ResumeRequest & { requestId: string }, target: { runId: string }, ids: { requestId: string; idempotencyKey: string }): Promise<void> {
    const { runId } = target;
    await limiter.admitRun(runId, 'resume');
    let update;
    try {
      // The update id is the request id: Temporal answers a retried resume with the first one's
      // outcome instead of running it again, and the run itself acts on a request id once.
      update = await deps.temporal.workflow.getHandle(runId).startUpdate(resumeUpdate, {
        args: [request],
        updateId: request.requestId,
        waitForStage: WorkflowUpdateStage.ACCEPTED,
      });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw controlRefusal(err.cause ?? err);
      if (err instanceof WorkflowNotFoundError) throw new HttpError('RUN_NOT_LIVE', 'run has no live workflow');
      if (!outcomeUnknown(err)) throw err;
      // Temporal may have accepted it: never a 5xx, whose retry (without the key) could approve the next pause too.
      deps.logger.warn({ runId, requestId: ids.requestId, err: err instanceof Error ? err.message : String(err) }, 'resume sent; its outcome is unknown');
      await recent.resumed(runId);
      res.status(202).json({
        runId,
        ...ids,
        resumed: 'unknown',
        note:
          `Temporal did not say in time whether it accepted this resume. To learn the outcome: GET /api/v1/runs/${runId} ` +
          `(live.pause is null and run.pauseReason clears once the run resumed), or send this request again with ` +
          `Idempotency-Key: ${ids.idempotencyKey}; retrying with the same Idempotency-Key cannot resume twice, and answers the outcome once Temporal has it`,
      });
      return;
    }
    // Accepted means resumed: the update's validator has passed and the workflow holds it. The
    // new state follows once the run has recorded its resume, normally in milliseconds; on a slow
    // day (or once the request's deadline passes) the answer says accepted, never an error.
    await recent.resumed(runId);
    let state = null;
    try {
      state = await Promise.race([update.result(), setTimeout(RESUME_STATE_WAIT_MS, null)]);
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw controlRefusal(err.cause ?? err);
      deps.logger.warn({ runId, requestId: ids.requestId, err: err instanceof Error ? err.message : String(err) }, 'resume accepted; its new state did not come back');
    }
    if (state) res.json({ runId, ...ids, resumed: true, state: stateForTenant(state) });
    else res.status(202).json({ runId, ...ids, resumed: true, note: 'accepted: the run resumes before its next step' });
  }

  async function decide(decision: 'approve' | 'deny', target: ControlTarget, body: { argsSha256: string; reason?: string }, res: Response) {
    const { run, ids } = await begin(target, res, decision);
    const request = { ...controlRequest(target.caller, run.apiKeyId, ids.requestId, body.reason), requestId: ids.requestId, argsSha256: body.argsSha256, decision };
    await sendResume(res, request, { runId: run.id }, ids);
  }

  return {
    pauseRun: async ({ caller, params, body, idempotencyKey }, res) => {
      const { run, ids } = await begin({ caller, runId: params.id, idempotencyKey }, res, 'pause');
      // A key may not set a pause that only others may lift: it could hold a run hostage.
      const pauseReason = body.pauseReason ?? 'MANUAL_PAUSE';
      const held = authoritiesOf(caller, run.apiKeyId);
      if (!canResume(DEFAULT_RESUME_AUTHORITIES[pauseReason], held)) {
        const may = orList(authoritiesInWords(DEFAULT_RESUME_AUTHORITIES[pauseReason]));
        throw new HttpError('PAUSE_REASON_NOT_ALLOWED', `a ${caller.role} key may not pause with ${pauseReason}: only ${may} may resume it`);
      }
      // The run refuses a pause while it is paused or has one pending: no need to send one for it to refuse.
      if (run.pauseReason !== null && !(await recent.recentlyResumed(run.id))) {
        res.json({ runId: run.id, requested: 'pause', outcome: 'already_paused', ...ids, note: `the run is already paused (${run.pauseReason}); no signal was sent` });
        return;
      }
      if (!(await recent.claim('pause', run.id))) {
        res.json({
          runId: run.id,
          requested: 'pause',
          outcome: 'coalesced',
          ...ids,
          note: `a pause was sent to this run within the last ${recent.windowSeconds} s and the run pauses before its next step; no second signal was sent`,
        });
        return;
      }
      await sendClaimed('pause', run.id, () =>
        deps.temporal.workflow.getHandle(run.id).signal(pauseSignal, { ...controlRequest(caller, run.apiKeyId, ids.requestId, body.reason), pauseReason: body.pauseReason }),
      );
      res.status(202).json({ runId: run.id, requested: 'pause', outcome: 'signalled', ...ids, note: 'the run pauses before its next step' });
    },

    stopRun: async ({ caller, params, body, idempotencyKey }, res) => {
      const { run, ids } = await begin({ caller, runId: params.id, idempotencyKey }, res, 'stop');
      if (!(await recent.claim('stop', run.id))) {
        res.json({
          runId: run.id,
          requested: 'stop',
          outcome: 'already_stopping',
          ...ids,
          note: `a stop was sent to this run within the last ${recent.windowSeconds} s: it stops before its next step, or at once if paused; no second signal was sent`,
        });
        return;
      }
      await sendClaimed('stop', run.id, () => deps.temporal.workflow.getHandle(run.id).signal(stopSignal, controlRequest(caller, run.apiKeyId, ids.requestId, body.reason)));
      res.status(202).json({ runId: run.id, requested: 'stop', outcome: 'signalled', ...ids, note: 'the run stops before its next step, or at once if paused' });
    },

    resumeRun: async ({ caller, params, body, idempotencyKey }, res) => {
      const { run, ids } = await begin({ caller, runId: params.id, idempotencyKey }, res, 'resume');
      await sendResume(res, { ...controlRequest(caller, run.apiKeyId, ids.requestId, body.reason), requestId: ids.requestId }, { runId: run.id }, ids);
    },

    approveCall: ({ caller, params, body, idempotencyKey }, res) => decide('approve', { caller, runId: params.id, idempotencyKey }, body, res),
    denyCall: ({ caller, params, body, idempotencyKey }, res) => decide('deny', { caller, runId: params.id, idempotencyKey }, body, res),
  } satisfies Partial<RouteHandlers>;
}
