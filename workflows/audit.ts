import { continueAsNew, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
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

/** Due runs reconciled per activity, and pages per execution before the pass continues as new. */
export const RECONCILE_PAGE_SIZE = 500;
export const RECONCILE_PAGES_PER_EXECUTION = 100;

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

  for (let page = 1; ; page += 1) {
    const result = await audit.reconcileDueRuns({ dueBefore, limit: pageSize });
    dueBefore = result.dueBefore;
    totals = addTotals(totals, result);
    if (result.runs < pageSize) break;
    if (page >= RECONCILE_PAGES_PER_EXECUTION || workflowInfo().continueAsNewSuggested) {
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
