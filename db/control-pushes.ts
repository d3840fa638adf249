import { and, asc, count, eq, gt, isNull, lt, lte, or, sql, type SQL } from 'drizzle-orm';
import type { Db, DbOrTx } from './client';
import { liveRunsOfTenant } from './runs';
import { controlPushDeliveries, controlPushes } from './schema';

/**
 * A push's bookkeeping (`control_pushes` and its delivery rows): who delivers it (a lease), the runs
 * it targets (taken once, a row each), and how far it got. dispatch/control-pusher.ts does the
 * signalling; every step of it that must outlive a crash is one statement (or transaction) here.
 */

export type StoredPush = typeof controlPushes.$inferSelect;

/** What a reader learns of a push: its counts, and whether it is done. */
export interface PushProgress {
  pushId: number;
  kind: string;
  /** Null until its delivery began and took its targets. */
  totalRuns: number | null;
  reachedRuns: number;
  signalledRuns: number;
  skippedRuns: number;
  attempts: number;
  pushedAt: Date | null;
  lastError: string | null;
}

export function progressOf(push: StoredPush): PushProgress {
  return {
    pushId: push.id,
    kind: push.kind,
    totalRuns: push.totalRuns,
    reachedRuns: push.reachedRuns,
    signalledRuns: push.signalledRuns ?? 0,
    skippedRuns: push.skippedRuns,
    attempts: push.attempts,
    pushedAt: push.pushedAt,
    lastError: push.lastError,
  };
}

export async function readPush(db: DbOrTx, pushId: number): Promise<StoredPush | undefined> {
  const [row] = await db.select().from(controlPushes).where(eq(controlPushes.id, pushId));
  return row;
}

/** The tenant's push, or undefined when there is none with that id (or it is another tenant's). */
export async function readTenantPush(db: DbOrTx, tenantId: string, pushId: number): Promise<StoredPush | undefined> {
  const [row] = await db
    .select()
    .from(controlPushes)
    .where(and(eq(controlPushes.id, pushId), eq(controlPushes.tenantId, tenantId)));
  return row;
}

/** The tenant's latest pushes, newest first. */
export async function latestTenantPushes(db: DbOrTx, tenantId: string, limit: number): Promise<StoredPush[]> {
  return db.select().from(controlPushes).where(eq(controlPushes.tenantId, tenantId)).orderBy(sql`${controlPushes.id} desc`).limit(limit);
}

/**
 * Takes the push for `claimer` until the lease lapses, counting an attempt: only a pending push
 * that nobody holds (or whose holder let its lease lapse: it died) can be taken.
 */
export async function claimPush(db: DbOrTx, pushId: number, claimer: string, leaseMs: number): Promise<StoredPush | undefined> {
  const [row] = await db
    .update(controlPushes)
    .set({
      claimedBy: claimer,
      claimedUntil: sql`clock_timestamp() + make_interval(secs => ${leaseMs / 1000})`,
      attempts: sql`${controlPushes.attempts} + 1`,
    })
    .where(
      and(
        eq(controlPushes.id, pushId),
        isNull(controlPushes.pushedAt),
        or(isNull(controlPushes.claimedUntil), lt(controlPushes.claimedUntil, sql`clock_timestamp()`)),
      ),
    )
    .returning();
  return row;
}

/** A pending push of the same tenant made before this one: the tenant's changes reach its runs in order. */
export async function earlierPendingPush(db: DbOrTx, tenantId: string, pushId: number): Promise<number | undefined> {
  const [earlier] = await db
    .select({ id: controlPushes.id })
    .from(controlPushes)
    .where(and(eq(controlPushes.tenantId, tenantId), isNull(controlPushes.pushedAt), lt(controlPushes.id, pushId)))
    .limit(1);
  return earlier?.id;
}

/** The runs the tenant's pushes of this kind signalled (a subquery of run ids). */
function runsSignalledBy(tenantId: string, kind: StoredPush['kind']): SQL {
  return sql`(select d.run_id from ${controlPushDeliveries} d join ${controlPushes} p on p.id = d.push_id
     where p.tenant_id = ${tenantId} and p.kind = ${kind} and d.outcome = 'signalled')`;
}

/** Rows per insert of delivery rows (two parameters each, well inside Postgres's 65,535). */
const TARGETS_PER_INSERT = 5000;

/**
 * The push's targets, taken once: a delivery row per run it must reach (every live run of the
 * tenant with a workflow, or only the paused ones), and their count on the push. A second call, by
 * a deliverer that took over, finds them taken and returns the count.
 */
