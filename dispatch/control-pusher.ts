import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { and, asc, eq, isNull, lt, lte, sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../db/client';
import { liveRunsOfTenant } from '../db/runs';
import { controlPushes } from '../db/schema';
import { pauseSignal, policyChangedSignal, resumeSignal, type PauseRequest, type ResumeRequest } from '../workflows/messages';

/** The tag a tenant-wide pause leaves on each run it pauses, so the tenant-wide resume resumes only those. */
export const TENANT_PAUSE_TAG = 'tenant-pause';

export type ControlPush =
  | { kind: 'policy_changed' | 'tenant_suspended' | 'tenant_activated'; signal: 'policyChanged'; target: 'live'; payload: { actor: string; reason: string } }
  | { kind: 'tenant_paused'; signal: 'pause'; target: 'live'; payload: PauseRequest }
  | { kind: 'tenant_resumed'; signal: 'resume'; target: 'paused'; payload: ResumeRequest };

const SIGNALS = { policyChanged: policyChangedSignal, pause: pauseSignal, resume: resumeSignal } as const;

/**
 * How long the dispatcher leaves what the API committed (a run to start, a push to deliver) to the
 * API's own attempt, made at once and bounded by the Temporal call timeout: it takes over only an
 * attempt that never finished (the API died), instead of racing the API for it and leaving the
 * API unable to say what happened.
 */
export function committerGraceMs(temporalCallTimeoutMs: number): number {
  return 2 * temporalCallTimeoutMs;
}

/** Records the push in the caller's transaction: it exists exactly when the change it announces commits. */
export async function enqueuePush(tx: DbOrTx, tenantId: string, push: ControlPush, options: { graceMs: number }): Promise<number> {
  const [row] = await tx
    .insert(controlPushes)
    .values({
      tenantId,
      kind: push.kind,
      signal: push.signal,
      target: push.target,
      payload: { ...push.payload },
      nextAttemptAt: sql`now() + make_interval(secs => ${options.graceMs / 1000})`,
    })
    .returning({ id: controlPushes.id });
  return row!.id;
}

export interface PusherDeps {
  db: Db;
  temporal: Client;
  /** How long one push may wait for Temporal before it is left to a later attempt. */
  pushTimeoutMs: number;
}

/** A run the push could not signal for a reason a retry cannot change; the push goes on without it. */
export interface SkippedRun {
  runId: string;
  reason: string;
}

export type PushResult = { state: 'pushed'; signalledRuns: number; skippedRuns: SkippedRun[] } | { state: 'queued'; error: string } | { state: 'taken' };

/** gRPC INVALID_ARGUMENT: the server refused this request itself, and would refuse it again. */
const GRPC_INVALID_ARGUMENT = 3;
/** What the server says (history service, `ErrSignalsLimitExceeded`) once an execution has received `history.maximumSignalsPerExecution` signals. */
const SIGNAL_LIMIT_MESSAGE = /limit for signal events/i;

/** The server's own words when it refused a signal outright (INVALID_ARGUMENT, in the client's ServiceError cause); null for anything else. */
function refusedBecause(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    const { code, details } = e as { code?: unknown; details?: unknown };
    if (code === GRPC_INVALID_ARGUMENT && typeof details === 'string') return details;
  }
  return null;
}

/**
 * True when Temporal refused a signal because the run's execution has received as many as it
 * accepts (`history.maximumSignalsPerExecution`, 10,000 by default): the server answers
 * INVALID_ARGUMENT "exceeded workflow execution limit for signal events", and no later attempt
 * can succeed for this execution.
 */
export function isSignalLimitReached(err: unknown): boolean {
  return SIGNAL_LIMIT_MESSAGE.test(refusedBecause(err) ?? '');
}

/** Why a run cannot take a signal however often it is retried, or null when a retry may succeed. */
export function signalRefusal(err: unknown): string | null {
  const refused = refusedBecause(err);
  if (refused === null) return null;
  if (SIGNAL_LIMIT_MESSAGE.test(refused)) return `at Temporal's signal limit (history.maximumSignalsPerExecution): ${refused}`;
  return `Temporal refused the signal: ${refused}`;
}

/** What the push row keeps of the runs it skipped: how many, then as many of them as fit. */
function describeSkipped(skipped: SkippedRun[]): string {
  const listed = skipped.map((s) => `${s.runId} (${s.reason})`).join('; ');
  return `pushed, but skipped ${skipped.length} run(s) that refused the signal for good: ${listed}`.slice(0, 1000);
}

/** Longest wait between attempts of a push that keeps failing. */
const MAX_BACKOFF_SECONDS = 30;

/**
 * Signals every targeted run of the push's tenant, then marks it pushed; when a signal fails in a
 * way a retry may mend (Temporal unreachable or slow) the push stays pending with a backoff. A run
 * that finished meanwhile (no workflow) is passed over, and a run that refuses the signal for good
 * (at Temporal's signal limit) is skipped and named in `last_error`: one run must never hold back
 * its tenant's later changes, which are delivered in order. The row is locked while it is
 * delivered, so two pushers never deliver one push at once; a push delivered twice after a crash
 * is harmless because every signal carries the push's id as its `requestId`.
 */
