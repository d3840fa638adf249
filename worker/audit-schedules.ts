import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  type Client,
  type ScheduleOptionsStartWorkflowAction,
} from '@temporalio/client';
import { loadConfig } from '../lib/config';
import { connectClient } from '../lib/temporal';
import { reconcileAuditWorkflow, staleRunReportWorkflow } from '../workflows/audit';

export const AUDIT_SCHEDULE_ID = 'audit-reconciler';
export const STALE_REPORT_WORKFLOW_ID = 'stale-run-report';

export interface AuditScheduleOptions {
  taskQueue: string;
  reconcileIntervalSeconds: number;
  staleReportCron: string;
}

export interface AppliedAuditSchedules {
  schedule: 'created' | 'updated';
  staleReport: 'started' | 'unchanged' | 'restarted';
}

/**
 * Creates or updates, idempotently, the two things that keep the audit loop turning: the
 * `audit-reconciler` Schedule (a pass every interval; a pass still running skips the next) and
 * the `stale-run-report` cron workflow. Safe to run at every start-up and from any number of
 * processes: the namespace keeps one of each.
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
  await client.schedule.getHandle(AUDIT_SCHEDULE_ID).update((previous) => ({ ...previous, spec, action, policies }));
  return 'updated';
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
  await client.workflow.getHandle(STALE_REPORT_WORKFLOW_ID).terminate(`cron schedule changed to "${options.staleReportCron}"`);
  await start();
  return 'restarted';
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
    const client = await connectClient(config);
    try {
      const applied = await applyAuditSchedules(client, {
        taskQueue: config.TEMPORAL_TASK_QUEUE,
        reconcileIntervalSeconds: config.AUDIT_RECONCILE_INTERVAL,
        staleReportCron: config.STALE_REPORT_CRON,
      });
      console.log(
        `schedule ${AUDIT_SCHEDULE_ID} ${applied.schedule} (every ${config.AUDIT_RECONCILE_INTERVAL}s); ` +
          `cron workflow ${STALE_REPORT_WORKFLOW_ID} ${applied.staleReport} ("${config.STALE_REPORT_CRON}")`,
      );
    } finally {
      await client.connection.close();
    }
  })().catch((err: unknown) => {
    console.error(`audit schedules failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