export async function takeTargets(db: Db, push: StoredPush): Promise<number> {
  if (push.totalRuns !== null) return push.totalRuns;
  return db.transaction(async (tx) => {
    const [locked] = await tx.select({ totalRuns: controlPushes.totalRuns }).from(controlPushes).where(eq(controlPushes.id, push.id)).for('update');
    if (locked?.totalRuns !== null && locked?.totalRuns !== undefined) return locked.totalRuns;
    const targets = await liveRunsOfTenant(tx, push.tenantId, {
      pausedOnly: push.target === 'paused',
      // A tenant-wide resume reaches every run a tenant-wide pause reached, paused yet or not.
      ...(push.kind === 'tenant_resumed' ? { orAmong: runsSignalledBy(push.tenantId, 'tenant_paused') } : {}),
    });
    for (let i = 0; i < targets.length; i += TARGETS_PER_INSERT) {
      await tx
        .insert(controlPushDeliveries)
        .values(targets.slice(i, i + TARGETS_PER_INSERT).map(({ id }) => ({ pushId: push.id, runId: id })))
        .onConflictDoNothing();
    }
    await tx.update(controlPushes).set({ totalRuns: targets.length }).where(eq(controlPushes.id, push.id));
    return targets.length;
  });
}

/** The next runs still to reach, in run id order after `afterRunId`. */
export async function pendingDeliveries(db: DbOrTx, pushId: number, afterRunId: string | null, limit: number): Promise<string[]> {
  const rows = await db
    .select({ runId: controlPushDeliveries.runId })
    .from(controlPushDeliveries)
    .where(
      and(
        eq(controlPushDeliveries.pushId, pushId),
        eq(controlPushDeliveries.outcome, 'pending'),
        afterRunId === null ? undefined : gt(controlPushDeliveries.runId, afterRunId),
      ),
    )
    .orderBy(asc(controlPushDeliveries.runId))
    .limit(limit);
  return rows.map((r) => r.runId);
}

export async function hasPendingDeliveries(db: DbOrTx, pushId: number): Promise<boolean> {
  return (await pendingDeliveries(db, pushId, null, 1)).length > 0;
}

/** A run the push is done with, or a failed signal charged to its run. */
export type DeliveryRecord =
  | { runId: string; outcome: 'signalled' | 'gone' }
  | { runId: string; outcome: 'skipped'; detail: string }
  | { runId: string; outcome: 'failed'; detail: string };

/**
 * Records what became of some of the push's runs, and renews the lease of `claimer`, in one
 * transaction. Only pending rows move, and the push's counts grow by the rows that did: a run two
 * deliverers both reached (one took over from the other) is counted once. A failure charged to its
 * run is counted on the row; at `maxRunFailures` the run is skipped with it. Returns whether the
 * lease is still the claimer's.
 */
export async function recordDeliveries(
  db: Db,
  pushId: number,
  records: DeliveryRecord[],
  lease: { claimer: string; leaseMs: number; maxRunFailures: number },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const reached = records.filter((r) => r.outcome !== 'failed');
    const failed = records.filter((r) => r.outcome === 'failed');
    const moved: { outcome: string }[] = [];
    if (reached.length) {
      moved.push(
        ...(await tx.execute<{ outcome: string }>(sql`
          update control_push_deliveries d
             set outcome = v.outcome, detail = v.detail, reached_at = clock_timestamp()
            from jsonb_to_recordset(${JSON.stringify(reached.map((r) => ({ run_id: r.runId, outcome: r.outcome, detail: 'detail' in r ? r.detail : null })))}::jsonb)
                 as v(run_id uuid, outcome text, detail text)
           where d.push_id = ${pushId} and d.run_id = v.run_id and d.outcome = 'pending'
          returning d.outcome`)),
      );
    }
    if (failed.length) {
      moved.push(
        ...(await tx.execute<{ outcome: string }>(sql`
          update control_push_deliveries d
             set attempts = d.attempts + 1,
                 detail = case when d.attempts + 1 >= ${lease.maxRunFailures}
                               then ${`failed ${lease.maxRunFailures} times while the push reached other runs; last: `} || v.detail
                               else v.detail end,
                 outcome = case when d.attempts + 1 >= ${lease.maxRunFailures} then 'skipped' else 'pending' end,
                 reached_at = case when d.attempts + 1 >= ${lease.maxRunFailures} then clock_timestamp() end
            from jsonb_to_recordset(${JSON.stringify(failed.map((r) => ({ run_id: r.runId, detail: r.detail })))}::jsonb) as v(run_id uuid, detail text)
           where d.push_id = ${pushId} and d.run_id = v.run_id and d.outcome = 'pending'
          returning d.outcome`)),
      );
    }
    const signalled = moved.filter((m) => m.outcome === 'signalled').length;
    const skipped = moved.filter((m) => m.outcome === 'skipped').length;
    const done = moved.filter((m) => m.outcome !== 'pending').length;
    const [row] = await tx
      .update(controlPushes)
      .set({
        reachedRuns: sql`${controlPushes.reachedRuns} + ${done}`,
        signalledRuns: sql`coalesce(${controlPushes.signalledRuns}, 0) + ${signalled}`,
        skippedRuns: sql`${controlPushes.skippedRuns} + ${skipped}`,
        claimedUntil: sql`case when ${controlPushes.claimedBy} = ${lease.claimer} then clock_timestamp() + make_interval(secs => ${lease.leaseMs / 1000}) else ${controlPushes.claimedUntil} end`,
      })
      .where(eq(controlPushes.id, pushId))
      .returning({ claimedBy: controlPushes.claimedBy });
    return row?.claimedBy === lease.claimer;
  });
}

