import type { EventFinding, RunFinding, RunOutcome } from './checks';

/** What the drill did, each line stamped with seconds since the runs were submitted. */
export class Timeline {
  readonly entries: { atMs: number; what: string }[] = [];
  private startedAt = Date.now();

  start(): void {
    this.startedAt = Date.now();
  }

  note(what: string, echo?: (line: string) => void): void {
    const entry = { atMs: Date.now() - this.startedAt, what };
    this.entries.push(entry);
    echo?.(formatEntry(entry));
  }
}

function formatEntry({ atMs, what }: { atMs: number; what: string }): string {
  return `  t+${(atMs / 1000).toFixed(1).padStart(6)}s  ${what}`;
}

export interface DrillReport {
  title: string;
  timeline: Timeline;
  findings: RunFinding[];
  events: EventFinding;
  /** Why a fault could not be injected as asked, or anything else that voids the drill. */
  failures: string[];
  workDir: string | null;
  notes: string[];
}

export function countOutcomes(findings: RunFinding[]): Record<RunOutcome, number> {
  const counts: Record<RunOutcome, number> = { completed: 0, lost: 0, duplicated: 0, stuck: 0 };
  for (const f of findings) counts[f.outcome] += 1;
  return counts;
}

/** Nearest-rank percentile of what finished. */
export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function passed(report: Pick<DrillReport, 'findings' | 'events' | 'failures'>): boolean {
  const counts = countOutcomes(report.findings);
  return counts.lost + counts.duplicated + counts.stuck === 0 && report.events.problems.length === 0 && report.failures.length === 0;
}

function seconds(value: number | null): string {
  return value === null ? '–' : `${value.toFixed(1)}s`;
}

function table(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
}

export function formatReport(report: DrillReport): string {
  const counts = countOutcomes(report.findings);
  const times = report.findings.map((f) => f.secondsToComplete).filter((s): s is number => s !== null);
  const e = report.events;
  const lines = [
    '',
    report.title,
    '',
    'what it did',
    ...report.timeline.entries.map(formatEntry),
    '',
    'what it found',
    ...table([
      ['runs', `${report.findings.length} submitted: ${counts.completed} completed, ${counts.lost} lost, ${counts.duplicated} duplicated, ${counts.stuck} stuck`],
      ['time to complete', `p50 ${seconds(percentile(times, 50))}, max ${seconds(percentile(times, 100))} (submit to finish, ${times.length} runs)`],
      ['events', `${e.committed} committed, ${e.published} published, ${e.handledOnce} handled once, ${e.handledMoreThanOnce} more than once, ${e.neverHandled} never${e.handledAgainAfterKill ? ` (${e.handledAgainAfterKill} of them handled again after their reactor was killed mid-handler)` : ''}`],
      ['event bookkeeping', `${e.copiesRelayed} copies relayed, ${e.unrecorded} handled without a handled key, ${e.pending} unacknowledged, ${e.deadLettered} dead-lettered, ${e.outOfOrderRuns} runs published out of order`],
    ]),
  ];
  const bad = report.findings.filter((f) => f.outcome !== 'completed');
  if (bad.length) {
    lines.push('', 'runs with problems');
    for (const f of bad.slice(0, 20)) lines.push(`  ${f.runId}  ${f.outcome}: ${f.problems.join('; ')}`);
    if (bad.length > 20) lines.push(`  … and ${bad.length - 20} more`);
  }
  for (const problem of [...e.problems, ...report.failures]) lines.push(`  ! ${problem}`);
  for (const note of report.notes) lines.push(`  note: ${note}`);
  lines.push('', passed(report) ? 'PASSED' : `FAILED${report.workDir ? ` (logs kept in ${report.workDir})` : ''}`, '');
  return lines.join('\n');
}
