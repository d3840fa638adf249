import { InvalidArgumentError, type Command } from 'commander';
import { COST_GROUPS, costColumns, toCsv, type CostGroup } from '../core/costs';
import type { CostRow as StoredCostRow } from '../db/costs';
import { contextOf } from './context';
import { money, table, when } from './format';

/** A row of the report as the API sends it: the stored sums, the dollars as a JSON number. */
type CostRow = Omit<StoredCostRow, 'costUsd'> & { costUsd: number };

interface CostReport {
  from: string;
  to: string;
  groupBy: CostGroup[];
  rows: CostRow[];
  total: CostRow;
}

function groupList(value: string): string {
  const unknown = value.split(',').filter((part) => !(COST_GROUPS as readonly string[]).includes(part.trim()));
  if (unknown.length) throw new InvalidArgumentError(`unknown: ${unknown.join(', ')} (give any of ${COST_GROUPS.join(', ')}, comma-separated)`);
  return value;
}

/** What a row's dimensions say, as cells. */
function cellsOf(row: CostRow, groupBy: readonly CostGroup[]): string[] {
  const cells: string[] = [];
  if (groupBy.includes('hour')) cells.push(when(row.period));
  if (groupBy.includes('day')) cells.push(row.period?.slice(0, 10) ?? '');
  if (groupBy.includes('key')) cells.push(row.keyId ? `${row.keyPrefix ?? row.keyId}${row.keyLabel ? ` (${row.keyLabel})` : ''}` : '(none)');
  for (const dim of ['model', 'skill', 'tool'] as const) if (groupBy.includes(dim)) cells.push(row[dim] || '-');
  return cells;
}

export function registerCostCommands(program: Command): void {
  program
    .command('costs')
    .description("your tenant's spend, from the cost rollups: by model, skill, key, tool, hour or day")
    .option('--group-by <list>', `comma-separated: ${COST_GROUPS.join(', ')} (hour or day, not both)`, groupList)
    .option('--from <instant>', 'start, inclusive: an ISO date-time or a date (default: a week before --to)')
    .option('--to <instant>', 'end, exclusive (default: now)')
    .option('--csv', 'print CSV: a header line, then one line per row')
    .addHelpText('after', '\nExample:\n  governed costs --group-by model,day --from 2026-01-01 --csv > costs.csv')
    .action(async (options: { groupBy?: string; from?: string; to?: string; csv?: boolean }, command: Command) => {
      const ctx = contextOf(command);
      const report = await ctx.api.get<CostReport>('/costs', { groupBy: options.groupBy, from: options.from, to: options.to });
      if (options.csv) {
        process.stdout.write(toCsv(costColumns(report.groupBy), report.rows as unknown as Record<string, string | number | null>[]));
        return;
      }
      ctx.print(report, () => {
        const dims = costColumns(report.groupBy).filter((c) => !['costUsd', 'tokensIn', 'tokensOut', 'calls', 'keyId', 'keyLabel'].includes(c));
        const header = [...dims.map((d) => (d === 'keyPrefix' ? 'KEY' : d === 'period' ? (report.groupBy.includes('day') ? 'DAY' : 'HOUR') : d.toUpperCase())), 'COST', 'TOKENS IN', 'TOKENS OUT', 'CALLS'];
        const line = (row: CostRow, cells: string[]) => [...cells, money(row.costUsd), String(row.tokensIn), String(row.tokensOut), String(row.calls)];
        const range = `${when(report.from)} to ${when(report.to)}`;
        if (report.groupBy.length === 0) return `${range}\n${table(header, [line(report.total, [])])}`;
        if (report.rows.length === 0) return `${range}\nno spend`;
        const total = line(report.total, dims.map((_, i) => (i === 0 ? 'TOTAL' : '')));
        return `${range}\n${table(header, [...report.rows.map((row) => line(row, cellsOf(row, report.groupBy))), total])}`;
      });
    });
}
