/**
 * The run workflow's activities, in memory: each run gets a world that records every call, holds
 * the policy the checks decide on (with the real rule, `decidePolicy`), fails what a test says,
 * holds steps at gates, and scripts an agent's model turns. Typed against the real activities, so
 * a changed activity signature breaks the fake at compile time, not at run time.
 */
import type { PolicyCheckRequest, PolicyCheckResponse, StepResult, RunStepInput, StepRecord, AgentTurnInput, AgentTurnResult, ToolCallInput, ToolCallRecord, UnrunToolCall } from '../../core/contracts';
import { randomUUID } from 'node:crypto';
import type { RecordLessonInput, RecordedLesson } from '../../activities/lessons';
import type { RecordedIncident } from '../../activities/incidents';
import { owesLesson, type NearMissFacts } from '../../core/lessons';
import type { RunOutcome } from '../../core/outcome';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../activities';
import { simulateCompletion } from '../../activities/skills/sim';
import type { RequestedToolCall } from '../../core/agent';
import type { OutputRef } from '../../core/outputs';
import type { PlanStep } from '../../core/plan';
import { DEFAULT_POLICY, type PolicyRules } from '../../core/policy';
import { decidePolicy } from '../../core/policy-check';
import type { ToolCallResolution } from '../../core/tool-calls';

export interface Call {
  activity: string;
  input: Record<string, unknown>;
}

/** Where a step waits for the test: `reached` once the step runs, and it goes on at `release()`. */
export class Gate {
  readonly reached: Promise<void>;
  private readonly opened: Promise<void>;
  private arrive!: () => void;
  release!: () => void;

  constructor() {
    this.reached = new Promise((r) => (this.arrive = r));
    this.opened = new Promise((r) => (this.release = r));
  }

  pass(): Promise<void> {
    this.arrive();
    return this.opened;
  }
}

/** What the scripted model answers in one turn: tool calls (by tool id), or the final answer. */
export type ScriptedTurn = { calls: { tool: string | null; args?: string }[] } | { answer: string };

/** One run's world as its activities see it: what they were asked, the policy, what fails. */
export class FakeRunWorld {
  readonly calls: Call[] = [];
  rules: PolicyRules = DEFAULT_POLICY;
  /** Activities that fail for good (a non-retryable failure, as after the retry budget). */
  readonly failing = new Set<string>();
  readonly gates = new Map<number, Gate>();
  /** An agent's turns held until the test releases them, by turn. */
  readonly turnGates = new Map<number, Gate>();
  tenantStatus: 'active' | 'suspended' = 'active';
  /** What an `llm.chat` step charges here: the fake provider's bill. */
  chatCostUsd = 0.05;
  /** The agent's model, turn by turn; past the script it asks for the last turn's calls again (a runaway). */
  script: ScriptedTurn[] = [];
  turnCostUsd = 0.001;
  /** What a turn's activity says its bound is: over the budget, it refuses the turn. */
  turnBoundUsd = 0.002;
  /** Tool call resolutions, by tool id; `ok` otherwise. */
  readonly toolResolutions = new Map<string, ToolCallResolution>();

  /** Holds the step until the test releases it. */
  hold(stepIndex: number): Gate {
    const gate = new Gate();
    this.gates.set(stepIndex, gate);
    return gate;
  }

  /** Holds the agent's model turn `turn` until the test releases it. */
  holdTurn(turn: number): Gate {
    const gate = new Gate();
    this.turnGates.set(turn, gate);
    return gate;
  }

  named(activity: string): Record<string, unknown>[] {
    return this.calls.filter((c) => c.activity === activity).map((c) => c.input);
  }
}

const worlds = new Map<string, FakeRunWorld>();

export function newWorld(runId: string): FakeRunWorld {
  const world = new FakeRunWorld();
  worlds.set(runId, world);
  return world;
}

