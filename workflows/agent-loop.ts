import type { AgentTurnResult, ToolCallRecord, UnrunToolCall } from '../core/contracts';
import { isCancellation } from '@temporalio/workflow';
import type { RequestedToolCall } from '../core/agent';
import type { RunOutcome } from '../core/outcome';
import type { OutputRef } from '../core/outputs';
import type { AgentInput } from '../core/plan';
import { addUsd } from '../core/pricing';
import type { ToolCallResolution } from '../core/tool-calls';
import { skills, type DomainWrites } from './activity-proxies';
import { describeFailure, failed, failureCodeOf } from './failures';
import type { RunGovernor } from './governor';
import type { AgentView, CarriedCalls, RunWorkflowInput } from './messages';

/** The calls of one turn shown in the run's live view, newest last. */
const RECENT_CALLS_SHOWN = 5;

/** What the loop needs from the run it is part of. */
export interface AgentHost {
  readonly input: RunWorkflowInput;
  readonly governor: RunGovernor;
  readonly domain: DomainWrites;
  view(): { costUsd: number };
  /** One governed step done: its usage joins the run's totals. */
  count(usage: { costUsd: number; tokens: number }, kind: 'turn' | 'tool_call'): void;
  /** A tool call was ruled on (run or refused): it counts against the policy's `maxCallsPerRun`. */
  countCallRuledOn(): void;
  showAgent(view: AgentView | null): void;
  /** Hands the run to a fresh execution before `turn` when its history is long. */
  continueAsNewIfLong(stepIndex: number, turn: number): Promise<void>;
  /** Where the loop stands, should a pause have to carry it into a fresh execution. */
  markAgentPosition(stepIndex: number, turn: number, calls?: CarriedCalls): void;
}

export type AgentStepEnd = { kind: 'answered'; output: OutputRef } | { kind: 'ended'; outcome: RunOutcome };

/**
 * An agent step, as the workflow drives it (the model call and every tool call are activities):
 * a model turn; the tool calls it asks for, each governed (policy, limits, price, approval) and
 * run side by side up to the step's bound; their results feed the next turn; until the model
 * answers without a tool call, or a limit, the policy or a person ends the run.
 */
export class AgentLoop {
  private readonly agent: AgentInput;
  private view: AgentView;

  constructor(
    private readonly host: AgentHost,
    private readonly stepIndex: number,
    private readonly firstTurn: number,
    /** The first turn's calls as an execution that continued as new in the middle of them left them. */
    private readonly carriedCalls?: CarriedCalls,
  ) {
    const step = host.input.plan[stepIndex]!;
    if (step.skill !== 'agent') throw new Error(`step ${stepIndex + 1} is not an agent step`);
    this.agent = step.input;
    this.view = { stepIndex, turn: firstTurn, recentCalls: [] };
  }

