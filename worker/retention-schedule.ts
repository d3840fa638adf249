import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptionsStartWorkflowAction } from '@temporalio/client';
import { pruneRetentionWorkflow } from '../workflows/retention';

export const RETENTION_SCHEDULE_ID = 'retention-pruner';

/**
 * Creates or updates, idempotently, the `retention-pruner` Schedule: a retention pass every
 * interval on the auditor's queue, a pass still running skipping the next. Applied with the audit
 * loop's Schedule (`npm run audit:schedules`, at every `npm start`).
 */
export async function applyRetentionSchedule(client: Client, options: { taskQueue: string; intervalSeconds: number }): Promise<'created' | 'updated'> {
  const action: ScheduleOptionsStartWorkflowAction<typeof pruneRetentionWorkflow> = {
    type: 'startWorkflow',
    workflowType: pruneRetentionWorkflow,
    workflowId: 'retention-prune',
    taskQueue: options.taskQueue,
    args: [{}],
    staticSummary: 'retention pass: runs, outbox rows, control pushes and alerts past their tenant\'s retention',
  };
  const spec = { intervals: [{ every: options.intervalSeconds * 1000 }] };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: options.intervalSeconds * 1000 };
  try {
    await client.schedule.create({ scheduleId: RETENTION_SCHEDULE_ID, spec, action, policies });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(RETENTION_SCHEDULE_ID).update((previous) => ({ ...previous, spec, action, policies }));
  return 'updated';
}
