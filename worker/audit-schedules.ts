import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type ScheduleExecutionActionResult,
  type ScheduleOptionsStartWorkflowAction,
} from '@temporalio/client';
import { auditTaskQueue } from '../compose/worker';
import { loadConfig } from '../lib/config';
import { connectClient, startupFailure } from '../lib/temporal';
import { reconcileAuditWorkflow, staleRunReportWorkflow } from '../workflows/audit';
import { RETENTION_SCHEDULE_ID, applyRetentionSchedule } from './retention-schedule';

export const AUDIT_SCHEDULE_ID = 'audit-reconciler';
export const STALE_REPORT_WORKFLOW_ID = 'stale-run-report';

export interface AuditScheduleOptions {
  taskQueue: string;
  reconcileIntervalSeconds: number;
  staleReportCron: string;
}

export interface AppliedAuditSchedules {
  /** `moved`: updated from another task queue, its passes still running there terminated. */
  schedule: 'created' | 'updated' | 'moved';
  /** `moved`: the cron workflow ran on another task queue and was started again on this one. */
  staleReport: 'started' | 'unchanged' | 'restarted' | 'moved';
}

/**
 * Creates or updates, idempotently, the two things that keep the audit loop turning: the
 * `audit-reconciler` Schedule (a pass every interval; a pass still running skips the next) and
 * the `stale-run-report` cron workflow, both on `options.taskQueue` (the auditor's,
 * `TEMPORAL_AUDIT_TASK_QUEUE`). Safe to run at every start-up and from any number of processes: the
 * namespace keeps one of each. A deployment whose audit loop ran on another queue (the runs' queue,
 * before the auditor had one of its own) is moved over.
 */
export async function applyAuditSchedules(client: Client, options: AuditScheduleOptions): Promise<AppliedAuditSchedules> {
  return { schedule: await applyReconcilerSchedule(client, options), staleReport: await applyStaleReportCron(client, options) };
}

async function applyReconcilerSchedule(client: Client, options: AuditScheduleOptions): Promise<AppliedAuditSchedules['schedule']> {
  const action: ScheduleOptionsStartWorkflowAction<typeof reconcileAuditWorkflow> = {
    type: 'startWorkflow',
    workflowType: reconcileAuditWorkflow,
    workflowId: 'audit-reconcile',
    taskQueue: options.taskQueue,
    args: [{}],
    staticSummary: 'audit reconciliation pass: due runs against their contract and evidence',
  };
  const spec = { intervals: [{ every: options.reconcileIntervalSeconds * 1000 }] };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: options.reconcileIntervalSeconds * 1000 };
  try {
    await client.schedule.create({ scheduleId: AUDIT_SCHEDULE_ID, spec, action, policies });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  let movedFrom: string | undefined;
  const handle = client.schedule.getHandle(AUDIT_SCHEDULE_ID);
  await handle.update((previous) => {
    // Called again on a conflicting update: the last call saw the Schedule as it stood.
    movedFrom = previous.action.type === 'startWorkflow' && previous.action.taskQueue !== options.taskQueue ? previous.action.taskQueue : undefined;
    return { ...previous, spec, action, policies };
  });
  await stopPassesElsewhere(client, (await handle.describe()).info.runningActions, options.taskQueue);
  return movedFrom === undefined ? 'updated' : 'moved';
}

/**
 * A pass the Schedule started on another queue (before the audit loop moved) may have nobody left
 * to run it — that is why the loop moves — and the Schedule skips every later pass while one runs.
 * It is terminated: a pass is idempotent page by page, and the next one, on the new queue, reads
 * whatever it left due. Checked at every apply, so an apply interrupted after the move still does it.
 */
async function stopPassesElsewhere(client: Client, running: ScheduleExecutionActionResult[], taskQueue: string): Promise<void> {
  for (const { workflow } of running) {
    const pass = client.workflow.getHandle(workflow.workflowId, undefined, { firstExecutionRunId: workflow.firstExecutionRunId });
    try {
      const described = await pass.describe();
      if (described.taskQueue === taskQueue || described.status.name !== 'RUNNING') continue;
      await pass.terminate(`the audit loop moved from task queue ${described.taskQueue} to ${taskQueue}`);
    } catch (err) {
      // Finished meanwhile: nothing to stop.
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
}

/** A cron workflow's schedule cannot be changed in place: a different one replaces the workflow. */
async function applyStaleReportCron(client: Client, options: AuditScheduleOptions): Promise<AppliedAuditSchedules['staleReport']> {
  const start = () =>
    client.workflow.start(staleRunReportWorkflow, {
      workflowId: STALE_REPORT_WORKFLOW_ID,
      taskQueue: options.taskQueue,
      cronSchedule: options.staleReportCron,
      staticSummary: `stale-run report, cron "${options.staleReportCron}"`,
    });
  try {
    await start();
    return 'started';
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  const current = await runningCron(client);
  if (current.cronSchedule === options.staleReportCron && current.taskQueue === options.taskQueue) return 'unchanged';
  const moved = current.taskQueue !== options.taskQueue;
  await client.workflow
    .getHandle(STALE_REPORT_WORKFLOW_ID)
    .terminate(moved ? `the audit loop moved from task queue ${current.taskQueue} to ${options.taskQueue}` : `cron schedule changed to "${options.staleReportCron}"`);
  await start();
  return moved ? 'moved' : 'restarted';
}

/** The running cron workflow's schedule and task queue, as its start event recorded them. */
export async function runningCron(client: Client): Promise<{ cronSchedule: string; taskQueue: string }> {
  const history = await client.workflow.getHandle(STALE_REPORT_WORKFLOW_ID).fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  return { cronSchedule: started?.cronSchedule ?? '', taskQueue: started?.taskQueue?.name ?? '' };
}

if (require.main === module) {
  (async () => {
    const config = loadConfig();
    const taskQueue = auditTaskQueue(config);
    const client = await connectClient(config);
    try {
      const applied = await applyAuditSchedules(client, {
        taskQueue,
        reconcileIntervalSeconds: config.AUDIT_RECONCILE_INTERVAL,
        staleReportCron: config.STALE_REPORT_CRON,
      });
      const retention = await applyRetentionSchedule(client, { taskQueue, intervalSeconds: config.RETENTION_PRUNE_INTERVAL });
      console.log(
        `schedule ${AUDIT_SCHEDULE_ID} ${applied.schedule} (every ${config.AUDIT_RECONCILE_INTERVAL}s); ` +
          `schedule ${RETENTION_SCHEDULE_ID} ${retention} (every ${config.RETENTION_PRUNE_INTERVAL}s); ` +
          `cron workflow ${STALE_REPORT_WORKFLOW_ID} ${applied.staleReport} ("${config.STALE_REPORT_CRON}"); ` +
          `task queue ${taskQueue} (served by npm run auditor)`,
      );
    } finally {
      await client.connection.close();
    }
  })().catch((err: unknown) => {
    console.error(`audit schedules failed: ${startupFailure(err)}`);
    process.exit(1);
  });
}
