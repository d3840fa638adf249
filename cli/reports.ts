import type { Command } from 'commander';
import { ApiError } from './api-client';
import { contextOf } from './context';
import { duration, table, when } from './format';
import { wholeNumber } from './parsers';

export interface StaleReport {
  id: string;
  generatedAt: string;
  staleCount: number;
  runs: { runId: string; phase: string; temporalStatus: string; lastProgressAt: string; ageSeconds: number; overdueSeconds: number; reason: string }[];
}

export function registerReportCommands(program: Command): void {
  const reports = program.command('reports').description('reports the audit loop writes');

  reports
    .command('stale')
    .description('the latest stale-run report (runs past their finalize deadline), your runs only; exits 0 when there are none')
    .option('--limit <n>', 'the last n reports instead of the latest', wholeNumber(1, 100))
    .addHelpText(
      'after',
      `
No stale runs is one answer whatever its cause (no report written yet, or reports naming none of your
runs): 'no stale runs' and exit 0. Under --json the API's answer is printed; with no report written
yet, {"reports":[]} (what --limit answers then).`,
    )
    .action(async (options: { limit?: number }, command: Command) => {
      const ctx = contextOf(command);
      let answer: StaleReport | { reports: StaleReport[] };
      try {
        answer = await ctx.api.get<StaleReport | { reports: StaleReport[] }>('/reports/stale-runs', { limit: options.limit });
      } catch (err) {
        // The latest report, when none was written yet, is a 404; the last n are then an empty list (200).
        if (!(err instanceof ApiError && err.status === 404 && (err.body as { code?: string } | null)?.code === 'REPORT_NOT_FOUND')) throw err;
        answer = { reports: [] };
      }
      const reports = 'reports' in answer ? answer.reports : [answer];
      ctx.print(answer, () => staleText(reports));
    });
}

/** The reports, or 'no stale runs' when none names a run of yours (or none was written yet). */
export function staleText(reports: StaleReport[]): string {
  if (!reports.some((r) => r.runs.length > 0)) {
    const latest = reports[0];
    return latest ? `no stale runs (latest report ${latest.id}, generated ${when(latest.generatedAt)})` : 'no stale runs (no stale-run report has been written yet)';
  }
  return reports.map(reportText).join('\n\n');
}

function reportText(report: StaleReport): string {
  const head = `stale-run report ${report.id}, generated ${when(report.generatedAt)}: ${report.staleCount} stale run(s)`;
  if (report.runs.length === 0) return head;
  const rows = report.runs.map((r) => [r.runId, r.phase, r.temporalStatus, when(r.lastProgressAt), duration(r.ageSeconds), duration(r.overdueSeconds), r.reason]);
  return `${head}\n${table(['RUN', 'PHASE', 'TEMPORAL', 'LAST PROGRESS', 'AGE', 'OVERDUE', 'REASON'], rows)}`;
}
