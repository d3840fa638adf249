/**
 * The run workflow alone: the real workflow bundle on the real dev server, its activities replaced
 * by an in-memory fake (no HTTP, no Postgres), so each decision, pause and saga path runs in
 * about a second. Policy decisions come from the real rule (`decidePolicy`) over a policy the fake
 * holds; the end-to-end suite checks the same paths against the real activities.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PlanStep } from '../../core/plan';
import { DEFAULT_POLICY, type PolicyRules } from '../../core/policy';
import { pauseSignal, policyChangedSignal, resumeSignal, resumeUpdate, runStateQuery, stopSignal, type RunWorkflowInput } from '../../workflows/messages';
import { executionsOf } from '../../lib/temporal';
import { finalRunState, recordHistory } from '../helpers/runs';
import { fakeActivities, newWorld, type FakeRunWorld } from './fake-world';

let client: Client;
let worker: Worker;
let running: Promise<void>;
const taskQueue = `run-workflow-${randomUUID()}`;

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

function plan(steps: number, input: Partial<PlanStep['input']> = {}): PlanStep[] {
  return Array.from({ length: steps }, (_, i) => ({ skill: 'sim.llm', input: { prompt: `step ${i}`, ...input } }) as PlanStep);
}

function chatPlan(steps: number, input: { maxTokens?: number } = {}): PlanStep[] {
  return Array.from({ length: steps }, (_, i) => ({ skill: 'llm.chat', input: { messages: [{ role: 'user', content: `step ${i}` }], ...input } }) as PlanStep);
}

async function startRun(
  steps: PlanStep[],
  options: {
    budgetUsd?: number;
    rules?: Partial<PolicyRules>;
    chatCostUsd?: number;
    continueAsNewAfterEvents?: number;
    input?: Partial<RunWorkflowInput>;
    failing?: string[];
  } = {},
) {
  const runId = randomUUID();
  const world = newWorld(runId);
  world.rules = { ...DEFAULT_POLICY, ...options.rules };
  world.chatCostUsd = options.chatCostUsd ?? world.chatCostUsd;
  for (const activity of options.failing ?? []) world.failing.add(activity);
  const input: RunWorkflowInput = {
    runId,
    tenantId: randomUUID(),
    plan: steps,
    budgetUsd: options.budgetUsd ?? 1,
    authorization: { decision: 'ALLOWED', reason: null },
    observabilityMode: 'DEGRADED',
    policyVersion: 1,
    ...(options.continueAsNewAfterEvents ? { continueAsNewAfterEvents: options.continueAsNewAfterEvents } : {}),
    ...options.input,
  };
  const handle = await client.workflow.start('runWorkflow', { taskQueue, workflowId: runId, args: [input] });
  return { handle, world };
}

/** Does `act` while the run's first step is held, then lets the step finish. */
async function whileFirstStepRuns(world: FakeRunWorld, act: () => Promise<void>): Promise<void> {
  const first = world.hold(0);
  await first.reached;
  await act();
  first.release();
}

/** The phases the run recorded, in order (a move rides with a write or has its own), ending with the one `finalizeRun` moved it to. */
function phasesOf(world: FakeRunWorld): string[] {
  return world.calls.flatMap(({ activity, input }) => [
    ...((input.transitions as { to: string }[] | undefined) ?? []).map((t) => t.to),
    ...(activity === 'recordTransition' ? [String(input.to)] : []),
    ...(activity === 'finalizeRun' ? [`${String(input.to)}/${String(input.status)}`] : []),
  ]);
}

const SAGA = ['createIncident', 'evaluatePolicy', 'completeTrace'];

