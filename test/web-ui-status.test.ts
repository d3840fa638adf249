import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordHistory } from './helpers/runs';
import { simPlan, startStack, type Stack } from './helpers/stack';

// What the Temporal Web UI shows comes from the workflow's own status and user metadata.
let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

async function closedWorkflow(runId: string) {
  await stack.waitForPhase(runId, 'terminal');
  const handle = stack.client.workflow.getHandle(runId);
  await handle.result().catch(() => undefined);
  return handle.describe();
}

describe('in the Web UI', () => {
  it('a COMPLETED run is a Completed workflow with a summary of the run', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2), budgetUsd: 1.5 });
    const workflow = await closedWorkflow(runId);
    expect(workflow.status.name).toBe('COMPLETED');
    expect(await workflow.staticSummary()).toBe(`2-step run · budget $1.5 · tenant ${tenant.tenantId}`);
    expect(await workflow.staticDetails()).toContain('**plan**: 1. sim.llm, 2. sim.llm');
    if (process.env.RECORD_HISTORIES) recordHistory(runId, `run-2-steps-${process.env.RECORD_HISTORIES}-completed`);
  });

  it('a FAILED run is a Failed workflow whose failure names the run\'s code', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1, { fail: true }) });
    const workflow = await closedWorkflow(runId);
    expect(workflow.status.name).toBe('FAILED');
    const listed = [];
    for await (const w of stack.client.workflow.list({ query: `WorkflowId = '${runId}' AND ExecutionStatus = 'Failed'` })) listed.push(w.workflowId);
    expect(listed).toEqual([runId]);
    await expect(stack.client.workflow.getHandle(runId).result()).rejects.toMatchObject({ cause: { type: 'STEP_FAILED' } });
    if (process.env.RECORD_HISTORIES) recordHistory(runId, `run-failed-step-${process.env.RECORD_HISTORIES}-fails-workflow`);
  });
});
