import { Command, InvalidArgumentError } from 'commander';
import { desc } from 'drizzle-orm';
import { staleRunReports } from '../../db/schema';
import { withDb } from './with-db';

function parseLimit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new InvalidArgumentError('limit must be a whole number from 1 to 100');
  return n;
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${(seconds / 3600).toFixed(1)}h`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const program = new Command('report:stale')
  .description('print the stale-run report written by the stale-run-report cron workflow')
  .option('--limit <n>', 'the last n reports instead of the latest', parseLimit)
  .option('--json', 'print JSON')
  .showHelpAfterError()
  .action(async (opts: { limit?: number; json?: boolean }) => {
    const reports = await withDb((db) =>
      db.select().from(staleRunReports).orderBy(desc(staleRunReports.generatedAt), desc(staleRunReports.id)).limit(opts.limit ?? 1),
    );
    if (reports.length === 0) {
      console.error('no stale-run report has been written yet (the stale-run-report cron workflow writes one on its schedule)');
      process.exit(2);
    }
    if (opts.json) {
      console.log(JSON.stringify(opts.limit ? reports : reports[0]));
      return;
    }
    for (const report of reports) {
      console.log(`stale-run report ${report.id}, generated ${report.generatedAt.toISOString()}: ${report.staleCount} stale run(s)`);
      if (report.runs.length === 0) continue;
      const header = ['RUN', 'TENANT', 'PHASE', 'TEMPORAL', 'LAST PROGRESS', 'AGE', 'OVERDUE', 'REASON'];
      const rows = report.runs.map((r) => [r.runId, r.tenantId, r.phase, r.temporalStatus, r.lastProgressAt, age(r.ageSeconds), age(r.overdueSeconds), r.reason]);
      console.log(table([header, ...rows]));
    }
  });

program.parseAsync().catch((err: unknown) => {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
