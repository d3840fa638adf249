import { SKILL_NAMES } from './plan';
import { PRICE_TABLE } from './pricing';

/**
 * Cost attribution: what a spend report may be grouped by, the bounded label values of the spend
 * counter, and the CSV a report is exported as. The rollups themselves are `db/costs.ts`.
 */

/** What `GET /api/v1/costs?groupBy=` and `governed costs --group-by` take. `hour` and `day` are the period; at most one. */
export const COST_GROUPS = ['model', 'skill', 'key', 'tool', 'hour', 'day'] as const;
export type CostGroup = (typeof COST_GROUPS)[number];

/** The longest range one report covers: a year and a month of hours. */
export const MAX_COST_RANGE_DAYS = 400;
/** The range a report covers when it names no `from`: the last week. */
export const DEFAULT_COST_RANGE_DAYS = 7;

/** The skill a tool call's spend is counted under. */
export const TOOL_CALL_SKILL = 'tool';

/** The models the spend counter names; any other billed name is counted as `other`, a tool call's as `none`. */
export const COST_METRIC_MODELS = [...Object.keys(PRICE_TABLE).filter((m) => m !== 'default'), 'other', 'none'] as const;
export const COST_METRIC_SKILLS = [...SKILL_NAMES, TOOL_CALL_SKILL] as const;

/** A dated snapshot's suffix: `-2024-07-18`, or `-0613` (as `core/pricing.ts` reads them). */
const SNAPSHOT_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{4})$/;

/**
 * The counter's `model` label for a billed model: a listed model (or a dated snapshot of one) by
 * its name, anything else `other`. A provider may bill under any name: the label set must not grow
 * with what it sends.
 */
export function costMetricModel(model: string): string {
  if (model === '') return 'none';
  const listed = (name: string) => name !== 'default' && Object.hasOwn(PRICE_TABLE, name);
  if (listed(model)) return model;
  const base = model.replace(SNAPSHOT_SUFFIX, '');
  return base !== model && listed(base) ? base : 'other';
}

/** The counter's `skill` label: a known skill or `tool`, anything else `other`. */
export function costMetricSkill(skill: string): string {
  return (COST_METRIC_SKILLS as readonly string[]).includes(skill) ? skill : 'other';
}

/** A report's columns, in order: the dimensions grouped by, then the sums (the CSV header). */
export function costColumns(groupBy: readonly CostGroup[]): string[] {
  const dims: string[] = [];
  if (groupBy.includes('hour') || groupBy.includes('day')) dims.push('period');
  if (groupBy.includes('key')) dims.push('keyId', 'keyPrefix', 'keyLabel');
  for (const dim of ['model', 'skill', 'tool'] as const) if (groupBy.includes(dim)) dims.push(dim);
  return [...dims, 'costUsd', 'tokensIn', 'tokensOut', 'calls'];
}

/** One field of CSV (RFC 4180): quoted when it holds a comma, a quote or a line break. */
export function csvField(value: string | number | null | undefined): string {
  const text = value === null || value === undefined ? '' : String(value);
  // A leading =, +, - or @ would make a spreadsheet read the field as a formula.
  const safe = /^[=+\-@\t\r]/.test(text) && !/^-?\d/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** A header line and one line per row, CRLF-ended (RFC 4180). */
export function toCsv(columns: readonly string[], rows: readonly Record<string, string | number | null | undefined>[]): string {
  return [columns, ...rows.map((row) => columns.map((c) => row[c]))].map((fields) => fields.map(csvField).join(',') + '\r\n').join('');
}
