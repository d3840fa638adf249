import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PassTotals } from '../core/audit-reconciliation';
import type { ReconcilePageInput, ReconcilePageResult } from '../activities/reconciler';
import { reconcileAuditWorkflow } from '../workflows/audit';

/**
 * The pass's paging on the real dev server, with its activities replaced by a fake store of due
 * runs: no Postgres, so a pass of many pages runs in a second.
 */
function fakeStore(due: number) {
  let left = due;
  let inFlight = 0;
  const calls: { dueBefore: string | null; concurrent: number }[] = [];
  const recorded: { passId: string; startedAt: string; totals: PassTotals }[] = [];
  return {
    calls,
    recorded,
    activities: {
      async reconcileDueRuns(input: ReconcilePageInput): Promise<ReconcilePageResult> {
        inFlight += 1;
        calls.push({ dueBefore: input.dueBefore, concurrent: inFlight });
        await new Promise((r) => setTimeout(r, 5));
        const runs = Math.min(left, input.limit);
        left -= runs;
        inFlight -= 1;
        return { runs, verdicts: runs ? { COMPLETE: runs } : {}, findingsOpened: 0, findingsResolved: 0, events: 0, dueBefore: input.dueBefore ?? '2026-11-24T10:00:00.000Z' };
      },
      async recordAuditPass(input: { passId: string; startedAt: string; totals: PassTotals }) {
        recorded.push(input);
      },
      async writeStaleRunReport() {
        return { reportId: 0, staleRuns: 0 };
      },
    },
  };
}

let client: Client;
let connection: Connection;

beforeAll(async () => {
  connection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection });
});
afterAll(() => connection?.close());

async function runPass(due: number, pageSize: number) {
  const store = fakeStore(due);
  const taskQueue = `audit-wf-${randomUUID()}`;
  const nativeConnection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const worker = await Worker.create({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    activities: store.activities,
  });
  const workflowId = `pass-${randomUUID()}`;
  const totals = await worker.runUntil(client.workflow.execute(reconcileAuditWorkflow, { taskQueue, workflowId, args: [{ pageSize }] }));
  await nativeConnection.close();
  return { store, totals, workflowId };
}

describe('a reconciliation pass', () => {
  it('fixes its horizon with one page, then reads two pages at a time, and records itself once', async () => {
    const { store, totals } = await runPass(1200, 500);
    expect(totals).toMatchObject({ runs: 1200, verdicts: { COMPLETE: 1200 } });
    expect(store.calls[0]).toEqual({ dueBefore: null, concurrent: 1 });
    expect(store.calls.slice(1).every((c) => c.dueBefore === '2026-11-24T10:00:00.000Z')).toBe(true);
    expect(Math.max(...store.calls.map((c) => c.concurrent))).toBe(2);
    expect(store.recorded).toHaveLength(1);
    expect(store.recorded[0]!.totals.runs).toBe(1200);
  });

  it('continues as new when long, and still records one pass with every page counted', { timeout: 60_000 }, async () => {
    const { store, totals, workflowId } = await runPass(250, 1);
    expect(totals.runs).toBe(250);
    expect(store.recorded).toHaveLength(1);
    expect(store.recorded[0]!.totals.runs).toBe(250);
    // The pass kept the identity of its first execution through continue-as-new.
    const first = await client.workflow.getHandle(workflowId).describe();
    expect(first.runId).not.toBe(store.recorded[0]!.passId);
    const history = await client.workflow.list({ query: `WorkflowId = "${workflowId}"` });
    const executions: string[] = [];
    for await (const execution of history) executions.push(execution.runId);
    expect(executions.length).toBeGreaterThanOrEqual(3);
    expect(executions).toContain(store.recorded[0]!.passId);
  });
});
