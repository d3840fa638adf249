import { continueAsNew, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { RetentionActivities } from '../activities';
import { EMPTY_PRUNE_TOTALS, addPruneTotals, type PruneTotals } from '../core/retention';

/** A batch is one transaction: it retries until the database answers, like the audit loop's pages. */
const retention = proxyActivities<RetentionActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Runs per batch (each with every record of it), and rows of each event kind per batch. */
export const PRUNE_RUNS_PAGE_SIZE = 200;
export const PRUNE_EVENTS_PAGE_SIZE = 5000;
/** Batches per execution before the pass continues as new, its history kept short. */
export const PRUNE_BATCHES_PER_EXECUTION = 200;

export interface PruneRetentionInput {
  runsPageSize?: number;
  eventsPageSize?: number;
  /** Carried through continue-as-new. */
  pass?: { stage: 'runs' | 'events'; totals: PruneTotals };
}

/**
 * One retention pass, run by the `retention-pruner` Schedule: the runs past their tenant's
 * retention, a bounded batch at a time until a batch comes back short, then the published outbox
 * rows, delivered control pushes and alerts past theirs, the same way.
 */
export async function pruneRetentionWorkflow(input: PruneRetentionInput = {}): Promise<PruneTotals> {
  const runsPageSize = input.runsPageSize ?? PRUNE_RUNS_PAGE_SIZE;
  const eventsPageSize = input.eventsPageSize ?? PRUNE_EVENTS_PAGE_SIZE;
  let stage = input.pass?.stage ?? 'runs';
  let totals = input.pass?.totals ?? EMPTY_PRUNE_TOTALS;
  const again = () => continueAsNew<typeof pruneRetentionWorkflow>({ runsPageSize, eventsPageSize, pass: { stage, totals } });

  for (let batches = 0; ; batches++) {
    if (batches >= PRUNE_BATCHES_PER_EXECUTION || workflowInfo().continueAsNewSuggested) return again();
    if (stage === 'runs') {
      const done = await retention.pruneExpiredRuns({ limit: runsPageSize });
      totals = addPruneTotals(totals, done);
      if (done.runs < runsPageSize) stage = 'events';
      continue;
    }
    const done = await retention.pruneEventRecords({ limit: eventsPageSize });
    totals = addPruneTotals(totals, done);
    if (done.outbox < eventsPageSize && done.controlPushes < eventsPageSize && done.alerts < eventsPageSize) return totals;
  }
}
