/**
 * An agent step in the run workflow, against the in-memory activities of `fake-world.ts` (the model
 * is a script): the loop, each turn and call governed, approvals bound to arguments and counted
 * once, the limits that end a runaway, a stop in the middle, and a loop that continues as new.
 * The end-to-end suite runs the same against real MCP servers and the real activities.
 */
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { Client, Connection, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PlanStep } from '../../core/plan';
import { DEFAULT_POLICY, DEFAULT_TOOL_POLICY, type PolicyRules, type ToolPolicy } from '../../core/policy';
import { executionsOf } from '../../lib/temporal';
import { policyChangedSignal, resumeSignal, resumeUpdate, runStateQuery, stopSignal, type RunState, type RunWorkflowInput } from '../../workflows/messages';
import { finalRunState, recordHistory } from '../helpers/runs';
import { fakeActivities, newWorld, type FakeRunWorld, type ScriptedTurn } from './fake-world';

let client: Client;
let worker: Worker;
let running: Promise<void>;
const taskQueue = `agent-workflow-${randomUUID()}`;

beforeAll(async () => {
  const address = inject('temporalAddress');
  client = new Client({ connection: await Connection.connect({ address }) });
  worker = await Worker.create({
    connection: await NativeConnection.connect({ address }),
    taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    activities: fakeActivities,
  });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await client?.connection.close();
});

const ADMIN = { actor: 'api-key:admin', authority: 'TENANT_ADMIN' };

function agentStep(input: Record<string, unknown> = {}): PlanStep {
  return { skill: 'agent', input: { instructions: 'use the files', maxTurns: 10, maxTokens: 256, maxParallelToolCalls: 4, ...input } } as PlanStep;
}

async function startAgent(
  script: ScriptedTurn[],
  options: { tools?: Partial<ToolPolicy>; rules?: Partial<PolicyRules>; budgetUsd?: number; step?: Record<string, unknown>; input?: Partial<RunWorkflowInput>; plan?: PlanStep[] } = {},
): Promise<{ handle: WorkflowHandle; world: FakeRunWorld }> {
  const runId = randomUUID();
  const world = newWorld(runId);
  world.script = script;
  world.rules = { ...DEFAULT_POLICY, ...options.rules, tools: { ...DEFAULT_TOOL_POLICY, allow: ['fs.*'], ...options.tools } };
  const input: RunWorkflowInput = {
    runId,
    tenantId: randomUUID(),
    plan: options.plan ?? [agentStep(options.step)],
    budgetUsd: options.budgetUsd ?? 1,
    authorization: { decision: 'ALLOWED', reason: null },
    observabilityMode: 'DEGRADED',
    policyVersion: 1,
    ...options.input,
  };
  const handle = await client.workflow.start('runWorkflow', { taskQueue, workflowId: runId, args: [input] });
  return { handle, world };
}