/** The near misses the lesson rule reads, from what this world's tool calls answered and the pauses that timed out. */
function nearMissFactsOf(world: FakeRunWorld): NearMissFacts {
  const called = world.named('callTool').map((call) => {
    const turn = turnOf(world, Number(call.turn));
    const tool = 'calls' in turn ? (turn.calls[Number(call.callIndex)]?.tool ?? null) : null;
    return { stepIndex: Number(call.stepIndex), tool, resolution: (tool ? world.toolResolutions.get(tool) : undefined) ?? 'ok', spendUsd: 0 };
  });
  const unrun = world.named('resolveToolCalls').flatMap((batch) => (batch.calls as UnrunToolCall[]).map((c) => ({ stepIndex: c.stepIndex, tool: c.tool, resolution: c.resolution, spendUsd: 0 })));
  return { toolCalls: [...called, ...unrun], budgetWarning: null, pauseTimeouts: world.named('recordPauseTimeout').map(() => ({ detail: null })) };
}

function record(activity: string, input: { runId: string }): FakeRunWorld {
  const world = worlds.get(input.runId)!;
  world.calls.push({ activity, input: input as unknown as Record<string, unknown> });
  if (world.failing.has(activity)) throw ApplicationFailure.nonRetryable(`${activity} failed for good`, 'InjectedFault');
  return world;
}

function ref(text: string): OutputRef {
  return { id: randomUUID(), sha256: text.length.toString(16).padStart(64, '0'), bytes: text.length, contentType: 'text/plain' };
}

async function usageOf(world: FakeRunWorld, input: { stepIndex: number; step: PlanStep }): Promise<Omit<StepResult, 'outputPreview' | 'durationMs'> & { text: string }> {
  await world.gates.get(input.stepIndex)?.pass();
  if (input.step.skill === 'llm.chat') return { model: 'fake-chat', tokensIn: 10, tokensOut: 10, costUsd: world.chatCostUsd, text: 'fake' };
  if (input.step.skill !== 'sim.llm') throw ApplicationFailure.nonRetryable(`no fake for ${input.step.skill}`, 'NoFake');
  if (input.step.input.fail) throw ApplicationFailure.nonRetryable('simulated failure', 'SimulatedStepFailure');
  return { model: 'sim', ...simulateCompletion(input.step.input) };
}

function turnOf(world: FakeRunWorld, turn: number): ScriptedTurn {
  return world.script[Math.min(turn, world.script.length - 1)] ?? { answer: 'done' };
}

type Fake<K extends keyof Activities> = (...args: Parameters<Activities[K]>) => Promise<Awaited<ReturnType<Activities[K]>>>;

const writes = [
  'startTrace',
  'recordTraceStartFailure',
  'recordTransition',
  'recordTraceStep',
  'evaluatePolicy',
  'completeTrace',
  'createRunLog',
  'finalizeRun',
  'recordUnfinalizedRun',
  'recordPause',
  'recordResume',
  'recordPauseWarning',
  'recordPauseTimeout',
  'recordRejectedSignal',
  'recordRejectedSignals',
] as const satisfies readonly (keyof Activities)[];

const compensations = ['rollbackIncident', 'rollbackPolicyEvaluation', 'rollbackLesson', 'rollbackTraceCompletion'] as const satisfies readonly (keyof Activities)[];

