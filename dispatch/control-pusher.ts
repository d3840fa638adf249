import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../db/client';
import {
  claimPush,
  duePushes,
  earlierPendingPush,
  finishPush,
  hasPendingDeliveries,
  pendingDeliveries,
  readPush,
  recordDeliveries,
  releasePush,
  skippedDeliveries,
  takeTargets,
  type DeliveryRecord,
  type StoredPush,
} from '../db/control-pushes';
import { controlPushes } from '../db/schema';
import { PUSH_CONCURRENCY_DEFAULT } from '../lib/config';
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
  /** How long one signal may wait for Temporal before the run is left to a later attempt. */
  pushTimeoutMs: number;
  /** Signals in flight at once (PUSH_CONCURRENCY). */
  concurrency?: number;
}

/** A run the push could not signal for a reason a retry cannot change; the push goes on without it. */
export interface SkippedRun {
  runId: string;
  reason: string;
}

/** How far a push got: its targets (null before it took them), the runs it is done with, and of those the ones it signalled and skipped. */
export interface Progress {
  pushId: number;
  totalRuns: number | null;
  reachedRuns: number;
  signalledRuns: number;
  skippedCount: number;
}

/**
 * What one attempt at a push did: delivered it (every target reached), went part of the way and
 * left the rest to the next attempt at once (`delivering`: its time ran out, or it was stopped),
 * stopped at a failure a retry may mend (`queued`, with a backoff; or waiting for the tenant's
 * earlier change), or found it held by another deliverer (`taken`).
 */
export type PushResult =
  | ({ state: 'pushed'; skippedRuns: SkippedRun[] } & Progress)
  | ({ state: 'delivering' } & Progress)
  | ({ state: 'queued'; error: string } & Progress)
  | ({ state: 'taken' } & Progress);

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
function describeSkipped(count: number, skipped: SkippedRun[]): string {
  const listed = skipped.map((s) => `${s.runId} (${s.reason})`).join('; ');
  return `pushed, but skipped ${count} run(s) that refused the signal for good: ${listed}`.slice(0, 1000);
}

/** Skipped runs an answer names (the push row counts them all; `GET /api/v1/tenant/pushes/:id` lists more). */
const SKIPPED_LISTED = 100;
/** Outcomes recorded in one write, at most; and how long one waits to be written. */
const RECORD_EVERY = 100;
const RECORD_WITHIN_MS = 250;
/** Run ids read ahead per page of the push's pending deliveries. */
const PAGE = 500;
/** Failed signals one run may cost a push that reaches other runs meanwhile before it is skipped. */
export const MAX_RUN_FAILURES = 5;

/** The lease an attempt holds, renewed with every write: longer than a signal may take and a write's gap. */
function leaseMs(deps: PusherDeps): number {
  return 3 * deps.pushTimeoutMs + 10_000;
}

const processClaimer = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

export interface DeliveryOptions {
  /** How long this attempt signals before it records its progress and leaves the rest to the next one. */
  budgetMs: number;
  /** Stops the attempt as a stopped dispatcher does: no new signal; those in flight are recorded. */
  signal?: AbortSignal;
  /** Called after each recorded batch (tests stop a delivery part way with it). */
  onProgress?: (progress: Progress) => void;
}

function progressOf(push: StoredPush): Progress {
  return { pushId: push.id, totalRuns: push.totalRuns, reachedRuns: push.reachedRuns, signalledRuns: push.signalledRuns ?? 0, skippedCount: push.skippedRuns };
}