describe('the run workflow against fake activities', () => {
  it('takes a clean run through every phase, the saga in order, and returns its state', async () => {
    const { handle, world } = await startRun(plan(3));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 3, sagaPhase: 'EVENTS_PUBLISHED' });
    expect(phasesOf(world)).toEqual(['AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED/succeeded']);
    expect(world.calls.map((c) => c.activity).filter((a) => SAGA.includes(a))).toEqual(SAGA);
    expect(world.named('runStep').map((s) => s.stepIndex)).toEqual([0, 1, 2]);
    recordForReplay(handle.workflowId, 'path-clean-run');
  });

  it('writes its moves with the writes that follow them, but the move into GOVERNANCE_CHECK on its own', async () => {
    const { handle, world } = await startRun(plan(1));
    await finalRunState(handle);
    const moves = (activity: string) => world.named(activity).map((c) => ((c.transitions as { to: string }[] | undefined) ?? []).map((t) => t.to));
    expect(moves('checkPolicy')).toEqual([['AUTHORIZED', 'EXECUTING']]);
    expect(world.named('recordTransition').map((t) => t.to)).toEqual(['GOVERNANCE_CHECK']);
    expect(moves('createRunLog')).toEqual([['FINALIZING']]);
  });

  it('keeps the moves a failed write carried for the next write', async () => {
    const { handle, world } = await startRun(plan(2), { failing: ['checkPolicy'] });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'RECORDING_FAILED' }, stepsCompleted: 0 });
    // The run closes through governance; the moves the failed check carried go with the next write.
    expect(phasesOf(world)).toEqual(['AUTHORIZED', 'EXECUTING', 'AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'FAILED/failed']);
    expect(world.named('recordTransition')[0]).toMatchObject({ to: 'GOVERNANCE_CHECK', transitions: [{ to: 'AUTHORIZED' }, { to: 'EXECUTING' }] });
  });

  it('fails a run whose unbounded step overruns the budget, after that step, closing it through governance', async () => {
    // A chat step without maxTokens has no upper bound and the first one has no average to go by.
    const { handle, world } = await startRun(chatPlan(3), { budgetUsd: 0.01 });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'BUDGET_EXCEEDED' }, stepsCompleted: 1 });
    expect(state.costUsd).toBeGreaterThan(0.01);
    recordForReplay(handle.workflowId, 'path-budget-overrun');
    expect(phasesOf(world)).toEqual(['AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'FAILED/failed_policy']);
    expect(world.named('runStep')).toHaveLength(1);
  });

  it('refuses a step predicted to overrun the budget before it runs, so the run never spends more than its budget', async () => {
    // $0.060064 per step at most; a $0.13 budget holds two.
    const { handle, world } = await startRun(plan(4, { completionTokens: 10_000 }), { budgetUsd: 0.13 });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'BUDGET_EXCEEDED' }, stepsCompleted: 2 });
    expect(state.costUsd).toBeLessThanOrEqual(0.13);
    expect(state.error!.message).toMatch(/predicted overrun: step 3 \(sim\.llm\) would cost at most \$0\.06\d* .* budget of \$0\.13/);
    expect(world.named('runStep').map((s) => s.stepIndex)).toEqual([0, 1]);
    // The prediction is what the final evaluation records.
    expect(world.named('evaluatePolicy')[0]!.outcome).toMatchObject({ code: 'BUDGET_EXCEEDED', message: state.error!.message });
    recordForReplay(handle.workflowId, 'path-predicted-overrun-terminate');
  });

  it('predicts an unbounded step from the run\'s average step, once there is one', async () => {
    const { handle } = await startRun(chatPlan(5), { budgetUsd: 0.12, chatCostUsd: 0.04 });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ error: { code: 'BUDGET_EXCEEDED' }, stepsCompleted: 3, costUsd: 0.12 });
    expect(state.error!.message).toContain("would cost about (the run's average step) $0.04");
  });

  it('pauses before a predicted overrun when the policy says PAUSE, and a resume lets that one step run', async () => {
    // Up to 10,000 tokens out at the dearest price is $0.1 a step; the fake provider bills $0.05.
    const { handle, world } = await startRun(chatPlan(3, { maxTokens: 10_000 }), { budgetUsd: 0.2, rules: { onPredictedOverrun: 'PAUSE' } });
    await waitUntil(async () => (await handle.query(runStateQuery)).pause?.reason === 'BUDGET_WARNING');
    expect(world.named('runStep')).toHaveLength(3 - 1);
    expect(world.named('recordPause')[0]).toMatchObject({ reason: 'BUDGET_WARNING', detail: expect.stringContaining('predicted overrun: step 3') });
    await handle.signal(resumeSignal, { reason: 'worth it', actor: 'ops', authority: 'TENANT_ADMIN' });
    const state = await finalRunState(handle);
    // The resumed step ran: $0.15 in all, within the $0.2 its prediction feared it would cross.
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 3, costUsd: 0.15 });
    expect(world.named('recordResume')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'path-predicted-overrun-pause-resumed');
  });

  it('does not let the pause SLA approve a predicted overrun, even when the policy says CONTINUE', async () => {
    const { handle, world } = await startRun(chatPlan(3, { maxTokens: 10_000 }), {
      budgetUsd: 0.2,
      rules: { onPredictedOverrun: 'PAUSE', pauseSlaSeconds: 1, pauseWarningSeconds: 0, pauseTimeoutBehavior: 'CONTINUE' },
    });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'PAUSE_TIMEOUT' }, stepsCompleted: 2 });
    expect(world.named('runStep')).toHaveLength(2);
    expect(world.named('recordResume')).toHaveLength(0);
    expect(world.named('recordPauseTimeout')[0]).toMatchObject({ reason: 'BUDGET_WARNING', behavior: 'TERMINATE' });
  });

  it('holds a paused run until a resume, and records both', async () => {
    const { handle, world } = await startRun(plan(3));
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { reason: 'look first', actor: 'ops', authority: 'TENANT_ADMIN' }));
    await waitUntil(async () => (await handle.query(runStateQuery)).pause !== null);
    expect(world.named('runStep')).toHaveLength(1);
    await handle.signal(resumeSignal, { reason: 'go on', actor: 'ops', authority: 'TENANT_ADMIN' });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 3, pause: null });
    expect(world.named('recordPause')).toHaveLength(1);
    expect(world.named('recordResume')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'path-pause-resumed-by-signal');
  });

  it('terminates a run whose pause outlives its SLA when the policy says TERMINATE', async () => {
    const { handle, world } = await startRun(plan(2), { rules: { pauseSlaSeconds: 1, pauseWarningSeconds: 0, pauseTimeoutBehavior: 'TERMINATE' } });
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { reason: 'nobody will come', actor: 'ops', authority: 'TENANT_ADMIN' }));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'PAUSE_TIMEOUT' }, stepsCompleted: 1 });
    expect(world.named('recordPauseTimeout')).toHaveLength(1);
    expect(world.named('runStep')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'path-pause-sla-terminate');
  });

  it('stops a run before its next step, cancelled, and records its governance', async () => {
    const { handle, world } = await startRun(plan(3));
    await whileFirstStepRuns(world, () => handle.signal(stopSignal, { reason: 'enough', actor: 'ops', authority: 'TENANT_ADMIN' }));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'cancelled', error: { code: 'STOPPED' }, stepsCompleted: 1 });
    expect(world.calls.map((c) => c.activity).filter((a) => SAGA.includes(a))).toEqual(SAGA);
    recordForReplay(handle.workflowId, 'path-stopped');
  });

  it('rolls the saga back newest first when a step of it fails for good', async () => {
    // A failed run, so that its saga has all four steps (a lesson among them) to undo.
    const { handle, world } = await startRun(plan(1, { fail: true }));
    world.failing.add('completeTrace');
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', sagaPhase: 'ROLLED_BACK', error: { code: 'GOVERNANCE_ERROR' } });
    expect(world.calls.map((c) => c.activity).filter((a) => a.startsWith('rollback'))).toEqual([
      'rollbackTraceCompletion',
      'rollbackLesson',
      'rollbackPolicyEvaluation',
      'rollbackIncident',
    ]);
    // A rolled-back saga fails the run from GOVERNANCE_CHECK: FINALIZING follows governance that stood.
    expect(phasesOf(world)).toEqual(['AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FAILED/failed']);
    recordForReplay(handle.workflowId, 'path-saga-rolled-back');
  });

  it('records the lesson between the evaluation and the trace completion, which announces it; the incident step is told the run learns', async () => {
    const { handle, world } = await startRun(plan(2, { fail: true }));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'STEP_FAILED' }, sagaPhase: 'EVENTS_PUBLISHED' });
    expect(world.calls.map((c) => c.activity).filter((a) => [...SAGA, 'recordLesson'].includes(a))).toEqual(['createIncident', 'evaluatePolicy', 'recordLesson', 'completeTrace']);
    expect(world.named('createIncident')[0]).toMatchObject({ lessons: true });
    expect(world.named('recordLesson')[0]).toMatchObject({ outcome: { code: 'STEP_FAILED' }, end: { phase: 'EXECUTING', stepIndex: 0, costUsd: 0 } });
    const events = world.named('completeTrace')[0]!.events as { topic: string; payload: Record<string, unknown> }[];
    expect(events.filter((e) => e.topic === 'lesson.recorded').map((e) => e.payload)).toEqual([expect.objectContaining({ code: 'STEP_FAILED', stepIndex: 0 })]);
    recordForReplay(handle.workflowId, 'path-lesson-recorded');
  });

  it('skips the lesson step of a run the incident step found owing no lesson, and leaves its saga phase where it stood', async () => {
    const clean = await startRun(plan(1));
    const state = await finalRunState(clean.handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', sagaPhase: 'EVENTS_PUBLISHED' });
    expect(clean.world.calls.map((c) => c.activity).filter((a) => [...SAGA, 'recordLesson'].includes(a))).toEqual(SAGA);
    expect(clean.world.named('createIncident')[0]).toMatchObject({ lessons: true });
    expect((clean.world.named('completeTrace')[0]!.events as { topic: string }[]).map((e) => e.topic)).not.toContain('lesson.recorded');
    // A person's stop teaches nothing either.
    const stopped = await startRun(plan(2));
    await whileFirstStepRuns(stopped.world, () => stopped.handle.signal(stopSignal, { reason: 'enough', actor: 'ops', authority: 'TENANT_ADMIN' }));
    expect(await finalRunState(stopped.handle)).toMatchObject({ error: { code: 'STOPPED' } });
    expect(stopped.world.named('recordLesson')).toHaveLength(0);
    // A saga rolled back after a skipped lesson step has no lesson to undo.
    const rolledBack = await startRun(plan(1));
    rolledBack.world.failing.add('completeTrace');
    expect(await finalRunState(rolledBack.handle)).toMatchObject({ sagaPhase: 'ROLLED_BACK' });
    expect(rolledBack.world.calls.map((c) => c.activity).filter((a) => a.startsWith('rollback'))).toEqual(['rollbackTraceCompletion', 'rollbackPolicyEvaluation', 'rollbackIncident']);
    recordForReplay(clean.handle.workflowId, 'path-lesson-skipped');
  });

  it('finalizes the run when a compensation gives up, after running the others', async () => {
    const { handle, world } = await startRun(plan(1));
    world.failing.add('completeTrace');
    world.failing.add('rollbackPolicyEvaluation');
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', sagaPhase: 'ROLLBACK_INCOMPLETE', error: { code: 'GOVERNANCE_ERROR' } });
    expect(state.error!.message).toContain('could not undo POLICY_EVALUATED');
    expect(world.named('rollbackIncident')).toHaveLength(1);
    expect(world.named('finalizeRun')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'path-compensation-gives-up');
  });

  it('resumes a paused run by update, answering with the run state once it goes on', async () => {
    const { handle, world } = await startRun(plan(2));
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { reason: 'look first', actor: 'ops', authority: 'TENANT_ADMIN' }));
    await waitUntil(async () => (await handle.query(runStateQuery)).pause !== null);
    await expect(handle.executeUpdate(resumeUpdate, { args: [{ actor: 'viewer', authority: 'NOBODY' }] })).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/may not resume/) },
    });
    const answered = await handle.executeUpdate(resumeUpdate, { args: [{ actor: 'ops', authority: 'TENANT_ADMIN', reason: 'go on' }] });
    expect(answered.pause).toBeNull();
    expect(await finalRunState(handle)).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2 });
    expect(world.named('recordResume')).toHaveLength(1);
    recordForReplay(handle.workflowId, 'path-pause-resumed-by-update');
  });

  it('resumes a run by itself when its pause outlives the SLA and the policy says CONTINUE', async () => {
    const { handle, world } = await startRun(plan(2), { rules: { pauseSlaSeconds: 1, pauseWarningSeconds: 0.5, pauseTimeoutBehavior: 'CONTINUE' } });
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { reason: 'back soon', actor: 'ops', authority: 'TENANT_ADMIN' }));
    expect(await finalRunState(handle)).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2 });
    expect(world.named('recordPauseWarning')).toHaveLength(1);
    expect(world.named('recordResume')[0]).toMatchObject({ endedBy: 'timeout', authority: 'SYSTEM_AUTO' });
    recordForReplay(handle.workflowId, 'path-pause-sla-continue');
  });

  it('escalates a pause that outlives its SLA once, then terminates it when the policy says ESCALATE', async () => {
    const { handle, world } = await startRun(plan(2), { rules: { pauseSlaSeconds: 1, pauseWarningSeconds: 0, pauseTimeoutBehavior: 'ESCALATE' } });
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { reason: 'nobody will come', actor: 'ops', authority: 'TENANT_ADMIN' }));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'PAUSE_TIMEOUT' }, stepsCompleted: 1 });
    expect(state.error!.message).toContain('nor within the escalation period');
    expect(world.named('recordPauseTimeout').map((t) => t.escalation)).toEqual([true, false]);
    recordForReplay(handle.workflowId, 'path-pause-sla-escalate');
  });

  it('terminates a run whose tenant is suspended at its next step', async () => {
    const { handle, world } = await startRun(plan(3));
    await whileFirstStepRuns(world, async () => {
      world.tenantStatus = 'suspended';
      await handle.signal(policyChangedSignal);
    });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'POLICY_TERMINATED' }, stepsCompleted: 1 });
    expect(state.error!.message).toContain('TENANT_SUSPENDED');
    recordForReplay(handle.workflowId, 'path-tenant-suspended');
  });

  it('fails a run that is not authorized without executing it', async () => {
    const { handle, world } = await startRun(plan(2), { input: { authorization: { decision: 'DENIED', reason: 'skill not allowed' } } });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed_policy', error: { code: 'AUTHORIZATION_DENIED' }, stepsCompleted: 0 });
    expect(world.named('runStep')).toHaveLength(0);
    expect(phasesOf(world)).toEqual(['FAILED/failed_policy']);
    recordForReplay(handle.workflowId, 'path-denied');
  });

  it('fails a STRICT run whose trace cannot start, before any step', async () => {
    const { handle, world } = await startRun(plan(2), { input: { observabilityMode: 'STRICT' }, failing: ['startTrace'] });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'OBSERVABILITY_REQUIRED' }, stepsCompleted: 0 });
    expect(world.named('recordTraceStartFailure')).toHaveLength(1);
    expect(world.named('runStep')).toHaveLength(0);
    recordForReplay(handle.workflowId, 'path-observability-strict');
  });

  it('fails a run whose step fails for good, through governance', async () => {
    const { handle, world } = await startRun(plan(3, { fail: true }));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'failed', error: { code: 'STEP_FAILED' }, stepsCompleted: 0 });
    expect(phasesOf(world)).toEqual(['AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'FAILED/failed']);
    recordForReplay(handle.workflowId, 'path-step-failed');
  });
});

