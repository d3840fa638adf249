import { Router } from 'express';
import { z } from 'zod';
import { COST_GROUPS, DEFAULT_COST_RANGE_DAYS, MAX_COST_RANGE_DAYS, costColumns, toCsv, type CostGroup } from '../core/costs';
import type { Db } from '../db/client';
import { costReport, type CostRow } from '../db/costs';
import { callerOf } from './auth';
import { parseQuery } from './paging';

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

function asJson(row: CostRow) {
  return { ...row, costUsd: Number(row.costUsd) };
}

/** The caller's tenant's spend, from the cost rollups: any role may read it. */
export function costRoutes(deps: { db: Db }): Router {
  const router = Router();

  router.get('/costs', async (req, res) => {
    const query = parseQuery(costsQuery, req.query);
    const { tenantId } = callerOf(res);
    const range = { tenantId, from: query.from, to: query.to };
    const rows = await costReport(deps.db, { ...range, groupBy: query.groupBy });
    const csv = query.format === 'csv' || (query.format === undefined && req.accepts(['application/json', 'text/csv']) === 'text/csv');
    if (csv) {
      res
        .type('text/csv; charset=utf-8')
        .attachment(`costs-${query.from.toISOString().slice(0, 10)}-${query.to.toISOString().slice(0, 10)}.csv`)
        .send(toCsv(costColumns(query.groupBy), rows as unknown as Record<string, string | number | null>[]));
      return;
    }
    const [total] = query.groupBy.length ? await costReport(deps.db, { ...range, groupBy: [] }) : rows;
    res.json({ from: query.from.toISOString(), to: query.to.toISOString(), groupBy: query.groupBy, rows: rows.map(asJson), total: asJson(total!) });
  });

  return router;
}
