import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { ObservabilityMode } from '../core/policy';
import { PRICE_TABLE } from '../core/pricing';
import { RUN_PHASE, RUN_STATUS, TENANT_ID } from '../core/search-attributes';
import { asLiteralText } from '../core/web-ui-text';
import type { Db } from '../db/client';
import { markWorkflowStarted, unstartedRuns, type StoredRun } from '../db/runs';
import { RUN_HISTORY_EVENTS_BOUND, type RunWorkflowInput } from '../workflows/messages';
import { runWorkflow } from '../workflows/run';


/** The workflow input of a run as it was recorded at submit. */
export function workflowInputOf(run: StoredRun): RunWorkflowInput {
  return {
    runId: run.id,
    tenantId: run.tenantId,
    plan: run.plan,
    budgetUsd: run.budgetUsd,
    authorization:
      run.authorizationDecision === 'ALLOWED'
        ? { decision: 'ALLOWED', reason: null }
        : { decision: 'DENIED', reason: run.authorizationReason ?? 'denied' },
    observabilityMode: run.observabilityMode as ObservabilityMode,
    policyVersion: run.policyVersion,
    // Fixed for the run's life: decisions taken from them must replay the same after a code change.
    prices: PRICE_TABLE,
    continueAsNewAfterEvents: RUN_HISTORY_EVENTS_BOUND,
  };
}

export interface StarterDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  /** How long one start may wait for Temporal before the run is left to the next attempt. */
  startTimeoutMs: number;
}

/**
 * Starts the run's workflow (workflow id = run id, so a second start of the same run is refused by
 * Temporal and counts as started) and records that it was. Throws when Temporal did not answer.
 */
export async function startRunWorkflow(deps: StarterDeps, input: RunWorkflowInput): Promise<void> {
  try {
    await deps.temporal.withDeadline(Date.now() + deps.startTimeoutMs, () =>
      deps.temporal.workflow.start(runWorkflow, {
        taskQueue: deps.taskQueue,
        workflowId: input.runId,
        args: [input],
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        // Its tasks, and its activities' (they inherit it), are dispatched fairly between tenants
        // where the server does fairness (matching.enableFairness): a burst of one tenant's runs
        // does not hold another's behind it. A server without it ignores the key.
        priority: { fairnessKey: input.tenantId },
        typedSearchAttributes: [
          { key: RUN_PHASE, value: 'CREATED' },
          { key: RUN_STATUS, value: 'queued' },
          { key: TENANT_ID, value: input.tenantId },
        ],
        // What the Web UI's list and the run's page show before anyone opens the details. Both are
        // Markdown: a text the run did not write itself (the refusal's reason) goes in as literal text.
        staticSummary: `${input.plan.length}-step run · budget $${input.budgetUsd} · tenant ${input.tenantId}`,
        staticDetails: [
          `**plan**: ${input.plan.map((s, i) => `${i + 1}. ${s.skill}`).join(', ')}`,
          `**authorization**: ${input.authorization.decision}${input.authorization.reason ? ` (${asLiteralText(input.authorization.reason)})` : ''}`,
          `**observability**: ${input.observabilityMode} · policy version ${input.policyVersion ?? 'unknown'}`,
        ].join('\n\n'),
      }),
    );
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  await markWorkflowStarted(deps.db, input.runId);
}

/** Starts it now if Temporal answers; false leaves it to the starter. */
export async function tryStartRunWorkflow(deps: StarterDeps, input: RunWorkflowInput, onError: (err: unknown) => void): Promise<boolean> {
  try {
    await startRunWorkflow(deps, input);
    return true;
  } catch (err) {
    onError(err);
    return false;
  }
}

/**
 * Every accepted run whose workflow was never confirmed started (Temporal was down at submit, or
 * the API died between its commit and the start), oldest first. Runs younger than `graceMs` are
 * still the API's to start. Stops at the first failure: Temporal is most likely still away.
 */
export async function startPendingRuns(deps: StarterDeps & { graceMs: number; limit: number }): Promise<{ started: number; pending: boolean }> {
  const pending = await unstartedRuns(deps.db, deps);
  let started = 0;
  for (const run of pending) {
    try {
      await startRunWorkflow(deps, workflowInputOf(run));
      started += 1;
    } catch {
      return { started, pending: true };
    }
  }
  return { started, pending: pending.length === deps.limit };
}
