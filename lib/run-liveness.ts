import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { RunLiveness } from '../core/audit-reconciliation';
import { RUN_PHASE } from '../core/search-attributes';

/**
 * What Temporal says of a run's workflow (workflow id = run id): still running and in which phase
 * since the run last progressed, closed, or unknown to it. Any other error propagates: a liveness
 * that could not be read is never reported as a fact.
 */
export async function describeRunLiveness(
  temporal: Client,
  runId: string,
  stored: { phase: string; lastProgressAt: Date },
): Promise<RunLiveness> {
  try {
    const description = await temporal.workflow.getHandle(runId).describe();
    if (description.status.name === 'RUNNING') {
      return { state: 'running', phase: description.typedSearchAttributes.get(RUN_PHASE) ?? stored.phase, since: stored.lastProgressAt };
    }
    return { state: 'closed', status: description.status.name, closedAt: description.closeTime ?? null };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { state: 'not_found' };
    throw err;
  }
}
