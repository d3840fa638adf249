/**
 * What the routes read beside their path: each query and body schema the contract names
 * (`api/contract.ts`), which validates them before a handler runs and publishes them as OpenAPI.
 */
import { z } from 'zod';
import { AUDIT_CHECKS, AUDIT_VERDICTS } from '../core/audit-reconciliation';
import { SUPPRESSION_REASONS } from '../core/alerts';
import { COST_GROUPS, DEFAULT_COST_RANGE_DAYS, MAX_COST_RANGE_DAYS, type CostGroup } from '../core/costs';
import { INCIDENT_STATUSES } from '../core/incidents';
import { RUN_PHASES, RUN_STATUSES } from '../core/phases';
import { REQUESTABLE_PAUSE_REASONS } from '../core/policy-check';
import type { RetentionSettings } from '../core/retention';
import { alerts } from '../db/schema';

const limit = (max: number, fallback: number) => z.coerce.number().int().min(1).max(max).default(fallback);
const cursor = z.string().max(200).optional();

export const runListQuery = z
  .object({
    status: z.enum(RUN_STATUSES).optional(),
    phase: z.enum(RUN_PHASES).optional(),
    limit: limit(200, 50),
    cursor,
  })
  .strict();

/** `?raw=1`: the content alone, with its own content type, for a pipe or a browser. */
export const outputQuery = z.object({ raw: z.enum(['0', '1', 'true', 'false']).optional() }).strict();

export const controlBody = z
  .object({
    reason: z.string().max(500).optional(),
    pauseReason: z.enum(REQUESTABLE_PAUSE_REASONS).optional(),
  })
  .strict();

/** An approval or denial of the tool call a run waits on, bound to the hash of the arguments the person saw. */
export const approvalBody = z
  .object({
    argsSha256: z.string().regex(/^[0-9a-f]{64}$/, 'the sha256 of the call, as `governed approvals list` shows it (64 hex characters)'),
    reason: z.string().max(500).optional(),
  })
  .strict();

export const approvalsQuery = z
  .object({
    status: z.enum(['pending', 'approved', 'denied', 'expired', 'all']).default('pending'),
    limit: limit(200, 50),
  })
  .strict();

export const findingsQuery = z
  .object({
    verdict: z.enum(AUDIT_VERDICTS).optional(),
    check: z.enum(AUDIT_CHECKS).optional(),
    limit: limit(200, 50),
    cursor,
  })
  .strict();

export const reportsQuery = z.object({ limit: z.coerce.number().int().min(1).max(100).optional() }).strict();

export const tenantPauseBody = z
  .object({
    reason: z.string().max(500).optional(),
    /** The incident the pause is about; it must be one of the tenant's. */
    incidentId: z.uuid().optional(),
  })
  .strict();
export const tenantResumeBody = z.object({ reason: z.string().max(500).optional() }).strict();
export const pushListQuery = z.object({ limit: limit(100, 20) }).strict();

/** Severities of real incidents: 'NONE' only marks a run's "no incident" record, which lists leave out. */
const LISTED_SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;

/**
 * One query parameter holding a comma-separated list (`severity=HIGH,CRITICAL`). A repeated
 * parameter arrives as an array and is refused, so a filter is never half-read.
 */
function commaSeparated<T extends readonly [string, ...string[]]>(name: string, values: T) {
  return z
    .string({ error: `give ${name} once, comma-separated (e.g. ${name}=${values.slice(0, 2).join(',')})` })
    .transform((value) => value.split(','))
    .pipe(z.array(z.enum(values)).min(1));
}

export const incidentListQuery = z
  .object({
    status: commaSeparated('status', INCIDENT_STATUSES).optional(),
    severity: commaSeparated('severity', LISTED_SEVERITIES).optional(),
    runId: z.uuid().optional(),
    limit: limit(200, 50),
    cursor,
  })
  .strict();

export const incidentChangeBody = z.object({ note: z.string().min(1).max(2000).optional() }).strict();

export const alertListQuery = z
  .object({
    status: z.enum(alerts.status.enumValues).optional(),
    reason: z.enum(SUPPRESSION_REASONS).optional(),
    limit: limit(200, 50),
    cursor,
  })
  .strict()
  // Only suppressed alerts have a reason: `status=sent&reason=DUPLICATE` is a mistake, not an empty page.
  .refine((q) => !q.reason || !q.status || q.status === 'suppressed', {
    path: ['reason'],
    message: 'only suppressed alerts have a reason: use status=suppressed or leave status out',
  });

const DAY_MS = 24 * 3600 * 1000;

/** An instant: an ISO 8601 date-time with its offset, or a date (its midnight, UTC). */
const instant = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()], { error: 'must be an ISO 8601 date-time with an offset (2026-01-31T00:00:00Z) or a date (2026-01-31)' })
  .transform((value) => new Date(value.length === 10 ? `${value}T00:00:00Z` : value));

export const costsQuery = z
  .object({
    groupBy: z
      .string({ error: `give groupBy once, comma-separated (e.g. groupBy=model,day; one or more of ${COST_GROUPS.join(', ')})` })
      .transform((value) => value.split(',').map((part) => part.trim()))
      .pipe(z.array(z.enum(COST_GROUPS)))
      .optional()
      .describe(`comma-separated, any of ${COST_GROUPS.join(', ')} (hour or day, not both); none: one row, the total`),
    from: instant.optional().describe(`start of the range, inclusive (hours starting at or after it); default: ${DEFAULT_COST_RANGE_DAYS} days before \`to\``),
    to: instant.optional().describe('end of the range, exclusive; default: now'),
    format: z.enum(['json', 'csv']).optional().describe('csv: the rows as text/csv (as does `Accept: text/csv`)'),
  })
  .strict()
  .transform((query, ctx) => {
    const groupBy = query.groupBy ?? [];
    const to = query.to ?? new Date();
    const from = query.from ?? new Date(to.getTime() - DEFAULT_COST_RANGE_DAYS * DAY_MS);
    if (new Set(groupBy).size !== groupBy.length) ctx.addIssue({ code: 'custom', path: ['groupBy'], message: 'names a dimension twice' });
    if (groupBy.includes('hour') && groupBy.includes('day')) ctx.addIssue({ code: 'custom', path: ['groupBy'], message: 'hour and day are both periods: give one' });
    if (from >= to) ctx.addIssue({ code: 'custom', path: ['from'], message: `must be before to (${to.toISOString()})` });
    else if (to.getTime() - from.getTime() > MAX_COST_RANGE_DAYS * DAY_MS) {
      ctx.addIssue({ code: 'custom', path: ['from'], message: `the range is longer than ${MAX_COST_RANGE_DAYS} days: ask for it in parts` });
    }
    return { groupBy: groupBy as CostGroup[], from, to, format: query.format };
  });

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

export const lessonsQuery = z
  .object({
    code: z.string().regex(/^[A-Z_]{1,64}$/, 'a failure or near-miss code, e.g. TOOL_DENIED').optional(),
    pattern: z.string().min(1).max(300).optional(),
    runId: z.uuid().optional(),
    limit: limit(200, 50),
    cursor,
  })
  .strict();

export const patternsQuery = z
  .object({
    minCount: z.coerce.number().int().min(1).max(1_000_000).default(1),
    limit: limit(200, 50),
  })
  .strict();

export const proposalsQuery = z
  .object({
    status: z.enum(['open', 'accepted', 'dismissed']).optional(),
    limit: limit(200, 50),
  })
  .strict();

export const acceptBody = z.object({ note: z.string().max(500).optional() }).strict();
export const dismissBody = z.object({}).strict();