async function until(handle: WorkflowHandle, what: string, probe: (state: RunState) => boolean, timeoutMs = 10_000): Promise<RunState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await handle.query(runStateQuery);
    if (probe(state)) return state;
    if (Date.now() > deadline) throw new Error(`run never got to: ${what} (now ${JSON.stringify(state.pause ?? state.phase)})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const approvalPending = (handle: WorkflowHandle) => until(handle, 'a pending tool approval', (s) => s.pause?.reason === 'TOOL_APPROVAL');

function recordForReplay(runId: string, name: string, executionRunId?: string): void {
  if (process.env.RECORD_HISTORIES) recordHistory(runId, `${name}-${process.env.RECORD_HISTORIES}`, executionRunId);
}

describe('an agent step', () => {
  it('runs turns and their tool calls until the model answers, each governed and counted', async () => {
    const { handle, world } = await startAgent([
      { calls: [{ tool: 'fs.list_directory', args: '{"path":"/data"}' }] },
      { calls: [{ tool: 'fs.read_text_file', args: '{"path":"/data/a"}' }, { tool: 'fs.read_text_file', args: '{"path":"/data/b"}' }] },
      { answer: 'a and b say hello' },
    ]);
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 1, turns: 3, toolCalls: 3, actionsCompleted: 6, agent: null });
    expect(state.output).toMatchObject({ bytes: 'a and b say hello'.length });
    expect(world.named('agentTurn').map((t) => t.turn)).toEqual([0, 1, 2]);
    // The second turn's two calls run side by side: in either order.
    expect(world.named('callTool').map((c) => `${c.turn}.${c.callIndex}`).sort()).toEqual(['0.0', '1.0', '1.1']);
    expect(world.named('resolveToolCalls')).toHaveLength(0);
    // Three turns at $0.001, calls free.
    expect(state.costUsd).toBeCloseTo(0.003, 9);
    recordForReplay(handle.workflowId, 'agent-clean');
  });

  it('tells the model when a tool is not allowed, and goes on', async () => {
    const { handle, world } = await startAgent([{ calls: [{ tool: 'shell.exec', args: '{"cmd":"rm -rf /"}' }] }, { answer: 'could not' }]);
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', toolCalls: 1 });
    expect(world.named('callTool')).toHaveLength(0);
    const [resolved] = world.named('resolveToolCalls');
    expect(resolved!.calls).toEqual([expect.objectContaining({ tool: 'shell.exec', resolution: 'not_allowed', message: expect.stringContaining('does not allow') })]);
  });

  it('fails the run on a refused tool when the policy says FAIL_RUN', async () => {
    const { handle, world } = await startAgent([{ calls: [{ tool: 'shell.exec' }] }, { answer: 'never' }], { tools: { onDenied: 'FAIL_RUN' } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'TOOL_DENIED' } });
    expect(world.named('agentTurn')).toHaveLength(1);
    expect(world.named('resolveToolCalls')[0]!.calls).toEqual([expect.objectContaining({ resolution: 'not_allowed' })]);
  });

  it('ends a runaway loop at maxCallsPerRun, resolving the call it refused', async () => {
    const { handle, world } = await startAgent([{ calls: [{ tool: 'fs.read_text_file', args: '{"path":"/again"}' }] }], { tools: { maxCallsPerRun: 5 }, step: { maxTurns: 100 } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'TOOL_CALL_LIMIT' } });
    expect(world.named('callTool')).toHaveLength(5);
    expect(world.named('resolveToolCalls').flatMap((r) => r.calls as { resolution: string }[]).map((c) => c.resolution)).toEqual(['limit']);
  });

  it('ends a loop at its own maxTurns', async () => {
    const { handle, world } = await startAgent([{ calls: [{ tool: 'fs.read_text_file' }] }], { step: { maxTurns: 3 } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'AGENT_TURNS_EXHAUSTED' }, turns: 3 });
    expect(world.named('callTool')).toHaveLength(3);
  });

  it("refuses a turn whose bound would overrun the budget before the model is asked, and never spends over it", async () => {
    // $0.001 a turn, a bound of $0.002: the fourth turn's bound no longer fits a $0.0045 budget.
    const { handle, world } = await startAgent([{ calls: [{ tool: 'fs.read_text_file' }] }], { budgetUsd: 0.0045, step: { maxTurns: 50 } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'BUDGET_EXCEEDED', message: expect.stringContaining('predicted overrun') } });
    expect(state.costUsd).toBeLessThanOrEqual(0.0045);
    expect(world.named('agentTurn').filter((t) => !t.acceptOverrun)).toHaveLength(4);
  });

  it('reserves what a turn\'s tool calls cost together: a call that would overrun is refused before it runs', async () => {
    const { handle, world } = await startAgent([{ calls: [{ tool: 'fs.a' }, { tool: 'fs.b' }, { tool: 'fs.c' }] }, { answer: 'x' }], {
      budgetUsd: 0.25,
      tools: { prices: [{ pattern: 'fs.*', usd: 0.1 }] },
    });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'BUDGET_EXCEEDED' } });
    expect(world.named('callTool')).toHaveLength(0);
    expect(world.named('resolveToolCalls')[0]!.calls).toEqual([
      expect.objectContaining({ callIndex: 2, resolution: 'not_run' }),
      expect.objectContaining({ callIndex: 0, resolution: 'not_run' }),
      expect.objectContaining({ callIndex: 1, resolution: 'not_run' }),
    ]);
    expect(state.costUsd).toBeLessThanOrEqual(0.25);
  });

  it('stops in the middle of the loop, at the next turn, leaving no call unresolved', async () => {
    const { handle, world } = await startAgent([{ calls: [{ tool: 'fs.read_text_file' }] }], { step: { maxTurns: 100 } });
    const third = world.holdTurn(2);
    await third.reached;
    await handle.signal(stopSignal, { ...ADMIN, reason: 'enough', requestId: 'stop-1' });
    third.release();
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'cancelled', error: { code: 'STOPPED' }, turns: 3 });
    // The third turn asked for a call; the stop came before it ran.
    expect(world.named('callTool')).toHaveLength(2);
    expect(world.named('resolveToolCalls').flatMap((r) => r.calls as { resolution: string }[]).map((c) => c.resolution)).toEqual(['not_run']);
  });
});

describe('a tool call that needs approval', () => {
  const script: ScriptedTurn[] = [{ calls: [{ tool: 'fs.write_file', args: '{"path":"/x","content":"1"}' }] }, { answer: 'written' }];
  const needsApproval = { requireApproval: ['fs.write_file'] };

  it('pauses with the tool and its arguments; a stale hash is refused, the right one runs the call', async () => {
    const { handle, world } = await startAgent(script, { tools: needsApproval });
    const paused = await approvalPending(handle);
    expect(paused.pause!.approval).toMatchObject({ tool: 'fs.write_file', argsPreview: '{"path":"/x","content":"1"}', argsSha256: expect.any(String), turn: 0, callIndex: 0 });
    expect(paused.pause!.allowedAuthorities).toEqual(['TENANT_ADMIN', 'FOUNDER_ONLY']);
    expect(world.named('callTool')).toHaveLength(0);

    const refusal = (request: Record<string, unknown>) =>
      handle.executeUpdate(resumeUpdate, { args: [request] }).then(
        () => 'accepted',
        (err: unknown) =>
          err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure ? `${err.cause.type}: ${err.cause.message}` : `unexpected: ${String(err)}`,
      );
    expect(await refusal({ ...ADMIN, argsSha256: 'f'.repeat(64), requestId: 'a-1' })).toMatch(/^APPROVAL_MISMATCH: .*is not the pending call's/);
    expect(await refusal({ ...ADMIN, requestId: 'a-2' })).toMatch(/^APPROVAL_MISMATCH: .*must quote the arguments' hash/);
    // A member may not approve: approvals are for admins.
    expect(await refusal({ actor: 'member', authority: 'TENANT_USER', argsSha256: paused.pause!.approval!.argsSha256, requestId: 'a-3' })).toMatch(/^AUTHORITY_NOT_ALLOWED: .*may not resume/);
    expect(world.named('callTool')).toHaveLength(0);

    await handle.executeUpdate(resumeUpdate, { args: [{ ...ADMIN, argsSha256: paused.pause!.approval!.argsSha256, requestId: 'a-4' }] });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', toolCalls: 1 });
    expect(world.named('callTool')).toHaveLength(1);
    expect(world.named('recordPause')[0]).toMatchObject({ reason: 'TOOL_APPROVAL', approval: { tool: 'fs.write_file', argsSha256: paused.pause!.approval!.argsSha256 } });
    expect(world.named('recordResume')[0]).toMatchObject({ kind: 'approve', actor: 'api-key:admin', approval: { decision: 'approve', requestId: 'a-4' } });
    recordForReplay(handle.workflowId, 'agent-approval');
  });

  it('is denied: the model is told and goes on', async () => {
    const { handle, world } = await startAgent(script, { tools: needsApproval });
    const paused = await approvalPending(handle);
    await handle.executeUpdate(resumeUpdate, { args: [{ ...ADMIN, decision: 'deny', argsSha256: paused.pause!.approval!.argsSha256, reason: 'not today', requestId: 'd-1' }] });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', turns: 2 });
    expect(world.named('callTool')).toHaveLength(0);
    expect(world.named('resolveToolCalls')[0]!.calls).toEqual([expect.objectContaining({ resolution: 'denied', message: expect.stringContaining('not today') })]);
    expect(world.named('recordResume')[0]).toMatchObject({ kind: 'deny', approval: { decision: 'deny' } });
    // A denied call is a near miss: the run owes a lesson though it completed, and its saga records it.
    expect(world.named('recordLesson')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'agent-denial');
  });

  it('is approved through a signal, as tctl sends it', async () => {
    const { handle, world } = await startAgent(script, { tools: needsApproval });
    const paused = await approvalPending(handle);
    await handle.signal(resumeSignal, { ...ADMIN, argsSha256: paused.pause!.approval!.argsSha256 });
    expect(await finalRunState(handle)).toMatchObject({ phase: 'COMPLETED' });
    expect(world.named('callTool')).toHaveLength(1);
  });

  it('counts a retried approval once: it never approves the next call, even one with the same arguments', async () => {
    const same: ScriptedTurn = { calls: [{ tool: 'fs.write_file', args: '{"path":"/x","content":"1"}' }] };
    const { handle, world } = await startAgent([same, same, { answer: 'twice' }], { tools: needsApproval });
    const first = await approvalPending(handle);
    const approve = (requestId: string, argsSha256: string) => handle.executeUpdate(resumeUpdate, { args: [{ ...ADMIN, argsSha256, requestId }] });
    await approve('approval-1', first.pause!.approval!.argsSha256);
    const second = await until(handle, 'the second approval', (s) => s.pause?.approval?.turn === 1);
    expect(second.pause!.approval!.argsSha256).toBe(first.pause!.approval!.argsSha256);
    // The client that sent approval-1 retries it (its answer was lost): the run answers, still paused.
    const retried = await approve('approval-1', first.pause!.approval!.argsSha256);
    expect(retried.pause).toMatchObject({ reason: 'TOOL_APPROVAL', approval: { turn: 1 } });
    await handle.signal(resumeSignal, { ...ADMIN, argsSha256: first.pause!.approval!.argsSha256, requestId: 'approval-1' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await handle.query(runStateQuery)).pause?.approval?.turn).toBe(1);
    expect(world.named('callTool')).toHaveLength(1);
    await approve('approval-2', second.pause!.approval!.argsSha256);
    expect(await finalRunState(handle)).toMatchObject({ phase: 'COMPLETED' });
    expect(world.named('callTool')).toHaveLength(2);
  });

  it('runs out its SLA under CONTINUE as a denial, never an approval', async () => {
    const { handle, world } = await startAgent(script, { tools: needsApproval, rules: { pauseSlaSeconds: 1, pauseWarningSeconds: 0, pauseTimeoutBehavior: 'CONTINUE' } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED' });
    expect(world.named('callTool')).toHaveLength(0);
    expect(world.named('resolveToolCalls')[0]!.calls).toEqual([expect.objectContaining({ resolution: 'denied', message: expect.stringContaining('approval ran out') })]);
    expect(world.named('recordResume')[0]).toMatchObject({ endedBy: 'timeout', approval: { decision: 'deny' } });
  });

  it('runs out its SLA under TERMINATE: the run fails PAUSE_TIMEOUT and the call never runs', async () => {
    const { handle, world } = await startAgent(script, { tools: needsApproval, rules: { pauseSlaSeconds: 1, pauseWarningSeconds: 0, pauseTimeoutBehavior: 'TERMINATE' } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'PAUSE_TIMEOUT' } });
    expect(world.named('callTool')).toHaveLength(0);
    expect(world.named('resolveToolCalls')[0]!.calls).toEqual([expect.objectContaining({ resolution: 'not_run' })]);
  });
});

describe('a long agent loop continues as new', () => {
  it('goes on at the next turn in a fresh execution, its counters and numbering carried', async () => {
    const script: ScriptedTurn[] = [...Array.from({ length: 12 }, () => ({ calls: [{ tool: 'fs.read_text_file' }] })), { answer: 'read it twelve times' }];
    const { handle, world } = await startAgent(script, { step: { maxTurns: 20 }, input: { continueAsNewAfterEvents: 40 } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', turns: 13, toolCalls: 12 });
    expect(state.continuedAsNew).toBeGreaterThanOrEqual(2);
    expect(world.named('agentTurn').map((t) => t.turn)).toEqual([...Array(13).keys()]);
    expect(world.named('startTrace')).toHaveLength(1);
    const executions = await executionsOf(client, handle.workflowId);
    expect(executions).toHaveLength(state.continuedAsNew! + 1);
    recordForReplay(handle.workflowId, 'agent-continued-first', executions[0]!.runId);
    recordForReplay(handle.workflowId, 'agent-continued-last', executions.at(-1)!.runId);
  });
});

describe('an approval that outlives its history', () => {
  it('carries the pending approval into a fresh execution, where the same hash approves the call once', async () => {
    const script: ScriptedTurn[] = [
      { calls: [{ tool: 'fs.read_text_file', args: '{"path":"/a"}' }, { tool: 'fs.write_file', args: '{"path":"/x","content":"1"}' }, { tool: 'shell.exec', args: '{}' }] },
      { answer: 'done' },
    ];
    const { handle, world } = await startAgent(script, { tools: { requireApproval: ['fs.write_file'] } });
    const paused = await approvalPending(handle);
    for (let sent = 0; sent < 2_050; sent += 50) await Promise.all(Array.from({ length: 50 }, () => handle.signal(policyChangedSignal)));
    await until(handle, 'a fresh execution', (s) => (s.continuedAsNew ?? 0) >= 1, 30_000);
    const carried = await approvalPending(handle);
    expect(carried.pause).toMatchObject({ number: paused.pause!.number, approval: paused.pause!.approval });
    await handle.executeUpdate(resumeUpdate, { args: [{ ...ADMIN, argsSha256: paused.pause!.approval!.argsSha256, requestId: 'approve-after-continue' }] });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', toolCalls: 3, turns: 2, continuedAsNew: 1 });
    // The call ruled before the pause, and the approved one, each ran once; the refused one was told.
    expect(world.named('callTool').map((c) => c.callIndex).sort()).toEqual([0, 1]);
    expect(world.named('resolveToolCalls').flatMap((r) => r.calls as { callIndex: number; resolution: string }[])).toEqual([expect.objectContaining({ callIndex: 2, resolution: 'not_allowed' })]);
    expect(world.named('recordPause')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'agent-approval-carried-last', (await executionsOf(client, handle.workflowId)).at(-1)!.runId);
  }, 120_000);
});
