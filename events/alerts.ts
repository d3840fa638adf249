import { and, asc, eq, lt } from 'drizzle-orm';
import type Redis from 'ioredis';
import { DEFAULT_ALERT_SETTINGS, type AlertCandidate, type AlertOutcome, type AlertSettings } from '../core/alerts';
import { tenantAlertSettings } from '../db/alert-settings';
import type { Db } from '../db/client';
import { alerts } from '../db/schema';
import type { Logger } from '../lib/logger';
import type { EventMetrics } from '../lib/metrics';
import { createFatigueController, type FatigueController } from './fatigue';
import type { WebhookPayload, WebhookSink } from './webhook';

/**
 * Alert budgets of their own, apart from the tenant's hourly cap. `denied_runs`: alerts about runs
 * whose authorization was denied — any key of the tenant can make one per submit, so a burst of them
 * must not spend the budget genuine alerts need (`ALERT_DENIED_RUNS_PER_HOUR`).
 */
export type AlertBudget = 'denied_runs';

/** What a handler raises: a candidate, and the budget it counts against when not the tenant's. */
export type RaisedAlert = AlertCandidate & { budget?: AlertBudget };

/** Denied-run alerts per tenant and clock hour, unless the deployment says otherwise. */
export const DEFAULT_DENIED_RUN_ALERTS_PER_HOUR = 10;

export interface Alerter {
  raise(candidate: RaisedAlert): Promise<AlertOutcome>;
  /**
   * Delivers alerts left pending longer than `olderThanMs` (their event ran out of attempts while a
   * sink was down); the number delivered now. Failures stay pending for the next sweep.
   */
  redeliverPending(olderThanMs: number): Promise<number>;
}

export interface AlerterOptions {
  db: Db;
  /** Used for the default fatigue controller; ignored when `fatigue` is given. */
  redis: Redis;
  logger: Logger;
  metrics: EventMetrics;
  webhook?: WebhookSink;
  fatigue?: FatigueController;
  /** A tenant's PUT of new settings takes effect within this long. */
  settingsCacheMs?: number;
  /** Fatigue settings of system alerts (no tenant). */
  systemSettings?: AlertSettings;
  /** The `denied_runs` budget: alerts per tenant and clock hour (never more than the tenant's `maxAlertsPerHour`). */
  deniedRunAlertsPerHour?: number;
}

type AlertRow = typeof alerts.$inferSelect;

/**
 * Turns a handler's candidate into at most one alert per (event, rule), through the fatigue
 * controller, recorded in `alerts`, delivered to the log and, when configured, the webhook.
 *
 * Exactly once, however often the event arrives and however many reactors race for it:
 * - the fatigue decision is remembered per (event, rule), so every racer gets the same one;
 * - the unique (event_id, rule) row is the record: one insert wins, the others read it;
 * - a `pending` row is delivered under its row lock, so racers take turns and the second finds it
 *   `sent`. A crash after the webhook accepted but before the row was marked `sent` delivers again
 *   on the retry with the same alert id, which the receiver can drop (`x-governed-alert-id`).
 */
