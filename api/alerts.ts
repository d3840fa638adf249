import { Router } from 'express';
import { and, eq, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { alertSettingsSchema, SUPPRESSION_REASONS } from '../core/alerts';
import { describeZodError } from '../core/plan';
import { saveAlertSettings, tenantAlertSettings } from '../db/alert-settings';
import type { Db } from '../db/client';
import { alerts } from '../db/schema';
import { actorOf, callerOf, requireRole } from './auth';
import { HttpError } from './errors';
import { cursorTime, newestFirst, olderThanCursor, pageOf, parseQuery } from './paging';

export const listQuery = z
  .object({
    status: z.enum(alerts.status.enumValues).optional(),
    reason: z.enum(SUPPRESSION_REASONS).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional(),
  })
  .strict()
  // Only suppressed alerts have a reason: `status=sent&reason=DUPLICATE` is a mistake, not an empty page.
  .refine((q) => !q.reason || !q.status || q.status === 'suppressed', {
    path: ['reason'],
    message: 'only suppressed alerts have a reason: use status=suppressed or leave status out',
  });

/** The alerts the reactor decided on for the caller's tenant, and the tenant's fatigue settings. */
export function alertRoutes(deps: { db: Db }): Router {
  const router = Router();

  /** Newest first, any role. System alerts (no tenant) are nobody's to list here. */
  router.get('/alerts', async (req, res) => {
    const { status, reason, limit, cursor } = parseQuery(listQuery, req.query);
    const filters: (SQL | undefined)[] = [eq(alerts.tenantId, callerOf(res).tenantId)];
    if (status) filters.push(eq(alerts.status, status));
    if (reason) filters.push(eq(alerts.suppressedReason, reason));
    if (cursor) filters.push(olderThanCursor(alerts.createdAt, alerts.id, cursor));
    const rows = await deps.db
      .select({
        id: alerts.id,
        eventId: alerts.eventId,
        rule: alerts.rule,
        runId: alerts.runId,
        domain: alerts.domain,
        severity: alerts.severity,
        title: alerts.title,
        detail: alerts.detail,
        status: alerts.status,
        suppressedReason: alerts.suppressedReason,
        sinks: alerts.sinks,
        createdAt: alerts.createdAt,
        sentAt: alerts.sentAt,
        cursorAt: cursorTime(alerts.createdAt),
      })
      .from(alerts)
      .where(and(...filters))
      .orderBy(...newestFirst(alerts.createdAt, alerts.id))
      .limit(limit + 1);
    const { page, nextCursor } = pageOf(rows, limit, (row) => row.id);
    res.json({ alerts: page, nextCursor });
  });

  /** The tenant's settings document, or the defaults when it never set any (admin only). */
  router.get('/alert-settings', requireRole('admin'), async (_req, res) => {
    res.json(await tenantAlertSettings(deps.db, callerOf(res).tenantId));
  });

  /** Replaces the whole document (admin only); answers what is now stored. */
  router.put('/alert-settings', requireRole('admin'), async (req, res) => {
    const caller = callerOf(res);
    const parsed = alertSettingsSchema.safeParse(req.body);
    if (!parsed.success) throw new HttpError(400, `invalid alert settings: ${describeZodError(parsed.error)}`);
    await saveAlertSettings(deps.db, caller.tenantId, parsed.data, actorOf(caller));
    res.json(await tenantAlertSettings(deps.db, caller.tenantId));
  });

  return router;
}
