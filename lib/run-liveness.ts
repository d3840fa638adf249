import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { RunLiveness } from '../core/audit-reconciliation';
import { RUN_PHASE } from '../core/search-attributes';

/**
 * A pending workflow task on this attempt has failed (or timed out) twice in a row: the run's
 * workflow cannot make progress as it stands. The TypeScript SDK reports a failing task once and
 * lets the next attempts time out (10 s each, then backing off), so attempt 3 arrives about 11 s
 * after the first failure and attempt 5 after about 35 s (measured on server 1.29.1). A task whose
 * worker died mid-task is retried once (attempt 2) and then waits for a worker without failing again.
 */
export const FAILING_WORKFLOW_TASK_ATTEMPT = 3;

/** How far back from the end of a failing run's history the last task failure is looked for. */
const HISTORY_PAGE_SIZE = 25;
const HISTORY_PAGES = 4;
/** Temporal's reasons are stored in findings, incidents and events: long ones are cut with a mark. */
const REASON_MAX_CHARS = 500;

/**
 * What Temporal says of a run's workflow (workflow id = run id): still running and in which phase
 * since the run last progressed, running with a workflow task that keeps failing (and Temporal's
 * last recorded failure), closed (with the reason Temporal gives for the close), or unknown to it.
 * Any other error propagates: a liveness that could not be read is never reported as a fact.
 */
