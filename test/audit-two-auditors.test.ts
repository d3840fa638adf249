/**
 * Two auditors at once: the audit loop's workflows served by two worker processes on one queue,
 * two passes started together over the same due runs, small pages in two lanes each, so that up to
 * four pages lock runs at the same moment. Each run must be read by one page of one pass: reconciled
 * once, each finding's incident and event written once (README, "Past one machine": reconciler pages).
 */
import { randomUUID } from 'node:crypto';
import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { auditReconciliations, incidents, outbox, runLogs } from '../db/schema';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { startWorkerProcess } from './helpers/worker-process';

const RUNS = 16;
const TAMPERED = 4;

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;

beforeAll(async () => {
  database = await freshDatabase('two_auditors');
  stack = await startStack({ databaseUrl: database.url });
});
afterAll(async () => {
  await stack?.close();
  await database?.drop();
});

it('two passes on two worker processes at once reconcile each run once, and report each broken run once', { timeout: 180_000 }, async () => {
  const tenant = await stack.createTenant();
  const runIds = await Promise.all(Array.from({ length: RUNS }, () => stack.submitRun(tenant.apiKey, { plan: simPlan(1) })));
  for (const runId of runIds) await stack.waitForPhase(runId, ['COMPLETED']);
  // Broken behind the product's back before any pass: a log row gone (a phantom ack, a broken chain).
  const tampered = runIds.slice(0, TAMPERED);
  await stack.db.delete(runLogs).where(inArray(runLogs.runId, tampered));

  const secondAuditor = await startWorkerProcess({ databaseUrl: database.url, taskQueue: stack.taskQueue });
  try {
    const pass = () =>
      stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `audit-pass-${randomUUID()}`, args: [{ pageSize: 2 }] });
    const [first, second] = await Promise.all([pass(), pass()]);

    // Every due run was read by exactly one page: the two passes' counts add up to the runs, no more.
    expect(first.runs + second.runs).toBe(RUNS);
    const rows = await stack.db.select().from(auditReconciliations).where(inArray(auditReconciliations.runId, runIds));
    expect(rows).toHaveLength(RUNS);
    for (const row of rows) {
      expect(row.passes, `run ${row.runId} reconciled once`).toBe(1);
      expect(row.dueAt).toBeNull();
      expect(row.verdict).toBe(tampered.includes(row.runId) ? 'INCOMPLETE' : 'COMPLETE');
    }
    for (const runId of runIds) {
      const events = await stack.db.select({ topic: outbox.topic }).from(outbox).where(eq(outbox.runId, runId));
      const audit = events.map((e) => e.topic).filter((topic) => topic.startsWith('audit.')).sort();
      const raised = await stack.db.select({ id: incidents.id }).from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'audit')));
      if (tampered.includes(runId)) {
        expect(audit).toEqual(['audit.reconciliation.phantom', 'audit.reconciliation.tampered']);
        // A finding opens one incident and one event: two findings, two of each, not four.
        expect(raised).toHaveLength(audit.length);
      } else {
        expect(audit).toEqual([]);
        expect(raised).toEqual([]);
      }
    }
  } finally {
    await secondAuditor.kill();
  }
});