/**
 * One attempt at a push, run by run. It takes the push (a lease, so two deliverers never work one
 * push at once, and one that died leaves it to another when its lease lapses), takes its targets once
 * (a delivery row per run, so a later attempt knows exactly who is left), then signals the pending
 * runs in run id order, `concurrency` at a time, each signal with its own `pushTimeoutMs`, and
 * records what became of each run in batches as it goes (signalled; gone, when its workflow had
 * closed; skipped, when it refuses the signal for good). A retry resumes with the runs still
 * pending: a run recorded as reached is never signalled again by this push (one signalled but not
 * yet recorded when its deliverer died is, and dedupes it by the push's `requestId`).
 *
 * It stops taking runs when its budget is spent (the next attempt is due at once), when it is
 * aborted, or at the first failure a retry may mend (Temporal unreachable or slow: due again after
 * a backoff that grows only while attempts reach no run). A run whose signal fails while others
 * succeed is charged the failure, and skipped at MAX_RUN_FAILURES: one run must never hold its
 * tenant's changes back, as a run at Temporal's signal limit does not. A tenant's pushes are
 * delivered in the order they were made: a push waits while an earlier one of its tenant is pending.
 */
export async function deliverPush(deps: PusherDeps, pushId: number, options: DeliveryOptions = { budgetMs: deps.pushTimeoutMs }): Promise<PushResult> {
  const claimer = `${processClaimer}:${pushId}:${randomUUID().slice(0, 8)}`;
  const lease = { claimer, leaseMs: leaseMs(deps), maxRunFailures: MAX_RUN_FAILURES };
  const current = await readPush(deps.db, pushId);
  if (!current) throw new Error(`no push ${pushId}`);
  if (current.pushedAt) return pushedResult(deps, current);
  const earlier = await earlierPendingPush(deps.db, current.tenantId, pushId);
  if (earlier !== undefined) return { state: 'queued', error: `waiting for the tenant's earlier change ${earlier}`, ...progressOf(current) };
  const push = await claimPush(deps.db, pushId, claimer, lease.leaseMs);
  if (!push) {
    const now = (await readPush(deps.db, pushId))!;
    return now.pushedAt ? pushedResult(deps, now) : { state: 'taken', ...progressOf(now) };
  }

  const started = Date.now();
  const signal = SIGNALS[push.signal as keyof typeof SIGNALS] as typeof pauseSignal;
  const payload = { ...push.payload, requestId: `push:${push.id}` } as PauseRequest;
  let stop: 'budget' | 'aborted' | 'failed' | 'lost' | 'unrecorded' | null = null;
  let failure: string | null = null;
  let successes = 0;
  const failures: DeliveryRecord[] = [];
  try {
    await takeTargets(deps.db, push);
  } catch (err) {
    return release(deps, push, claimer, { again: 'backoff', madeProgress: false, error: `taking the push's targets: ${messageOf(err)}` });
  }

  // The pending runs, read a page ahead; lanes take them one at a time.
  const queue: string[] = [];
  let after: string | null = null;
  let exhausted = false;
  let reading: Promise<void> | null = null;
  async function nextRun(): Promise<string | undefined> {
    while (queue.length === 0 && !exhausted) {
      reading ??= pendingDeliveries(deps.db, push!.id, after, PAGE)
        .then((ids) => {
          queue.push(...ids);
          after = ids.at(-1) ?? after;
          if (ids.length < PAGE) exhausted = true;
        })
        .finally(() => {
          reading = null;
        });
      await reading;
    }
    return queue.shift();
  }

  // Outcomes are written in batches, one write at a time, each renewing the lease.
  let unwritten: DeliveryRecord[] = [];
  let writing: Promise<void> = Promise.resolve();
  let lastWrite = Date.now();
  function write(): Promise<void> {
    const batch = unwritten;
    unwritten = [];
    lastWrite = Date.now();
    if (batch.length === 0) return writing;
    writing = writing.then(async () => {
      const stillMine = await recordDeliveries(deps.db, push!.id, batch, lease);
      if (!stillMine) stop ??= 'lost';
      const now = await readPush(deps.db, push!.id);
      if (now) options.onProgress?.(progressOf(now));
    });
    // What is signalled but not recorded is signalled again by the next attempt: once a write fails,
    // no lane takes another run (the others would go on signalling the whole queue otherwise).
    writing.catch(() => {
      stop ??= 'unrecorded';
    });
    return writing;
  }

  async function lane(): Promise<void> {
    for (;;) {
      if (!stop && options.signal?.aborted) stop = 'aborted';
      if (!stop && Date.now() - started >= options.budgetMs) stop = 'budget';
      if (stop) return;
      const runId = await nextRun();
      if (runId === undefined) return;
      try {
        await deps.temporal.withDeadline(Date.now() + deps.pushTimeoutMs, () => deps.temporal.workflow.getHandle(runId).signal(signal, payload));
        successes += 1;
        unwritten.push({ runId, outcome: 'signalled' });
      } catch (err) {
        const refusal = err instanceof WorkflowNotFoundError ? null : signalRefusal(err);
        if (err instanceof WorkflowNotFoundError) unwritten.push({ runId, outcome: 'gone' });
        else if (refusal !== null) unwritten.push({ runId, outcome: 'skipped', detail: refusal });
        else {
          failure ??= `run ${runId}: ${messageOf(err)}`;
          failures.push({ runId, outcome: 'failed', detail: messageOf(err).slice(0, 500) });
          stop ??= 'failed';
        }
      }
      if (unwritten.length >= RECORD_EVERY || Date.now() - lastWrite >= RECORD_WITHIN_MS) await write();
    }
  }

  const lanes = Array.from({ length: deps.concurrency ?? PUSH_CONCURRENCY_DEFAULT }, () => lane());
  try {
    await Promise.all(lanes);
    // A failure is charged to its run only when other runs took the signal meanwhile: then it is the run's, not Temporal's.
    if (successes > 0) unwritten.push(...failures);
    await write();
  } catch (err) {
    // The database failed us mid-way: what was recorded stays; the rest is for a later attempt.
    // The lanes still in a signal finish it and take no other run.
    stop ??= 'unrecorded';
    await Promise.allSettled(lanes);
    await writing.catch(() => {});
    return release(deps, push, claimer, { again: 'backoff', madeProgress: successes > 0, error: `recording the push's progress: ${messageOf(err)}` });
  }
  if (stop === 'lost') return { state: 'taken', ...progressOf((await readPush(deps.db, push.id))!) };
  if (stop === 'failed') return release(deps, push, claimer, { again: 'backoff', madeProgress: successes > 0, error: failure! });
  if (await hasPendingDeliveries(deps.db, push.id)) return release(deps, push, claimer, { again: 'now' });
  const skipped = await skippedDeliveries(deps.db, push.id, SKIPPED_LISTED);
  const done = await readPush(deps.db, push.id);
  const finished = await finishPush(deps.db, push.id, skipped.length ? describeSkipped(done?.skippedRuns ?? skipped.length, skipped) : null);
  return { state: 'pushed', skippedRuns: skipped, ...progressOf(finished!) };
}