  async run(): Promise<AgentStepEnd> {
    const { host, stepIndex, agent } = this;
    // A pause the execution before was holding before this turn, taken up where it stood.
    let acceptOverrun = false;
    if (!this.carriedCalls) {
      const held = await host.governor.resumeHeldPause();
      if (held?.end.ended === 'outcome') return this.end(held.end.outcome);
      acceptOverrun = held?.effect.kind === 'acceptOverrun' && held.end.ended === 'resumed';
    }
    for (let turn = this.firstTurn; ; turn += 1) {
      if (turn > this.firstTurn) await host.continueAsNewIfLong(stepIndex, turn);
      if (turn === this.firstTurn && this.carriedCalls) {
        this.show({ turn });
        const ended = await this.runCalls(turn, this.carriedCalls.calls, this.carriedCalls);
        if (ended) return this.end(ended);
        continue;
      }
      if (turn >= agent.maxTurns) {
        return this.end(failed('failed_policy', 'AGENT_TURNS_EXHAUSTED', `agent step ${stepIndex + 1} used its ${agent.maxTurns} turns without an answer`));
      }
      this.show({ turn });
      host.markAgentPosition(stepIndex, turn);
      const stopped = await host.governor.beforeAgentTurn(stepIndex);
      if (stopped) return this.end(stopped);

      let result: AgentTurnResult;
      try {
        result = await this.turn(turn, acceptOverrun);
        acceptOverrun = false;
        while (result.kind === 'refused') {
          const refused = await host.governor.acceptPredictedOverrun(stepIndex, result.reason);
          if (refused) return this.end(refused);
          result = await this.turn(turn, true);
        }
      } catch (err) {
        if (isCancellation(err)) throw err;
        return this.end(failed('failed', failureCodeOf(err, 'STEP_FAILED'), `step ${stepIndex + 1} (agent), turn ${turn + 1} failed: ${describeFailure(err)}`));
      }
      host.count({ costUsd: result.costUsd, tokens: result.tokensIn + result.tokensOut }, 'turn');
      if (result.failure) return this.end(failed('failed', result.failure.code, result.failure.message));
      const overrun = host.governor.afterAgentAction(`turn ${turn + 1} of step ${stepIndex + 1}`);
      if (overrun) return this.end(overrun, turn, result.toolCalls);
      if (result.kind === 'answered') {
        this.show(null);
        return { kind: 'answered', output: result.stepOutput! };
      }
      const ended = await this.runCalls(turn, result.toolCalls);
      if (ended) return this.end(ended);
    }
  }

  private turn(turn: number, acceptOverrun: boolean): Promise<AgentTurnResult> {
    const { host, stepIndex } = this;
    const { input, governor } = host;
    return skills.agentTurn({
      runId: input.runId,
      tenantId: input.tenantId,
      stepIndex,
      turn,
      allowedTools: [...governor.toolPolicy().allow],
      spentUsd: host.view().costUsd,
      budgetUsd: governor.budget(),
      acceptOverrun,
      ...(input.prices ? { prices: input.prices } : {}),
      warningAtUsd: governor.warningAtUsd(),
    });
  }

  /**
   * The turn's calls: each ruled on in order (a refused one is answered to the model, one that
   * ends the run leaves the rest unrun), then the ones let through run side by side.
   */
  private async runCalls(turn: number, calls: readonly RequestedToolCall[], carried?: CarriedCalls): Promise<RunOutcome | null> {
    const { host, stepIndex, agent } = this;
    const toRun: { call: RequestedToolCall; priceUsd: number }[] = [...(carried?.toRun ?? [])];
    const refused: UnrunToolCall[] = [...(carried?.refused ?? [])];
    let reservedUsd = carried?.reservedUsd ?? 0;
    for (const [i, call] of calls.entries()) {
      if (carried && i < carried.next) continue;
      this.showCall(turn, call, 'running');
      host.markAgentPosition(stepIndex, turn, { calls: [...calls], next: i, toRun: [...toRun], refused: [...refused], reservedUsd });
      const held = carried && i === carried.next ? await host.governor.resumeHeldPause() : null;
      const gate = held
        ? await host.governor.gateAfterHeldPause(stepIndex, turn, call, held, reservedUsd, agent.tools)
        : await host.governor.beforeToolCall(stepIndex, turn, call, reservedUsd, agent.tools);
      if (gate.gate === 'end') {
        const unrun = [
          ...refused,
          this.unrun(turn, call, gate.resolution, gate.message),
          ...[...toRun.map((r) => r.call), ...calls.slice(i + 1)].map((c) => this.unrun(turn, c, 'not_run', gate.message)),
        ];
        await this.resolve(unrun);
        return gate.outcome;
      }
      host.countCallRuledOn();
      if (gate.gate === 'refuse') {
        refused.push(this.unrun(turn, call, gate.resolution, gate.message));
        continue;
      }
      reservedUsd = addUsd(reservedUsd, gate.priceUsd);
      toRun.push({ call, priceUsd: gate.priceUsd });
    }
    await this.resolve(refused);
    await inParallel(toRun, agent.maxParallelToolCalls, async ({ call, priceUsd }) => {
      const record = await this.callTool(turn, call, priceUsd);
      host.count({ costUsd: record.costUsd, tokens: 0 }, 'tool_call');
      this.showCall(turn, call, record.resolution, record);
    });
    return host.governor.afterAgentAction(`the tool calls of turn ${turn + 1} of step ${stepIndex + 1}`);
  }