/** Names a history for the replay corpus when the suite runs with RECORD_HISTORIES=<version>. */
function recordForReplay(runId: string, name: string, executionRunId?: string): void {
  if (process.env.RECORD_HISTORIES) recordHistory(runId, `${name}-${process.env.RECORD_HISTORIES}`, executionRunId);
}

describe('a long run continues as new', () => {
  it('cuts its history into executions under the bound, each step run once, its records keyed on as if it were one', async () => {
    const { handle, world } = await startRun(plan(30), { continueAsNewAfterEvents: 60 });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 30, tokens: expect.any(Number) });
    expect(state.continuedAsNew).toBeGreaterThanOrEqual(3);
    expect(world.named('runStep').map((s) => s.stepIndex)).toEqual([...Array(30).keys()]);
    expect(world.named('runStep').map((s) => s.stepIndex)).toEqual([...Array(30).keys()]);
    // Its checks go on numbering: a check key reused across executions would return an old decision.
    const checks = world.named('checkPolicy').map((c) => c.checkNumber as number);
    expect(checks).toEqual([...checks.keys()].map((i) => i + 1));
    expect(phasesOf(world)).toEqual(['AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED/succeeded']);
    expect(world.named('startTrace')).toHaveLength(1);
    const executions = await executionsOf(client, handle.workflowId);
    expect(executions).toHaveLength(state.continuedAsNew! + 1);
    // The bound is checked between steps: an execution ends within one step's events of it.
    for (const e of executions) expect(e.events).toBeLessThan(60 + 20);
    recordForReplay(handle.workflowId, 'run-continued-as-new-first', executions[0]!.runId);
    recordForReplay(handle.workflowId, 'run-continued-as-new-last', executions.at(-1)!.runId);
  });

  it('carries a stop accepted during a step into the next execution, which acts on it', async () => {
    const { handle, world } = await startRun(plan(3), { continueAsNewAfterEvents: 1 });
    await whileFirstStepRuns(world, () => handle.signal(stopSignal, { reason: 'enough', actor: 'ops', authority: 'TENANT_ADMIN', requestId: 'stop-1' }));
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', status: 'cancelled', error: { code: 'STOPPED', message: 'run stopped by ops: enough' }, stepsCompleted: 1 });
    expect(state.continuedAsNew).toBe(1);
    expect(world.named('runStep')).toHaveLength(1);
  });

  it('carries a pause accepted during a step; the next execution holds the run until a resume', async () => {
    const { handle, world } = await startRun(plan(3), { continueAsNewAfterEvents: 1 });
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { reason: 'look first', actor: 'ops', authority: 'TENANT_ADMIN' }));
    await waitUntil(async () => (await handle.query(runStateQuery)).pause?.reason === 'MANUAL_PAUSE');
    expect(world.named('runStep')).toHaveLength(1);
    await handle.signal(resumeSignal, { reason: 'go on', actor: 'ops', authority: 'TENANT_ADMIN' });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 3, pause: null });
    expect(world.named('recordPause').map((p) => p.dedupeKey)).toEqual(['pause:1']);
    expect(world.named('recordResume')).toHaveLength(1);
  });
});

