import type { Response } from 'express';
import type { Client } from '@temporalio/client';
import { and, eq } from 'drizzle-orm';
import type { TenantStatus } from '../core/authorization';
import { samePolicyRules } from '../core/policy';
import type { Db } from '../db/client';
import { incidents } from '../db/schema';
import { currentPolicy, savePolicy, setTenantStatus } from '../db/tenancy';
import { latestTenantPushes, readTenantPush, skippedDeliveries, type StoredPush } from '../db/control-pushes';
import { TENANT_PAUSE_TAG, commitWithPush, type ControlPush, describePush, pushProgressPath, tenantStatusPush } from '../dispatch/control-pusher';
import { actorOf, type Caller } from './auth';
import { HttpError } from './errors';
import type { RouteHandlers } from './router';

export interface PolicyRoutesDeps {
  db: Db;
  temporal: Client;
  temporalCallTimeoutMs: number;
  /** Signals a push has in flight at once (PUSH_CONCURRENCY). */
  pushConcurrency?: number;
}

/** Skipped runs a push's progress lists (it counts them all). */
const SKIPPED_LISTED = 100;

/**
 * Where a push stands: pushed (every target reached), delivering (taken by a deliverer now, or due
 * now), or waiting (for its next attempt after a failure, or for the tenant's earlier change).
 */
export function pushView(push: StoredPush, now = new Date()) {
  const state = push.pushedAt
    ? 'pushed'
    : (push.claimedUntil && push.claimedUntil > now) || push.nextAttemptAt <= now
      ? 'delivering'
      : 'waiting';
  return {
    pushId: push.id,
    kind: push.kind,
    state,
    createdAt: push.createdAt.toISOString(),
    totalRuns: push.totalRuns,
    reachedRuns: push.reachedRuns,
    signalledRuns: push.signalledRuns ?? 0,
    skippedCount: push.skippedRuns,
    attempts: push.attempts,
    nextAttemptAt: push.pushedAt ? null : push.nextAttemptAt.toISOString(),
    pushedAt: push.pushedAt?.toISOString() ?? null,
    lastError: push.lastError,
    progress: pushProgressPath(push.id),
  };
}

/** What the tenant's live runs are told of a new policy version: re-check the policy now. */
export function policyChangePush(version: number, actor: string, why?: string): ControlPush {
  return { kind: 'policy_changed', signal: 'policyChanged', target: 'live', payload: { actor, reason: `policy version ${version}${why ? ` (${why})` : ''}` } };
}

/**
 * The caller's tenant as a whole (admin only): its policy, where every change is a new version, its
 * status, and a pause over all of its runs. Each change is committed with the push that tells its
 * live runs, so a change made while Temporal is down still reaches them (see dispatch/).
 */
export function policyHandlers(deps: PolicyRoutesDeps) {
  const pusher = { db: deps.db, temporal: deps.temporal, pushTimeoutMs: deps.temporalCallTimeoutMs, concurrency: deps.pushConcurrency };

  async function setStatus(caller: Caller, status: TenantStatus, res: Response) {
    const { push } = await commitWithPush(
      pusher,
      caller.tenantId,
      (tx) => setTenantStatus(tx, caller.tenantId, status),
      () => tenantStatusPush(status, actorOf(caller)),
    );
    res.json({ tenantId: caller.tenantId, status, ...describePush(push) });
  }

  return {
    getPolicy: async ({ caller }, res) => {
      res.json(await currentPolicy(deps.db, caller.tenantId));
    },

    putPolicy: async ({ caller, body: rules }, res) => {
      // The same policy again (a retried PUT): no new version, and nothing pushed to the live runs.
      const current = await currentPolicy(deps.db, caller.tenantId);
      if (samePolicyRules(current.rules, rules)) {
        res.json({ ...current, changed: false });
        return;
      }
      const { result: saved, push } = await commitWithPush(
        pusher,
        caller.tenantId,
        (tx) => savePolicy(tx, caller.tenantId, rules, actorOf(caller)),
        (saved) => policyChangePush(saved.version, actorOf(caller)),
      );
      res.json({ ...saved, changed: true, ...describePush(push) });
    },

    suspendTenant: ({ caller }, res) => setStatus(caller, 'suspended', res),
    activateTenant: ({ caller }, res) => setStatus(caller, 'active', res),

    /** Pauses every live run of the tenant (MANUAL_PAUSE); each keeps the tag the tenant-wide resume looks for. */
    pauseTenant: async ({ caller, body }, res) => {
      if (body.incidentId) {
        const [incident] = await deps.db
          .select({ id: incidents.id })
          .from(incidents)
          .where(and(eq(incidents.id, body.incidentId), eq(incidents.tenantId, caller.tenantId)));
        if (!incident) throw new HttpError(404, `incident ${body.incidentId} not found`);
      }
      const reason = [body.incidentId && `incident ${body.incidentId}`, body.reason].filter(Boolean).join(': ') || 'tenant-wide pause';
      const { push } = await commitWithPush(
        pusher,
        caller.tenantId,
        async () => undefined,
        () => ({
          kind: 'tenant_paused',
          signal: 'pause',
          target: 'live',
          payload: { pauseReason: 'MANUAL_PAUSE', reason, actor: actorOf(caller), authority: 'TENANT_ADMIN', tag: TENANT_PAUSE_TAG },
        }),
      );
      res.status(202).json({ tenantId: caller.tenantId, requested: 'pause', reason, ...describePush(push) });
    },

    /** Resumes the runs the tenant-wide pause paused; pauses of any other origin stay. */
    resumeTenant: async ({ caller, body }, res) => {
      const { push } = await commitWithPush(
        pusher,
        caller.tenantId,
        async () => undefined,
        () => ({
          kind: 'tenant_resumed',
          signal: 'resume',
          target: 'paused',
          payload: { actor: actorOf(caller), authority: 'TENANT_ADMIN', reason: body.reason ?? 'tenant-wide resume', ifPauseTag: TENANT_PAUSE_TAG },
        }),
      );
      res.status(202).json({ tenantId: caller.tenantId, requested: 'resume', ...describePush(push) });
    },

    /** The tenant's latest pushes (its changes on their way to its live runs), newest first. */
    listPushes: async ({ caller, query }, res) => {
      const rows = await latestTenantPushes(deps.db, caller.tenantId, query.limit);
      res.json({ pushes: rows.map((row) => pushView(row)) });
    },

    /** One push's progress: how many of its runs were reached, signalled and skipped (listed), and whether it is done. */
    getPush: async ({ caller, params: { id: pushId } }, res) => {
      const push = await readTenantPush(deps.db, caller.tenantId, pushId);
      if (!push) throw new HttpError(404, `push ${pushId} not found`);
      res.json({ ...pushView(push), skippedRuns: await skippedDeliveries(deps.db, push.id, SKIPPED_LISTED) });
    },
  } satisfies Partial<RouteHandlers>;
}