/** Every activity the run workflow calls, faked. */
export const fakeActivities = {
  // The workflow reads nothing these writes return: each records its call and answers nothing.
  ...(Object.fromEntries(writes.map((name) => [name, async (input: { runId: string }) => void record(name, input)])) as unknown as {
    [K in (typeof writes)[number]]: Fake<K>;
  }),
  ...(Object.fromEntries(compensations.map((name) => [name, async (input: { runId: string }) => (record(name, input), { undone: true })])) as unknown as {
    [K in (typeof compensations)[number]]: Fake<K>;
  }),
  async checkPolicy(input: PolicyCheckRequest): Promise<PolicyCheckResponse> {
    const { rules, tenantStatus } = record('checkPolicy', input);
    const current = { version: 1, rules };
    return { ...decidePolicy({ ...input, current, known: current, tenantStatus }), policyVersion: 1, rules };
  },
  async executeStep(input: { runId: string; stepIndex: number; step: PlanStep }): Promise<StepResult> {
    const { text, ...usage } = await usageOf(record('executeStep', input), input);
    return { ...usage, outputPreview: text, durationMs: 0 };
  },
  async runStep(input: RunStepInput): Promise<StepRecord> {
    const { text, ...usage } = await usageOf(record('runStep', input), input);
    return { ...usage, durationMs: 0, output: ref(text), failure: null, thresholdCrossed: false };
  },
  async agentTurn(input: AgentTurnInput): Promise<AgentTurnResult> {
    const world = record('agentTurn', input);
    await world.turnGates.get(input.turn)?.pass();
    if (!input.acceptOverrun && input.spentUsd + world.turnBoundUsd > input.budgetUsd) {
      return { kind: 'refused', predictedUsd: world.turnBoundUsd, reason: `predicted overrun: turn ${input.turn + 1} would cost at most $${world.turnBoundUsd}` };
    }
    const scripted = turnOf(world, input.turn);
    const toolCalls: RequestedToolCall[] =
      'calls' in scripted
        ? scripted.calls.map((c, callIndex) => ({
            callIndex,
            callId: `call-${input.turn}-${callIndex}`,
            tool: c.tool,
            functionName: c.tool?.replace('.', '__') ?? 'nonexistent',
            argsSha256: `sha-${c.tool}-${c.args ?? '{}'}`,
            argsBytes: (c.args ?? '{}').length,
            argsPreview: c.args ?? '{}',
          }))
        : [];
    const usage = { model: 'fake-agent', tokensIn: 100, tokensOut: 20, costUsd: world.turnCostUsd, durationMs: 1 };
    const answer = 'answer' in scripted ? scripted.answer : null;
    return { kind: answer === null ? 'tools' : 'answered', ...usage, output: ref('{}'), stepOutput: answer === null ? null : ref(answer), toolCalls, failure: null, thresholdCrossed: false };
  },
  async callTool(input: ToolCallInput): Promise<ToolCallRecord> {
    const world = record('callTool', input);
    const turn = turnOf(world, input.turn);
    const tool = 'calls' in turn ? turn.calls[input.callIndex]?.tool : null;
    const resolution = (tool ? world.toolResolutions.get(tool) : undefined) ?? 'ok';
    return { resolution, output: ref('result'), costUsd: input.priceUsd, durationMs: 1, thresholdCrossed: false };
  },
  /** The run's outcome recorded; whether it owes a lesson, by the real rule over the near misses this world saw. */
  async createIncident(input: { runId: string; tenantId: string; outcome: RunOutcome; lessons?: boolean }): Promise<RecordedIncident> {
    const world = record('createIncident', input);
    const incidentId = `incident-${input.runId}`;
    return input.lessons ? { incidentId, owesLesson: owesLesson(input.outcome, nearMissFactsOf(world)) } : { incidentId };
  },
  /** A failed run teaches a lesson (filed under its code); a run that succeeded, in this world, none. */
  async recordLesson(input: RecordLessonInput): Promise<RecordedLesson> {
    record('recordLesson', input);
    if (input.outcome.kind === 'succeeded') return { lessonId: null };
    return { lessonId: `lesson-${input.runId}`, kind: 'failure', code: input.outcome.code, patternKey: `${input.outcome.code}:step:${input.end.stepIndex}:-`, stepIndex: input.end.stepIndex, tool: null };
  },
  async resolveToolCalls(input: { runId: string; tenantId: string; calls: UnrunToolCall[] }): Promise<ToolCallRecord[]> {
    record('resolveToolCalls', input);
    return input.calls.map((c) => ({ resolution: c.resolution, output: ref(c.message), costUsd: 0, durationMs: 0, thresholdCrossed: false }));
  },
} satisfies Partial<{ [K in keyof Activities]: Fake<K> }>;