export async function describeRunLiveness(
  temporal: Client,
  runId: string,
  stored: { phase: string; lastProgressAt: Date },
): Promise<RunLiveness> {
  try {
    const description = await temporal.workflow.getHandle(runId).describe();
    const execution = { workflowId: runId, runId: description.runId };
    if (description.status.name === 'RUNNING') {
      const phase = description.typedSearchAttributes.get(RUN_PHASE) ?? stored.phase;
      const attempt = description.raw.pendingWorkflowTask?.attempt ?? 0;
      if (attempt >= FAILING_WORKFLOW_TASK_ATTEMPT) {
        const reason = await readReason(() => lastWorkflowTaskProblem(temporal, execution));
        return { state: 'failing', phase, since: stored.lastProgressAt, attempt, reason: cut(reason ?? 'no task failure recorded near the end of its history') };
      }
      return { state: 'running', phase, since: stored.lastProgressAt };
    }
    const reason = await readReason(() => closeReason(temporal, execution));
    return { state: 'closed', status: description.status.name, closedAt: description.closeTime ?? null, ...(reason ? { reason: cut(reason) } : {}) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { state: 'not_found' };
    throw err;
  }
}

/**
 * Runs whose workflow Temporal closed at or after `since` without the run reaching a final phase
 * (`RunPhase`, kept by the run's workflow, is neither COMPLETED nor FAILED), from its visibility
 * store: one list query, paged, at most `limit` runs. A run that continued as new is not closed;
 * its next execution is (or is still running). Workflow ids that are not run ids are skipped.
 */
export async function listClosedUnfinalizedRuns(temporal: Client, since: Date, limit: number): Promise<{ runId: string; closedAt: Date }[]> {
  const query = [
    'WorkflowType = "runWorkflow"',
    'ExecutionStatus NOT IN ("Running", "ContinuedAsNew")',
    '(RunPhase IS NULL OR RunPhase NOT IN ("COMPLETED", "FAILED"))',
    `CloseTime >= "${since.toISOString()}"`,
  ].join(' AND ');
  const found: { runId: string; closedAt: Date }[] = [];
  for await (const execution of temporal.workflow.list({ query, pageSize: Math.min(limit, 1000) })) {
    if (UUID.test(execution.workflowId) && execution.closeTime) found.push({ runId: execution.workflowId, closedAt: execution.closeTime });
    if (found.length >= limit) break;
  }
  return found;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Execution = { workflowId: string; runId: string };

/** Protobuf messages print their enums by name: `WORKFLOW_TASK_FAILED_CAUSE_…`, `TIMEOUT_TYPE_…`. */
function asJson(message: unknown): Record<string, unknown> {
  return JSON.parse(JSON.stringify(message ?? {})) as Record<string, unknown>;
}

interface FailureJson {
  message?: string;
  cause?: FailureJson;
}

/** A failure and its causes, outermost first: "Activity task failed: connection refused". */
function failureText(failure: FailureJson | undefined): string | null {
  const messages: string[] = [];
  for (let f = failure, depth = 0; f && depth < 4; f = f.cause, depth += 1) if (f.message) messages.push(f.message);
  return messages.length ? messages.join(': ') : null;
}

/**
 * Temporal's reason is read after its status, from the history: the status stands whether or not
 * the reason can be read (an execution deleted meanwhile, a deadline spent), and says so.
 */
async function readReason(read: () => Promise<string | null>): Promise<string | null> {
  try {
    return await read();
  } catch (err) {
    return `Temporal's reason could not be read (${err instanceof Error ? err.message : String(err)})`;
  }
}

/** One line, and bounded. */
function cut(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= REASON_MAX_CHARS ? line : `${line.slice(0, REASON_MAX_CHARS)}… [cut]`;
}

/**
 * The last workflow task failure or timeout Temporal recorded, read from the end of the history.
 * Temporal records a failing task's first failure; its retries are not written until one succeeds.
 */
async function lastWorkflowTaskProblem(temporal: Client, execution: Execution): Promise<string | null> {
  let nextPageToken: Uint8Array | undefined;
  for (let page = 0; page < HISTORY_PAGES; page += 1) {
    const response = await temporal.workflowService.getWorkflowExecutionHistoryReverse({
      namespace: temporal.options.namespace,
      execution,
      maximumPageSize: HISTORY_PAGE_SIZE,
      nextPageToken,
    });
    for (const event of response.history?.events ?? []) {
      if (event.workflowTaskFailedEventAttributes) {
        const attributes = asJson(event.workflowTaskFailedEventAttributes) as { cause?: string; failure?: FailureJson };
        const cause = attributes.cause?.replace(/^WORKFLOW_TASK_FAILED_CAUSE_/, '');
        return `workflow task failed${cause ? ` (${cause})` : ''}: ${failureText(attributes.failure) ?? 'no message'}`;
      }
      if (event.workflowTaskTimedOutEventAttributes) {
        const { timeoutType } = asJson(event.workflowTaskTimedOutEventAttributes) as { timeoutType?: string };
        return `workflow task timed out${timeoutType ? ` (${timeoutType.replace(/^TIMEOUT_TYPE_/, '')})` : ''}`;
      }
    }
    if (!response.nextPageToken?.length) break;
    nextPageToken = response.nextPageToken;
  }
  return null;
}

/** Why Temporal closed the execution, from its close event: one history read. */
async function closeReason(temporal: Client, execution: Execution): Promise<string | null> {
  const response = await temporal.workflowService.getWorkflowExecutionHistory({
    namespace: temporal.options.namespace,
    execution,
    // HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT: only the event that closed the execution.
    historyEventFilterType: 2,
  });
  const event = response.history?.events?.[0];
  if (!event) return null;
  if (event.workflowExecutionTerminatedEventAttributes) {
    const { reason, identity } = event.workflowExecutionTerminatedEventAttributes;
    return `terminated${identity ? ` by ${identity}` : ''}: ${reason || 'no reason given'}`;
  }
  if (event.workflowExecutionFailedEventAttributes) {
    return failureText(asJson(event.workflowExecutionFailedEventAttributes).failure as FailureJson | undefined);
  }
  if (event.workflowExecutionTimedOutEventAttributes) return 'the workflow timed out';
  if (event.workflowExecutionCanceledEventAttributes) return 'the workflow was cancelled';
  if (event.workflowExecutionCompletedEventAttributes) return 'the workflow completed';
  return null;
}