export function createAlerter(options: AlerterOptions): Alerter {
  const { db, logger, metrics, webhook } = options;
  const fatigue = options.fatigue ?? createFatigueController({ redis: options.redis });
  const settingsCacheMs = options.settingsCacheMs ?? 5000;
  const systemSettings = options.systemSettings ?? DEFAULT_ALERT_SETTINGS;
  const budgets: Record<AlertBudget, number> = { denied_runs: options.deniedRunAlertsPerHour ?? DEFAULT_DENIED_RUN_ALERTS_PER_HOUR };
  const settingsCache = new Map<string, { loadedAt: number; settings: Promise<AlertSettings> }>();

  function settingsOf(tenantId: string | null): Promise<AlertSettings> {
    if (tenantId === null) return Promise.resolve(systemSettings);
    const cached = settingsCache.get(tenantId);
    if (cached && Date.now() - cached.loadedAt < settingsCacheMs) return cached.settings;
    // The promise is cached, so a burst of alerts of one tenant reads its settings once.
    const settings = tenantAlertSettings(db, tenantId);
    settingsCache.set(tenantId, { loadedAt: Date.now(), settings });
    settings.catch(() => settingsCache.delete(tenantId));
    return settings;
  }

  async function findAlert(candidate: AlertCandidate): Promise<AlertRow | undefined> {
    const [row] = await db
      .select()
      .from(alerts)
      .where(and(eq(alerts.eventId, candidate.eventId), eq(alerts.rule, candidate.rule)));
    return row;
  }

  /** A decided row: pending is delivered (again), sent and suppressed are answered as they are. */
  async function follow(row: AlertRow): Promise<AlertOutcome> {
    return row.status === 'pending' ? deliver(row.id) : outcomeOf(row);
  }

  function logSink(row: AlertRow): void {
    const { id, ...rest } = payloadOf(row);
    const fields = { alertId: id, ...rest };
    if (row.severity === 'HIGH' || row.severity === 'CRITICAL') logger.warn(fields, 'alert');
    else logger.info(fields, 'alert');
  }

  async function deliver(alertId: string): Promise<AlertOutcome> {
    let sent: AlertRow | undefined;
    let outcome: AlertOutcome;
    try {
      outcome = await db.transaction(async (tx) => {
        // Held across the webhook call: a racing reactor waits here, then finds the row sent.
        const [row] = await tx.select().from(alerts).where(eq(alerts.id, alertId)).for('update');
        if (!row) throw new Error(`alert ${alertId} vanished before delivery`);
        if (row.status !== 'pending') return outcomeOf(row);
        logSink(row);
        if (webhook) await webhook.deliver(payloadOf(row));
        const sinks = webhook ? ['log', 'webhook'] : ['log'];
        await tx.update(alerts).set({ status: 'sent', sinks, sentAt: new Date() }).where(eq(alerts.id, row.id));
        sent = row;
        return { alertId: row.id, status: 'sent', sinks };
      });
    } catch (err) {
      logger.warn({ alertId, err: err instanceof Error ? err.message : String(err) }, 'alert not delivered; it stays pending for the next attempt');
      throw err;
    }
    // Counted after the commit: a rolled-back "sent" was not sent.
    if (sent) metrics.alertsSent.inc({ domain: sent.domain, severity: sent.severity });
    return outcome;
  }

  return {
    async redeliverPending(olderThanMs) {
      const stranded = await db
        .select({ id: alerts.id })
        .from(alerts)
        .where(and(eq(alerts.status, 'pending'), lt(alerts.createdAt, new Date(Date.now() - olderThanMs))))
        .orderBy(asc(alerts.createdAt))
        .limit(100);
      let delivered = 0;
      for (const { id } of stranded) {
        const outcome = await deliver(id).catch(() => null);
        if (outcome?.status === 'sent') delivered += 1;
      }
      return delivered;
    },

    async raise(candidate) {
      const existing = await findAlert(candidate);
      if (existing) return follow(existing);

      const decision = await fatigue.check({
        tenantId: candidate.tenantId,
        domain: candidate.domain,
        dedupeKey: candidate.dedupeKey,
        settings: await settingsOf(candidate.tenantId),
        dedupWindowSeconds: candidate.dedupWindowSeconds,
        alertKey: `${candidate.eventId}:${candidate.rule}`,
        ...(candidate.budget ? { budget: { name: candidate.budget, maxPerHour: budgets[candidate.budget] } } : {}),
      });
      const [row] = await db
        .insert(alerts)
        .values({
          eventId: candidate.eventId,
          rule: candidate.rule,
          tenantId: candidate.tenantId,
          runId: candidate.runId,
          domain: candidate.domain,
          severity: candidate.severity,
          title: candidate.title,
          detail: candidate.detail,
          status: decision.allowed ? 'pending' : 'suppressed',
          suppressedReason: decision.allowed ? null : decision.reason,
        })
        .onConflictDoNothing({ target: [alerts.eventId, alerts.rule] })
        .returning();
      if (!row) {
        // Another reactor recorded this alert between our read and our insert.
        const winner = await findAlert(candidate);
        if (!winner) throw new Error(`alert for event ${candidate.eventId} rule ${candidate.rule} conflicted but cannot be read`);
        return follow(winner);
      }
      if (row.status === 'suppressed') {
        const outcome = outcomeOf(row);
        if (outcome.status === 'suppressed') metrics.alertsSuppressed.inc({ reason: outcome.reason });
        logger.debug({ alertId: row.id, rule: row.rule, eventId: row.eventId, tenantId: row.tenantId, dedupeKey: candidate.dedupeKey, reason: row.suppressedReason }, 'alert suppressed');
        return outcome;
      }
      return deliver(row.id);
    },
  };
}

function outcomeOf(row: AlertRow): AlertOutcome {
  if (row.status === 'sent') return { alertId: row.id, status: 'sent', sinks: row.sinks };
  if (row.status === 'suppressed' && row.suppressedReason) return { alertId: row.id, status: 'suppressed', reason: row.suppressedReason };
  throw new Error(`alert ${row.id} has status ${row.status} and no outcome`);
}

/** The webhook's body: the alert as recorded, so a retry sends exactly what the first attempt did. */
function payloadOf(row: AlertRow): WebhookPayload {
  return {
    id: row.id,
    eventId: row.eventId,
    rule: row.rule,
    tenantId: row.tenantId,
    runId: row.runId,
    domain: row.domain,
    severity: row.severity,
    title: row.title,
    detail: row.detail,
    createdAt: row.createdAt.toISOString(),
  };
}
