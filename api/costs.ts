import { costColumns, toCsv } from '../core/costs';
import type { Db } from '../db/client';
import { costReport, type CostRow } from '../db/costs';
import type { RouteHandlers } from './router';

function asJson(row: CostRow) {
  return { ...row, costUsd: Number(row.costUsd) };
}

/** The caller's tenant's spend, from the cost rollups: any role may read it. */
export function costHandlers(deps: { db: Db }) {
  return {
    costs: async ({ caller: { tenantId }, query }, res, req) => {
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
    },
  } satisfies Partial<RouteHandlers>;
}
