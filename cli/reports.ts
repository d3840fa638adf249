import type { Command } from 'commander';
import { contextOf } from './context';
import { duration, table, when } from './format';
import { wholeNumber } from './parsers';

interface StaleReport {
  id: string;
  generatedAt: string;
  staleCount: number;
  runs: { runId: string; phase: string; temporalStatus: string; lastProgressAt: string; ageSeconds: number; overdueSeconds: number; reason: string }[];
}

export function registerReportCommands(program: Command): void {
  const reports = program.command('reports').description('reports the audit loop writes');

  reports
    .command('stale')
    .description('the latest stale-run report (runs past their finalize deadline), your runs only')
    .option('--limit <n>', 'the last n reports instead of the latest', wholeNumber(1, 100))
    .action(async (options: { limit?: number }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.api.get<StaleReport | { reports: StaleReport[] }>('/reports/stale-runs', { limit: options.limit });
      const reports = 'reports' in answer ? answer.reports : [answer];
      ctx.print(answer, () => reports.map(reportText).join('\n\n') || 'no stale-run report has been written yet');
    });
}

function reportText(report: StaleReport): string {
  const head = `stale-run report ${report.id}, generated ${when(report.generatedAt)}: ${report.staleCount} stale run(s)`;
  if (report.runs.length === 0) return head;
  const rows = report.runs.map((r) => [r.runId, r.phase, r.temporalStatus, when(r.lastProgressAt), duration(r.ageSeconds), duration(r.overdueSeconds), r.reason]);
  return `${head}\n${table(['RUN', 'PHASE', 'TEMPORAL', 'LAST PROGRESS', 'AGE', 'OVERDUE', 'REASON'], rows)}`;
}