export async function deliverPush(deps: PusherDeps, pushId: number): Promise<PushResult> {
  return deps.db.transaction(async (tx) => {
    const [push] = await tx
      .select()
      .from(controlPushes)
      .where(and(eq(controlPushes.id, pushId), isNull(controlPushes.pushedAt)))
      .for('update', { skipLocked: true });
    if (!push) return { state: 'taken' };
    // A tenant's changes reach its runs in the order they were made (a pause before its resume).
    const [earlier] = await tx
      .select({ id: controlPushes.id })
      .from(controlPushes)
      .where(and(eq(controlPushes.tenantId, push.tenantId), isNull(controlPushes.pushedAt), lt(controlPushes.id, push.id)))
      .limit(1);
    if (earlier) return { state: 'queued', error: `waiting for the tenant's earlier change ${earlier.id}` };
    const targets = await liveRunsOfTenant(tx, push.tenantId, { pausedOnly: push.target === 'paused' });
    const signal = SIGNALS[push.signal as keyof typeof SIGNALS];
    const payload = { ...push.payload, requestId: `push:${push.id}` };
    const results = await deps.temporal.withDeadline(Date.now() + deps.pushTimeoutMs, () =>
      Promise.allSettled(targets.map(({ id }) => deps.temporal.workflow.getHandle(id).signal(signal as typeof pauseSignal, payload))),
    );
    const skippedRuns: SkippedRun[] = [];
    let failure: { runId: string; reason: unknown } | undefined;
    results.forEach((result, i) => {
      if (result.status === 'fulfilled' || result.reason instanceof WorkflowNotFoundError) return;
      const refusal = signalRefusal(result.reason);
      if (refusal !== null) skippedRuns.push({ runId: targets[i]!.id, reason: refusal });
      else failure ??= { runId: targets[i]!.id, reason: result.reason };
    });
    if (failure) {
      const error = `run ${failure.runId}: ${failure.reason instanceof Error ? failure.reason.message : String(failure.reason)}`;
      await tx
        .update(controlPushes)
        .set({
          attempts: sql`${controlPushes.attempts} + 1`,
          lastError: error.slice(0, 1000),
          // clock_timestamp(): the attempt's end; now() is the transaction's start, before the wait for Temporal.
          nextAttemptAt: sql`clock_timestamp() + make_interval(secs => least(power(2, ${controlPushes.attempts}), ${MAX_BACKOFF_SECONDS}))`,
        })
        .where(eq(controlPushes.id, push.id));
      return { state: 'queued', error };
    }
    const signalledRuns = results.filter((r) => r.status === 'fulfilled').length;
    await tx
      .update(controlPushes)
      .set({ attempts: sql`${controlPushes.attempts} + 1`, pushedAt: sql`now()`, signalledRuns, lastError: skippedRuns.length ? describeSkipped(skippedRuns) : null })
      .where(eq(controlPushes.id, push.id));
    return { state: 'pushed', signalledRuns, skippedRuns };
  });
}

/**
 * Commits `change` with its push in one transaction, then tries to deliver the push at once. The
 * change and the promise to tell the live runs about it are durable together; the answer says
 * whether they were told already or will be.
 */
export async function commitWithPush<T>(
  deps: PusherDeps,
  tenantId: string,
  change: (tx: DbOrTx) => Promise<T>,
  push: (result: T) => ControlPush,
): Promise<{ result: T; push: PushResult }> {
  const { result, pushId } = await deps.db.transaction(async (tx) => {
    const result = await change(tx);
    return { result, pushId: await enqueuePush(tx, tenantId, push(result), { graceMs: committerGraceMs(deps.pushTimeoutMs) }) };
  });
  // Not a failure of the request: the push is queued and the dispatcher delivers it.
  const delivered = await deliverPush(deps, pushId).catch((err: unknown): PushResult => ({ state: 'queued', error: String(err) }));
  return { result, push: delivered };
}

/** What live runs are told when their tenant is suspended or activated: re-check the policy now. */
export function tenantStatusPush(status: 'suspended' | 'active', actor: string): ControlPush {
  return { kind: status === 'active' ? 'tenant_activated' : 'tenant_suspended', signal: 'policyChanged', target: 'live', payload: { actor, reason: `tenant ${status}` } };
}

/** Delivers the pushes that are due, oldest first; one that fails waits for its backoff. */
export async function deliverPendingPushes(deps: PusherDeps & { limit: number }): Promise<{ pushed: number; queued: number; skippedRuns: SkippedRun[] }> {
  const due = await deps.db
    .select({ id: controlPushes.id })
    .from(controlPushes)
    .where(and(isNull(controlPushes.pushedAt), lte(controlPushes.nextAttemptAt, sql`now()`)))
    .orderBy(asc(controlPushes.id))
    .limit(deps.limit);
  let pushed = 0;
  let queued = 0;
  const skippedRuns: SkippedRun[] = [];
  for (const { id } of due) {
    const result = await deliverPush(deps, id);
    if (result.state === 'pushed') {
      pushed += 1;
      skippedRuns.push(...result.skippedRuns);
    }
    if (result.state === 'queued') queued += 1;
  }
  return { pushed, queued, skippedRuns };
}

/** What the API answers about a change it committed: pushed to the live runs (naming any that refused it), or queued for it. */
export function describePush(
  result: PushResult,
): { push: 'pushed'; signalledRuns: number; skippedRuns?: SkippedRun[] } | { push: 'queued'; note: string } {
  if (result.state === 'pushed') {
    return { push: 'pushed', signalledRuns: result.signalledRuns, ...(result.skippedRuns.length ? { skippedRuns: result.skippedRuns } : {}) };
  }
  return { push: 'queued', note: 'committed; live runs will be signalled as soon as Temporal answers (they also re-check on their own schedule)' };
}