/** Lets go of a push this attempt did not finish, and says where it stands. */
async function release(deps: PusherDeps, push: StoredPush, claimer: string, outcome: Parameters<typeof releasePush>[3]): Promise<PushResult> {
  const row = (await releasePush(deps.db, push.id, claimer, outcome)) ?? push;
  if (outcome.again === 'now') return { state: 'delivering', ...progressOf(row) };
  return { state: 'queued', error: outcome.error, ...progressOf(row) };
}

async function pushedResult(deps: PusherDeps, push: StoredPush): Promise<PushResult> {
  return { state: 'pushed', skippedRuns: await skippedDeliveries(deps.db, push.id, SKIPPED_LISTED), ...progressOf(push) };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Commits `change` with its push in one transaction, then delivers the push at once for as long as
 * `budgetMs` (the Temporal call timeout by default: a request answers within seconds). The change and
 * the promise to tell the live runs about it are durable together; the answer says whether they were
 * all told already, how many so far (the dispatcher goes on with the rest at once), or that they will be.
 */
export async function commitWithPush<T>(
  deps: PusherDeps,
  tenantId: string,
  change: (tx: DbOrTx) => Promise<T>,
  push: (result: T) => ControlPush,
  options: { budgetMs?: number } = {},
): Promise<{ result: T; push: PushResult }> {
  const { result, pushId } = await deps.db.transaction(async (tx) => {
    const result = await change(tx);
    return { result, pushId: await enqueuePush(tx, tenantId, push(result), { graceMs: committerGraceMs(deps.pushTimeoutMs) }) };
  });
  // Not a failure of the request: the push is queued and the dispatcher delivers it.
  const delivered = await deliverPush(deps, pushId, { budgetMs: options.budgetMs ?? deps.pushTimeoutMs }).catch(
    (err: unknown): PushResult => ({ state: 'queued', error: messageOf(err), pushId, totalRuns: null, reachedRuns: 0, signalledRuns: 0, skippedCount: 0 }),
  );
  return { result, push: delivered };
}

/** What live runs are told when their tenant is suspended or activated: re-check the policy now. */
export function tenantStatusPush(status: 'suspended' | 'active', actor: string): ControlPush {
  return { kind: status === 'active' ? 'tenant_activated' : 'tenant_suspended', signal: 'policyChanged', target: 'live', payload: { actor, reason: `tenant ${status}` } };
}

/**
 * Delivers the pushes that are due, oldest first, within one time slice (`budgetMs`) shared by
 * them: a push that needs longer records its progress and is due again at once, so the dispatcher's
 * other work (runs to start) and other tenants' pushes are not held behind one tenant's 10,000 runs.
 * One that fails waits for its backoff.
 */
export async function deliverPendingPushes(
  deps: PusherDeps & { limit: number; budgetMs: number; signal?: AbortSignal },
): Promise<{ pushed: number; queued: number; delivering: number; signalled: number; skippedRuns: SkippedRun[] }> {
  const started = Date.now();
  const counts = { pushed: 0, queued: 0, delivering: 0, signalled: 0 };
  const skippedRuns: SkippedRun[] = [];
  for (const id of await duePushes(deps.db, deps.limit)) {
    const budgetMs = deps.budgetMs - (Date.now() - started);
    if (budgetMs <= 0 || deps.signal?.aborted) {
      counts.delivering += 1;
      continue;
    }
    const before = (await readPush(deps.db, id))?.signalledRuns ?? 0;
    const result = await deliverPush(deps, id, { budgetMs, signal: deps.signal });
    counts.signalled += Math.max(0, result.signalledRuns - before);
    if (result.state === 'pushed') {
      counts.pushed += 1;
      skippedRuns.push(...result.skippedRuns);
    }
    if (result.state === 'queued') counts.queued += 1;
    if (result.state === 'delivering') counts.delivering += 1;
  }
  return { ...counts, skippedRuns };
}

/** Where a push's progress is read. */
export function pushProgressPath(pushId: number): string {
  return `/api/v1/tenant/pushes/${pushId}`;
}

export type PushAnswer =
  | { push: 'pushed'; pushId: number; totalRuns: number | null; reachedRuns: number; signalledRuns: number; skippedRuns?: SkippedRun[] }
  | { push: 'delivering' | 'queued'; pushId: number; totalRuns: number | null; reachedRuns: number; signalledRuns: number; progress: string; note: string };

/**
 * What the API answers about a change it committed: pushed to every live run (naming any that
 * refused it), delivering (how many runs were reached so far; the dispatcher goes on at once), or
 * queued (Temporal did not answer, or the tenant's earlier change is still on its way).
 */
export function describePush(result: PushResult): PushAnswer {
  const counts = { pushId: result.pushId, totalRuns: result.totalRuns, reachedRuns: result.reachedRuns, signalledRuns: result.signalledRuns };
  if (result.state === 'pushed') {
    return { push: 'pushed', ...counts, ...(result.skippedRuns.length ? { skippedRuns: result.skippedRuns } : {}) };
  }
  const progress = pushProgressPath(result.pushId);
  if (result.state === 'delivering' || result.state === 'taken') {
    const of = result.totalRuns === null ? '' : ` of ${result.totalRuns}`;
    return { push: 'delivering', ...counts, progress, note: `committed; ${result.reachedRuns}${of} live runs reached so far, the rest are being signalled now (GET ${progress})` };
  }
  return {
    push: 'queued',
    ...counts,
    progress,
    note: 'committed; live runs will be signalled as soon as Temporal answers (they also re-check on their own schedule)',
  };
}
