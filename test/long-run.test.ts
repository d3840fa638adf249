import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRICE_TABLE } from '../core/pricing';
import { executionsOf } from '../lib/temporal';
import { RUN_HISTORY_EVENTS_BOUND, type RunWorkflowInput } from '../workflows/messages';
import { expectFullGovernanceRecords } from './helpers/records';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

let stack: Stack;
let tenant: TestTenant;

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant({ policy: { maxSteps: 1_000 } });
});
afterAll(() => stack?.close());

describe('a 1,000-step run', () => {
  it('completes, its workflow continuing as new under the history bound, and shows as one run', { timeout: 240_000 }, async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1_000), budgetUsd: 5 });
    const run = await stack.waitForPhase(runId, 'terminal', 200_000);
    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 1_000 });

    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.steps.map((s) => s.stepIndex)).toEqual([...Array(1_000).keys()]);
    expect(records.steps.reduce((sum, s) => sum + s.costUsd, 0)).toBeCloseTo(run.costUsd, 6);

    const shown = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(shown.status).toBe(200);
    expect(shown.body.run).toMatchObject({ id: runId, phase: 'COMPLETED', stepsCompleted: 1_000 });

    const latest = await stack.client.workflow.getHandle(runId).describe();
    expect(latest.status.name).toBe('COMPLETED');
    const executions = await executionsOf(stack.client, runId);
    expect(executions.length).toBeGreaterThan(1);
    expect(executions.at(-1)!.runId).toBe(latest.runId);
    for (const e of executions) expect(e.events).toBeLessThan(10_240);
    // The run was started with its prices and its history bound pinned, so a code change cannot move its decisions.
    const [started] = (await stack.client.workflow.getHandle(runId, executions[0]!.runId).fetchHistory()).events ?? [];
    const input = defaultPayloadConverter.fromPayload<RunWorkflowInput>(started!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!);
    expect(input).toMatchObject({ prices: PRICE_TABLE, continueAsNewAfterEvents: RUN_HISTORY_EVENTS_BOUND });
    console.log(`1,000-step run: ${executions.length} executions of ${executions.map((e) => e.events).join(', ')} events`);
  });
});