/** The runs the push skipped, with why, as many as `limit`. */
export async function skippedDeliveries(db: DbOrTx, pushId: number, limit: number): Promise<{ runId: string; reason: string }[]> {
  const rows = await db
    .select({ runId: controlPushDeliveries.runId, detail: controlPushDeliveries.detail })
    .from(controlPushDeliveries)
    .where(and(eq(controlPushDeliveries.pushId, pushId), eq(controlPushDeliveries.outcome, 'skipped')))
    .orderBy(asc(controlPushDeliveries.runId))
    .limit(limit);
  return rows.map((r) => ({ runId: r.runId, reason: r.detail ?? 'skipped' }));
}

/** Marks the push delivered (no run left pending) and lets go of it; `lastError` names what it skipped. */
export async function finishPush(db: DbOrTx, pushId: number, lastError: string | null): Promise<StoredPush | undefined> {
  const [row] = await db
    .update(controlPushes)
    .set({ pushedAt: sql`now()`, claimedBy: null, claimedUntil: null, lastError, stalledAttempts: 0 })
    .where(and(eq(controlPushes.id, pushId), isNull(controlPushes.pushedAt)))
    .returning();
  return row ?? readPush(db, pushId);
}

/** Longest wait between attempts of a push that keeps reaching no run. */
const MAX_BACKOFF_SECONDS = 30;

/**
 * Lets go of a push not finished: due again at once (its time slice ran out, or its deliverer was
 * stopped), or after a backoff that grows with the attempts in a row that reached no run (Temporal
 * is unreachable). Only the lease's holder lets go.
 */
export async function releasePush(
  db: DbOrTx,
  pushId: number,
  claimer: string,
  outcome: { again: 'now' } | { again: 'backoff'; madeProgress: boolean; error: string },
): Promise<StoredPush | undefined> {
  const stalled = outcome.again === 'backoff' && !outcome.madeProgress ? sql`${controlPushes.stalledAttempts} + 1` : sql`0`;
  const [row] = await db
    .update(controlPushes)
    .set({
      claimedBy: null,
      claimedUntil: null,
      stalledAttempts: stalled,
      ...(outcome.again === 'backoff' ? { lastError: outcome.error.slice(0, 1000) } : {}),
      // clock_timestamp(): the attempt's end, not its transaction's start.
      nextAttemptAt:
        outcome.again === 'now'
          ? sql`clock_timestamp()`
          : sql`clock_timestamp() + make_interval(secs => least(power(2, ${stalled}), ${MAX_BACKOFF_SECONDS}))`,
    })
    .where(and(eq(controlPushes.id, pushId), eq(controlPushes.claimedBy, claimer)))
    .returning();
  return row ?? readPush(db, pushId);
}

/** Pushes due now that nobody holds, oldest first. */
export async function duePushes(db: DbOrTx, limit: number): Promise<number[]> {
  const rows = await db
    .select({ id: controlPushes.id })
    .from(controlPushes)
    .where(
      and(
        isNull(controlPushes.pushedAt),
        lte(controlPushes.nextAttemptAt, sql`now()`),
        or(isNull(controlPushes.claimedUntil), lt(controlPushes.claimedUntil, sql`now()`)),
      ),
    )
    .orderBy(asc(controlPushes.id))
    .limit(limit);
  return rows.map((r) => r.id);
}

/** How many of the push's runs ended each way (for a reader, and for tests). */
export async function deliveryCounts(db: DbOrTx, pushId: number): Promise<Record<string, number>> {
  const rows = await db
    .select({ outcome: controlPushDeliveries.outcome, n: count() })
    .from(controlPushDeliveries)
    .where(eq(controlPushDeliveries.pushId, pushId))
    .groupBy(controlPushDeliveries.outcome);
  return Object.fromEntries(rows.map((r) => [r.outcome, r.n]));
}
