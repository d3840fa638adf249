import { z } from 'zod';

/** Why the fatigue controller held an alert back (seed §13.6). */
export const SUPPRESSION_REASONS = ['DUPLICATE', 'DOMAIN_COOLDOWN', 'TENANT_RATE_LIMIT', 'DISABLED'] as const;
export type SuppressionReason = (typeof SUPPRESSION_REASONS)[number];

/** The domains alerts are grouped by for cooldowns. */
export const ALERT_DOMAINS = ['runs', 'incidents', 'audit', 'pauses', 'policies'] as const;
export type AlertDomain = (typeof ALERT_DOMAINS)[number];

/** A tenant's fatigue settings; PUT /api/v1/alert-settings replaces the whole document. */
export const alertSettingsSchema = z
  .object({
    /** The per-tenant switch: false suppresses every alert of the tenant as DISABLED. */
    enabled: z.boolean(),
    maxAlertsPerHour: z.number().int().min(1).max(100_000),
    dedupWindowSeconds: z.number().int().min(0).max(86_400),
    /** Seconds after an alert of a domain during which that domain's next alerts are held back. */
    domainCooldowns: z.partialRecord(z.enum(ALERT_DOMAINS), z.number().int().min(0).max(86_400)),
  })
  .strict();

export type AlertSettings = z.infer<typeof alertSettingsSchema>;

export const DEFAULT_ALERT_SETTINGS: AlertSettings = {
  enabled: true,
  maxAlertsPerHour: 100,
  dedupWindowSeconds: 60,
  domainCooldowns: {},
};

export type AlertSeverity = 'LOW' | 'MEDIUM' | 'HIGH' | 'CRITICAL';

/** What a handler asks to tell people; the alerter decides (fatigue) and delivers (sinks). */
export interface AlertCandidate {
  /** The outbox id of the event that raised it. */
  eventId: number;
  /** Which rule raised it, e.g. `run.failed`; one alert per (event, rule), however often the event arrives. */
  rule: string;
  tenantId: string | null;
  runId: string | null;
  domain: AlertDomain;
  severity: AlertSeverity;
  title: string;
  detail: Record<string, unknown>;
  /** Alerts with the same key within the dedup window are one alert. */
  dedupeKey: string;
  /** Overrides the tenant's dedup window, e.g. a threshold alert held to once per period. */
  dedupWindowSeconds?: number;
}

export type AlertOutcome =
  | { alertId: string; status: 'sent'; sinks: string[] }
  | { alertId: string; status: 'suppressed'; reason: SuppressionReason };
