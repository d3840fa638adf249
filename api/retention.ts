import { Router } from 'express';
import { z } from 'zod';
import type { RetentionSettings } from '../core/retention';
import { describeZodError } from '../core/plan';
import type { Db, DbOrTx } from '../db/client';
import { saveRetentionSettings, tenantRetentionSettings, tombstoneOfTenant } from '../db/retention';
import { actorOf, callerOf, requireRole } from './auth';
import { HttpError } from './errors';

/** The settings document, typed by `RetentionSettings` (`core/retention.ts` says what each means). */
export const retentionSettingsSchema: z.ZodType<RetentionSettings> = z
  .object({
    runsDays: z.number().int().min(1).max(36_500),
    /** Outbox rows once published (or retracted); unpublished rows are never pruned. */
    outboxHours: z.number().int().min(1).max(876_000),
    /** Control pushes once delivered, with their per-run delivery rows; a push in progress is never pruned. */
    controlPushesHours: z.number().int().min(1).max(876_000),
    /** Alerts sent or suppressed; one still pending delivery is never pruned. */
    alertsDays: z.number().int().min(1).max(36_500),
    /** Write each run's records to the operator's export folder before they are removed. */
    exportBeforePrune: z.boolean(),
  })
  .strict()
  .refine((s) => s.outboxHours <= s.runsDays * 24 && s.controlPushesHours <= s.runsDays * 24 && s.alertsDays <= s.runsDays, {
    message: 'outboxHours, controlPushesHours and alertsDays may not keep records longer than runsDays',
  });

/** The tenant's retention settings (README, "Retention"), admin only. */
export function retentionRoutes(deps: { db: Db }): Router {
  const router = Router();

  /** The stored settings, or the defaults when the tenant never set any. */
  router.get('/tenant/retention', requireRole('admin'), async (_req, res) => {
    res.json(await tenantRetentionSettings(deps.db, callerOf(res).tenantId));
  });

  /** Replaces the whole document; answers what is now stored. The next retention pass applies it. */
  router.put('/tenant/retention', requireRole('admin'), async (req, res) => {
    const caller = callerOf(res);
    const parsed = retentionSettingsSchema.safeParse(req.body);
    if (!parsed.success) throw new HttpError(400, `invalid retention settings: ${describeZodError(parsed.error)}`);
    await saveRetentionSettings(deps.db, caller.tenantId, parsed.data, actorOf(caller));
    res.json(await tenantRetentionSettings(deps.db, caller.tenantId));
  });

  return router;
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
