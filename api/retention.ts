import type { Db, DbOrTx } from '../db/client';
import { saveRetentionSettings, tenantRetentionSettings, tombstoneOfTenant } from '../db/retention';
import { actorOf } from './auth';
import { HttpError } from './errors';
import type { RouteHandlers } from './router';

/** The tenant's retention settings (README, "Retention"), admin only. */
export function retentionHandlers(deps: { db: Db }) {
  return {
    /** The stored settings, or the defaults when the tenant never set any. */
    getRetention: async ({ caller }, res) => {
      res.json(await tenantRetentionSettings(deps.db, caller.tenantId));
    },

    /** Replaces the whole document; answers what is now stored. The next retention pass applies it. */
    putRetention: async ({ caller, body }, res) => {
      await saveRetentionSettings(deps.db, caller.tenantId, body, actorOf(caller));
      res.json(await tenantRetentionSettings(deps.db, caller.tenantId));
    },
  } satisfies Partial<RouteHandlers>;
}

/**
 * What a request about a run that is not there answers: 410 with its tombstone when the tenant's
 * retention removed it (when, how it ended, the audit's last verdict, whether and with what hash it
 * was exported), else 404 as for any unknown run.
 */
export async function runNotFound(db: DbOrTx, runId: string, tenantId: string): Promise<HttpError> {
  const tombstone = await tombstoneOfTenant(db, runId, tenantId);
  if (!tombstone) return new HttpError('RUN_NOT_FOUND', `run ${runId} not found`);
  return new HttpError('RUN_PRUNED', `run ${runId} was removed by retention at ${tombstone.prunedAt.toISOString()}`, {
    runId,
    phase: tombstone.phase,
    createdAt: tombstone.runCreatedAt.toISOString(),
    finishedAt: tombstone.runFinishedAt?.toISOString() ?? null,
    prunedAt: tombstone.prunedAt.toISOString(),
    auditVerdict: tombstone.auditVerdict,
    exported: tombstone.exportLocation !== null,
    exportSha256: tombstone.exportSha256,
  });
}