async function waitUntil(probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}


describe('signals the run cannot be wedged by', () => {
  const ADMIN = { actor: 'ops', authority: 'TENANT_ADMIN' };
  const refusals = (world: FakeRunWorld) => world.named('recordRejectedSignals').flatMap((c) => c.refusals as { detail: string; dedupeKey: string }[]);

  it('answers a flood of controls with refusals written in batches, and stays controllable', async () => {
    const { handle, world } = await startRun(plan(3));
    await whileFirstStepRuns(world, async () => {
      await handle.signal(pauseSignal, { ...ADMIN, reason: 'first' });
      await Promise.all(Array.from({ length: 300 }, (_, i) => handle.signal(pauseSignal, { ...ADMIN, reason: `again ${i}` })));
    });
    await waitUntil(async () => (await handle.query(runStateQuery)).pause?.reason === 'MANUAL_PAUSE');
    await handle.signal(stopSignal, { ...ADMIN, reason: 'enough' });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'FAILED', error: { code: 'STOPPED' } });
    // Keyed: a batch written again (a local activity repeated after a lost workflow task) is one refusal each.
    expect(new Set(refusals(world).map((r) => r.dedupeKey)).size).toBe(300);
    expect(refusals(world).every((r) => r.detail === 'run is already paused')).toBe(true);
    // Hundreds of refusals, a handful of writes.
    expect(world.named('recordRejectedSignals').length).toBeLessThanOrEqual(10);
    expect(world.named('recordRejectedSignal')).toHaveLength(0);
  });

  it('refuses a signal whose payload it cannot decode, and one too large, instead of failing its tasks', async () => {
    const { handle, world } = await startRun(plan(2));
    await whileFirstStepRuns(world, async () => {
      await client.workflowService.signalWorkflowExecution({
        namespace: 'default',
        workflowExecution: { workflowId: handle.workflowId },
        signalName: 'pause',
        identity: 'test',
        requestId: randomUUID(),
        input: { payloads: [{ metadata: { encoding: new TextEncoder().encode('binary/encrypted') }, data: new TextEncoder().encode('opaque') }] },
      });
      await handle.signal(pauseSignal, { ...ADMIN, reason: 'x'.repeat(100_000) });
    });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2 });
    expect(world.named('recordPause')).toHaveLength(0);
    expect(refusals(world).map((r) => r.detail)).toEqual([
      expect.stringMatching(/^signal refused: its payload \(6 bytes, encoding binary\/encrypted\) cannot be decoded/),
      expect.stringMatching(/^signal refused: its payload is \d+ bytes, over the 16384 a control may carry/),
    ]);
    await expect(handle.executeUpdate(resumeUpdate, { args: [{ ...ADMIN, reason: 'y'.repeat(100_000) }] })).rejects.toThrow();
    recordForReplay(handle.workflowId, 'path-signals-refused');
  });

  it('cuts a long reason and says so', async () => {
    const { handle, world } = await startRun(plan(2));
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { ...ADMIN, reason: 'r'.repeat(2_000) }));
    await waitUntil(async () => (await handle.query(runStateQuery)).pause !== null && (await handle.query(runStateQuery)).pause !== undefined);
    await handle.signal(resumeSignal, ADMIN);
    await finalRunState(handle);
    const detail = String(world.named('recordPause')[0]!.detail);
    expect(detail.endsWith(' [truncated]')).toBe(true);
    expect(detail.length).toBeLessThan(600);
  });

  it('continues as new before Temporal would refuse it signals', async () => {
    const { handle, world } = await startRun(plan(2));
    await whileFirstStepRuns(world, async () => {
      for (let sent = 0; sent < 2_050; sent += 50) await Promise.all(Array.from({ length: 50 }, () => handle.signal(policyChangedSignal)));
    });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2, continuedAsNew: 1 });
  }, 120_000);
});

