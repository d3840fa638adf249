import { and, eq, type SQL } from 'drizzle-orm';
import { saveAlertSettings, tenantAlertSettings } from '../db/alert-settings';
import type { Db } from '../db/client';
import { alerts } from '../db/schema';
import { actorOf } from './auth';
import { cursorTime, newestFirst, olderThanCursor, pageOf } from './paging';
import type { RouteHandlers } from './router';

/** The alerts the reactor decided on for the caller's tenant, and the tenant's fatigue settings. */
export function alertHandlers(deps: { db: Db }) {
  return {
    /** Newest first, any role. System alerts (no tenant) are nobody's to list here. */
    listAlerts: async ({ caller, query: { status, reason, limit, cursor } }, res) => {
      const filters: (SQL | undefined)[] = [eq(alerts.tenantId, caller.tenantId)];
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
    },

    /** The tenant's settings document, or the defaults when it never set any (admin only). */
    getAlertSettings: async ({ caller }, res) => {
      res.json(await tenantAlertSettings(deps.db, caller.tenantId));
    },

    /** Replaces the whole document (admin only); answers what is now stored. */
    putAlertSettings: async ({ caller, body }, res) => {
      await saveAlertSettings(deps.db, caller.tenantId, body, actorOf(caller));
      res.json(await tenantAlertSettings(deps.db, caller.tenantId));
    },
  } satisfies Partial<RouteHandlers>;
}