  /** One call; a call that cannot be made at all (its server keeps failing) is resolved `failed`, and the model told. */
  private async callTool(turn: number, call: RequestedToolCall, priceUsd: number): Promise<ToolCallRecord> {
    const { host, stepIndex } = this;
    const { input, governor } = host;
    try {
      return await skills.callTool({ runId: input.runId, tenantId: input.tenantId, stepIndex, turn, callIndex: call.callIndex, priceUsd, warningAtUsd: governor.warningAtUsd() });
    } catch (err) {
      if (isCancellation(err)) throw err;
      const message = `The call to ${call.tool ?? call.functionName} could not be made: ${describeFailure(err)}.`;
      const [record] = await host.domain.resolveToolCalls({ runId: input.runId, tenantId: input.tenantId, calls: [this.unrun(turn, call, 'failed', message)] });
      return record!;
    }
  }

  private unrun(turn: number, call: RequestedToolCall, resolution: UnrunToolCall['resolution'], message: string): UnrunToolCall {
    return { stepIndex: this.stepIndex, turn, callIndex: call.callIndex, tool: call.tool ?? call.functionName, argsSha256: call.argsSha256, resolution, message };
  }

  private async resolve(calls: UnrunToolCall[]): Promise<void> {
    if (calls.length === 0) return;
    const { input } = this.host;
    await this.host.domain.resolveToolCalls({ runId: input.runId, tenantId: input.tenantId, calls });
    for (const call of calls) this.showCall(call.turn, { callIndex: call.callIndex, tool: call.tool, functionName: call.tool ?? '', argsPreview: '' }, call.resolution);
  }

  /** Ends the step with `outcome`; calls the model asked for that will never run are resolved first, so none stays expected. */
  private async end(outcome: RunOutcome, turn?: number, unrun: readonly RequestedToolCall[] = []): Promise<AgentStepEnd> {
    if (turn !== undefined && unrun.length) {
      const why = outcome.kind === 'failed' ? outcome.message : '';
      await this.resolve(unrun.map((c) => this.unrun(turn, c, 'not_run', `The call to ${c.tool ?? c.functionName} was not run: the run ended first (${why}).`)));
    }
    this.show(null);
    return { kind: 'ended', outcome };
  }

  private show(change: Partial<AgentView> | null): void {
    if (change === null) return this.host.showAgent(null);
    this.view = { ...this.view, ...change };
    this.host.showAgent(this.view);
  }

  private showCall(
    turn: number,
    call: Pick<RequestedToolCall, 'callIndex' | 'tool' | 'functionName' | 'argsPreview'>,
    resolution: ToolCallResolution | 'running',
    record?: Pick<ToolCallRecord, 'durationMs' | 'costUsd'>,
  ): void {
    const others = this.view.recentCalls.filter((c) => c.turn !== turn || c.callIndex !== call.callIndex);
    const shown = { turn, callIndex: call.callIndex, tool: call.tool ?? call.functionName, args: call.argsPreview, resolution, durationMs: record?.durationMs ?? 0, costUsd: record?.costUsd ?? 0 };
    const previous = this.view.recentCalls.find((c) => c.turn === turn && c.callIndex === call.callIndex);
    this.show({ recentCalls: [...others, { ...shown, args: shown.args || previous?.args || '' }].slice(-RECENT_CALLS_SHOWN) });
  }
}

/** `work` over `items`, at most `limit` at once (workflow code: no library that does I/O). */
async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const item = items[next]!;
      next += 1;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