describe('a pause that outlives its history', () => {
  const ADMIN = { actor: 'ops', authority: 'TENANT_ADMIN' };

  it('continues as new while paused when signals pile up, and the next execution holds the same pause until a resume', async () => {
    const { handle, world } = await startRun(plan(2));
    await whileFirstStepRuns(world, () => handle.signal(pauseSignal, { ...ADMIN, reason: 'hold on' }));
    const paused = await (async () => {
      await waitUntil(async () => (await handle.query(runStateQuery)).pause?.reason === 'MANUAL_PAUSE');
      return (await handle.query(runStateQuery)).pause!;
    })();
    for (let sent = 0; sent < 2_050; sent += 50) await Promise.all(Array.from({ length: 50 }, () => handle.signal(policyChangedSignal)));
    await waitUntil(async () => ((await handle.query(runStateQuery)).continuedAsNew ?? 0) >= 1, 30_000);
    const carried = (await handle.query(runStateQuery)).pause!;
    expect(carried).toMatchObject({ number: paused.number, reason: 'MANUAL_PAUSE', expiresAt: paused.expiresAt });
    await handle.executeUpdate(resumeUpdate, { args: [{ ...ADMIN, requestId: 'resume-after-continue' }] });
    const state = await finalRunState(handle);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2, continuedAsNew: 1 });
    expect(world.named('recordPause').map((p) => p.dedupeKey)).toEqual(['pause:1']);
    expect(world.named('recordResume').map((p) => p.dedupeKey)).toEqual(['resume:1']);
    expect(world.named('runStep')).toHaveLength(2);
    recordForReplay(handle.workflowId, 'pause-carried-first', (await executionsOf(client, handle.workflowId))[0]!.runId);
  }, 120_000);
});
