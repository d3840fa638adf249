import { continueAsNew, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AUDIT_PAGE_HEARTBEAT_TIMEOUT_MS } from '../core/audit-page-heartbeat';
import { EMPTY_TOTALS, addTotals, type PassTotals } from '../core/audit-reconciliation';
import { workflowNow } from './time';

/**
 * The audit store must be read, or the pass must fail: its activities retry until the database
 * answers (the worker's retry budget makes a non-outage error final, and the pass fails loudly).
 */
const audit = proxyActivities<Pick<Activities, 'reconcileDueRuns' | 'recordAuditPass' | 'writeStaleRunReport'>>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** Pages that beat: a page whose auditor died is retried on another after the heartbeat timeout. */
const beatingPages = proxyActivities<Pick<Activities, 'reconcileDueRuns'>>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: AUDIT_PAGE_HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** Passes started before pages beat schedule them without a heartbeat timeout. */
export const AUDIT_PAGE_HEARTBEAT_PATCH = 'audit-page-heartbeat';

/** Due runs reconciled per activity, and pages per execution before the pass continues as new. */
export const RECONCILE_PAGE_SIZE = 500;
export const RECONCILE_PAGES_PER_EXECUTION = 100;
/**
 * Pages in flight at once after the first: each locks its own runs (SKIP LOCKED), so they never
 * share one, and one page's database waits overlap another's work.
 */
export const RECONCILE_LANES = 2;

export interface ReconcileAuditInput {
  pageSize?: number;
  /** Carried through continue-as-new: one pass, however many executions it takes. */
  pass?: { passId: string; startedAt: string; dueBefore: string; totals: PassTotals };
}

/**
 * One reconciliation pass (seed §8.2, §9), run by the `audit-reconciler` Schedule: every run due
 * when the pass began — finalized since it was last reconciled, past a deadline, or changed since —
 * is reconciled page by page, then the pass is recorded.
 */
export async function reconcileAuditWorkflow(input: ReconcileAuditInput = {}): Promise<PassTotals> {
  const pageSize = input.pageSize ?? RECONCILE_PAGE_SIZE;
  const passId = input.pass?.passId ?? workflowInfo().runId;
  const startedAt = input.pass?.startedAt ?? new Date(workflowNow()).toISOString();
  let dueBefore = input.pass?.dueBefore ?? null;
  let totals = input.pass?.totals ?? EMPTY_TOTALS;
  const pages = patched(AUDIT_PAGE_HEARTBEAT_PATCH) ? beatingPages : audit;

  for (let pagesRead = 0; ; ) {
    // The first page fixes the pass's horizon (the database's now); later ones run side by side.
    const lanes = dueBefore === null ? 1 : RECONCILE_LANES;
    const horizon: string | null = dueBefore;
    const results = await Promise.all(Array.from({ length: lanes }, () => pages.reconcileDueRuns({ dueBefore: horizon, limit: pageSize })));
    dueBefore = results[0]!.dueBefore;
    for (const result of results) totals = addTotals(totals, result);
    pagesRead += lanes;
    if (results.some((r) => r.runs < pageSize)) break;
    if (pagesRead >= RECONCILE_PAGES_PER_EXECUTION || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof reconcileAuditWorkflow>({ pageSize, pass: { passId, startedAt, dueBefore, totals } });
    }
  }
  await audit.recordAuditPass({ passId, startedAt, totals });
  return totals;
}

/** The stale-run report, written by a cron workflow (`stale-run-report`) on its schedule. */
export async function staleRunReportWorkflow(): Promise<{ reportId: number; staleRuns: number }> {
  return audit.writeStaleRunReport({ executionId: workflowInfo().runId });
}
