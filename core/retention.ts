/**
 * How long a tenant's records are kept. Runs and every record of them: 180 days by default, the
 * shortest the EU AI Act (Art. 19, 26(6)) asks a deployer to keep an AI system's logs. The event
 * plumbing (published outbox rows, delivered control pushes) and alerts serve operations, not
 * evidence, and are kept hours to days. None of the short ones may outlast the runs: a pruned run
 * leaves nothing of itself behind but its tombstone.
 */
export interface RetentionSettings {
  runsDays: number;
  /** Outbox rows once published (or retracted); unpublished rows are never pruned. */
  outboxHours: number;
  /** Control pushes once delivered, with their per-run delivery rows; a push in progress is never pruned. */
  controlPushesHours: number;
  /** Alerts sent or suppressed; one still pending delivery is never pruned. */
  alertsDays: number;
  /** Write each run's records to the operator's export folder before they are removed. */
  exportBeforePrune: boolean;
}

export const DEFAULT_RETENTION: Readonly<RetentionSettings> = {
  runsDays: 180,
  outboxHours: 72,
  controlPushesHours: 168,
  alertsDays: 30,
  exportBeforePrune: false,
};

/** What one batch of the pruning workflow removed. */
export interface PruneTotals {
  runs: number;
  exported: number;
  /** Rows removed with the runs, all tables together. */
  records: number;
  /** Pruned runs' workflow histories deleted from Temporal. */
  histories: number;
  outbox: number;
  controlPushes: number;
  alerts: number;
}

export const EMPTY_PRUNE_TOTALS: Readonly<PruneTotals> = { runs: 0, exported: 0, records: 0, histories: 0, outbox: 0, controlPushes: 0, alerts: 0 };

export function addPruneTotals(a: PruneTotals, b: Partial<PruneTotals>): PruneTotals {
  return {
    runs: a.runs + (b.runs ?? 0),
    exported: a.exported + (b.exported ?? 0),
    records: a.records + (b.records ?? 0),
    histories: a.histories + (b.histories ?? 0),
    outbox: a.outbox + (b.outbox ?? 0),
    controlPushes: a.controlPushes + (b.controlPushes ?? 0),
    alerts: a.alerts + (b.alerts ?? 0),
  };
}

