import type { StepRecord } from '../core/contracts';
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { OutboundEvent } from '../core/events';
import type { FailureCode, RunOutcome } from '../core/outcome';
import { assertTransition, type RunPhase, type RunStatus } from '../core/phases';
import { addUsd } from '../core/pricing';
import { referencedSteps } from '../core/references';
import { PendingMoves } from './pending-moves';
import type { SagaPhase } from '../core/saga';
import { PAUSE_REASON, RUN_PHASE, RUN_STATUS, TENANT_ID } from '../core/search-attributes';
import { asLiteralText } from '../core/web-ui-text';
import { runDomainWrites, skills, type DomainWrites } from './activity-proxies';
import { AgentLoop, type AgentHost } from './agent-loop';
import { RunGovernor, type RunView } from './governor';
import { RUN_HISTORY_EVENTS_BOUND, type AgentView, type CarriedCalls, type RunState, type RunWorkflowInput } from './messages';
import { describeFailure, failed, failureCodeOf } from './failures';
import { runGovernanceSaga } from './governance-saga';
import { RunPatches } from './patches';

/** What the governance saga leaves for the final record: the outcome that stands, and events to send with it. */
interface Governed {
  outcome: RunOutcome;
  sagaCommitted: boolean;
  events: OutboundEvent[];
}

/** What the terminal transition writes with the run's final record. */
interface FinalRecord {
  error: { code: FailureCode; message: string } | null;
  events: OutboundEvent[];
}

/**
 * Moves written in the transaction of the write that follows them, saving a write each: into
 * AUTHORIZED and EXECUTING with the first policy check, into FINALIZING with the run log. The move
 * into GOVERNANCE_CHECK is written on its own: an outage holds the saga's writes, and meanwhile
 * the stored run must say it is closing.
 */
const MOVES_THAT_RIDE: ReadonlySet<RunPhase> = new Set(['AUTHORIZED', 'EXECUTING', 'FINALIZING']);

/** The run's own part of its state; the governor owns the rest (pause, last check, policy held). */
type RunRecord = Omit<RunState, 'pause' | 'lastCheck' | 'policyVersion'>;

/**
 * One run, as its workflow drives it: the only owner of the run's state, the only mover of its
 * phase (`transition`), and the writer of its records through the domain activities.
 */
export class RunLifecycle implements RunView, AgentHost {
  readonly governor: RunGovernor;
  private readonly patches: RunPatches;
  private readonly record: RunRecord;
  readonly domain: DomainWrites;
  /** Steps record their own outputs (`runStep`); runs started before run each with `executeStep` and a write of its own. */
  private readonly recordsOutputs: boolean;
  private upserted: string | null = null;
  private readonly movesRide: boolean;
  /** Moves made and not yet written (see `MOVES_THAT_RIDE`), carried by the next write, the governor's too. */
  private readonly pendingMoves = new PendingMoves();
  /** Where the run stands, for a continue-as-new in the middle of a pause: the step, and inside an agent step its turn and calls. */
  private position: { stepIndex: number; agentTurn?: number; agentCalls?: CarriedCalls } = { stepIndex: 0 };

  constructor(readonly input: RunWorkflowInput) {
    const { runId, tenantId, continued } = input;
    this.patches = new RunPatches();
    this.record = continued
      ? withoutGovernorState(continued.state)
      : {
          runId,
          tenantId,
          phase: 'CREATED',
          status: 'queued',
          totalSteps: input.plan.length,
          stepsCompleted: 0,
          costUsd: 0,
          tokens: 0,
          budgetUsd: input.budgetUsd,
          observabilityStatus: 'OK',
          sagaPhase: 'NOT_STARTED',
          error: null,
        };
    this.recordsOutputs = this.patches.has('stepOutputs');
    if (this.recordsOutputs && !continued) Object.assign(this.record, { actionsCompleted: 0, turns: 0, toolCalls: 0, agent: null, output: null });
    this.domain = runDomainWrites(this.patches);
    const policyChecks = this.patches.has('midRunPolicyChecks');
    this.governor = new RunGovernor(input, this, this.pendingMoves, this.domain, this.patches, policyChecks, continued);
    this.movesRide = policyChecks && this.patches.has('movesRideWithWrites');
    this.publish();
  }

  /** The run's state as its query, its result and the API show it. */
  view(): RunState {
    return { ...this.record, ...this.governor.snapshot() };
  }

  /** Shows the state in Temporal: search attributes (to list runs by phase) and the run's current details. */
  publish(): void {
    const state = this.view();
    const pauseReason = state.pause?.reason ?? null;
    const attributes = `${state.phase}|${state.status}|${pauseReason}`;
    // Each upsert is a history event; runs recorded before mid-run checks upsert on every publish.
    if (!this.governor.policyChecks || attributes !== this.upserted) {
      upsertSearchAttributes([
        { key: RUN_PHASE, value: state.phase },
        { key: RUN_STATUS, value: state.status },
        { key: TENANT_ID, value: state.tenantId },
        { key: PAUSE_REASON, value: pauseReason },
      ]);
      this.upserted = attributes;
    }
    setCurrentDetails(describe(withLiteralText(state)));
  }

  /**
   * Every move of the phase machine, checked in workflow code first: an illegal transition is a bug
   * and fails the task loudly. The terminal move is written with the run's final record.
   */
  async transition(to: Exclude<RunPhase, 'COMPLETED' | 'FAILED'>, status: RunStatus): Promise<void>;
  async transition(to: 'COMPLETED' | 'FAILED', status: RunStatus, final: FinalRecord): Promise<void>;
  async transition(to: RunPhase, status: RunStatus, final?: FinalRecord): Promise<void> {
    const { runId, tenantId } = this.input;
    const from = this.record.phase;
    assertTransition(from, to, status);
    if (final) {
      const { sagaPhase } = this.record;
      await this.pendingMoves.carriedBy((moves) => this.domain.finalizeRun({ ...moves, runId, tenantId, from, to, status, sagaPhase, error: final.error, events: final.events }));
      this.record.error = final.error;
    } else if (this.movesRide && MOVES_THAT_RIDE.has(to)) {
      this.pendingMoves.hold({ runId, from, to, status });
    } else {
      await this.pendingMoves.carriedBy((moves) => this.domain.recordTransition({ ...moves, runId, from, to, status }));
    }
    this.record.phase = to;
    this.record.status = status;
    this.publish();
  }

  /** An outcome for whatever ended the run early; what cannot be one (continue-as-new, a bug in an old run) is rethrown. */
  async outcomeOf(execute: () => Promise<RunOutcome>): Promise<RunOutcome> {
    try {
      return await execute();
    } catch (err) {
      if (err instanceof ContinueAsNew) throw err;
      if (isCancellation(err)) return failed('cancelled', 'STOPPED', 'run cancelled');
      if (this.patches.has('neverWedge')) return failed('failed', 'RECORDING_FAILED', `the run could not record its progress: ${describeFailure(err)}`);
      throw err;
    }
  }

  /** Observability guard (seed FIX-004): a trace that cannot start is handled per mode. */
  async startTrace(): Promise<RunOutcome | null> {
    const { runId, tenantId, observabilityMode: mode } = this.input;
    try {
      await this.domain.startTrace({ runId, tenantId });
      return null;
    } catch (err) {
      if (isCancellation(err)) throw err;
      const error = describeFailure(err);
      await this.domain.recordTraceStartFailure({ runId, mode, error });
      if (mode === 'STRICT') return failed('failed', 'OBSERVABILITY_REQUIRED', `trace could not start (STRICT mode): ${error}`);
      if (mode === 'DEGRADED') {
        this.record.observabilityStatus = 'DEGRADED';
        this.publish();
      }
      return null;
    }
  }

  /**
   * The plan from `firstStep` on, each step between the governor's checks; a long run continues as
   * new between steps (and, inside an agent step, between turns: `firstTurn` is where it goes on).
   */
  async executePlan(firstStep: number, firstTurn = 0): Promise<RunOutcome> {
    const { input, governor } = this;
    for (let stepIndex = firstStep; stepIndex < input.plan.length; stepIndex += 1) {
      const step = input.plan[stepIndex]!;
      if (governor.policyChecks && stepIndex > firstStep && this.historyIsLong() && this.patches.has('longRunContinuesAsNew')) {
        await this.continueAsNew(stepIndex);
      }
      // An agent step taken up again by a new execution was let start by the execution before.
      const resumedAgent = stepIndex === firstStep && (firstTurn > 0 || this.input.continued?.agentTurn !== undefined);
      this.position = { stepIndex };
      if (!resumedAgent) {
        // A pause the execution before was holding here, taken up where it stood.
        const held = stepIndex === firstStep ? await governor.resumeHeldPause() : null;
        if (held?.end.ended === 'outcome') return held.end.outcome;
        const verdict = await governor.beforeStep(stepIndex);
        if (verdict) return verdict;
      }
      const ended =
        step.skill === 'agent'
          ? await this.runAgentStep(stepIndex, resumedAgent ? firstTurn : 0)
          : this.recordsOutputs
            ? await this.runRecordedStep(stepIndex)
            : await this.runLegacyStep(stepIndex);
      if (ended) return ended;
      const overrun = governor.afterStep(stepIndex);
      if (overrun) return overrun;
    }
    return { kind: 'succeeded' };
  }

  /** A step that resolves its references, runs and records its whole output in one activity. */
  private async runRecordedStep(stepIndex: number): Promise<RunOutcome | null> {
    const { input, governor } = this;
    const step = input.plan[stepIndex]!;
    let record: StepRecord;
    try {
      record = await skills.runStep({
        runId: input.runId,
        tenantId: input.tenantId,
        stepIndex,
        step,
        references: referencedSteps(input.plan, stepIndex, step.input),
        warningAtUsd: governor.warningAtUsd(),
      });
    } catch (err) {
      if (isCancellation(err)) throw err;
      return failed('failed', failureCodeOf(err, 'STEP_FAILED'), `step ${stepIndex + 1} (${step.skill}) failed: ${describeFailure(err)}`);
    }
    this.count({ costUsd: record.costUsd, tokens: record.tokensIn + record.tokensOut }, 'step');
    if (record.failure) return failed('failed', record.failure.code, record.failure.message);
    this.record.stepsCompleted = stepIndex + 1;
    this.record.output = record.output;
    this.publish();
    return null;
  }

  private async runAgentStep(stepIndex: number, firstTurn: number): Promise<RunOutcome | null> {
    const continued = this.input.continued;
    const carriedCalls = continued?.nextStep === stepIndex && continued.agentTurn === firstTurn ? continued.agentCalls : undefined;
    const end = await new AgentLoop(this, stepIndex, firstTurn, carriedCalls).run();
    if (end.kind === 'ended') return end.outcome;
    this.record.stepsCompleted = stepIndex + 1;
    this.record.output = end.output;
    this.publish();
    return null;
  }

  /** A step as runs started before outputs were stored ran it: the skill, then its trace row in a write of its own. */
  private async runLegacyStep(stepIndex: number): Promise<RunOutcome | null> {
    const { input, governor } = this;
    const step = input.plan[stepIndex]!;
    let result;
    try {
      result = await skills.executeStep({ runId: input.runId, stepIndex, step });
    } catch (err) {
      if (isCancellation(err)) throw err;
      return failed('failed', 'STEP_FAILED', `step ${stepIndex + 1} (${step.skill}) failed: ${describeFailure(err)}`);
    }
    const progress = this.record;
    progress.costUsd = addUsd(progress.costUsd, result.costUsd);
    progress.tokens += result.tokensIn + result.tokensOut;
    progress.stepsCompleted = stepIndex + 1;
    await this.domain.recordTraceStep({
      runId: input.runId,
      stepIndex,
      skill: step.skill,
      result,
      progress: { costUsd: progress.costUsd, tokens: progress.tokens, stepsCompleted: progress.stepsCompleted },
      ...(governor.policyChecks ? { warningAtUsd: governor.warningAtUsd(), tenantId: input.tenantId } : {}),
    });
    this.publish();
    return null;
  }

  // ---- what an agent step's loop asks of the run (`AgentHost`) ----

  count(usage: { costUsd: number; tokens: number }, kind: 'step' | 'turn' | 'tool_call'): void {
    const record = this.record;
    record.costUsd = addUsd(record.costUsd, usage.costUsd);
    record.tokens += usage.tokens;
    if (kind !== 'tool_call') record.actionsCompleted = (record.actionsCompleted ?? 0) + 1;
    if (kind === 'turn') record.turns = (record.turns ?? 0) + 1;
  }

  countCallRuledOn(): void {
    this.record.toolCalls = (this.record.toolCalls ?? 0) + 1;
    this.record.actionsCompleted = (this.record.actionsCompleted ?? 0) + 1;
  }

  showAgent(view: AgentView | null): void {
    this.record.agent = view;
    this.publish();
  }

  async continueAsNewIfLong(stepIndex: number, turn: number): Promise<void> {
    if (this.historyIsLong()) await this.continueAsNew(stepIndex, turn);
  }

  markAgentPosition(stepIndex: number, turn: number, calls?: CarriedCalls): void {
    this.position = { stepIndex, agentTurn: turn, ...(calls ? { agentCalls: calls } : {}) };
  }

  /** A pause holds and the history must be cut: the next execution takes the run (and the pause) up here. */
  continueAsNewHere(): Promise<never> {
    const { stepIndex, agentTurn, agentCalls } = this.position;
    return this.continueAsNew(stepIndex, agentTurn, agentCalls);
  }

  /**
   * GOVERNANCE_CHECK: the transaction coordinator as a saga (seed FIX-001) writes the incident, the
   * policy evaluation and the trace completion. A run that failed while executing passes here too,
   * status `running` (the only one §13.4 allows: the run is still at work, writing its records;
   * FAILED with the real status comes last). A run that never executed (denied, trace refused)
   * fails from where it stands, as the phase table says.
   */
  async governanceCheck(outcome: RunOutcome): Promise<Governed> {
    const endedIn = this.record.phase;
    const throughGovernance = outcome.kind === 'succeeded' || (this.record.phase === 'EXECUTING' && this.patches.has('failedRunClosesVisibly'));
    if (throughGovernance) await this.transition('GOVERNANCE_CHECK', 'running');
    const { runId, tenantId } = this.input;
    const saga = await runGovernanceSaga(
      {
        runId,
        tenantId,
        domain: this.domain,
        patches: this.patches,
        policyVersion: this.governor.snapshot()?.policyVersion,
        endedIn,
        progress: () => this.record,
        setSagaPhase: (phase) => this.setSagaPhase(phase),
      },
      outcome,
    );
    if (saga.committed) return { outcome, sagaCommitted: true, events: [] };
    return {
      outcome: failed('failed', 'GOVERNANCE_ERROR', saga.error),
      sagaCommitted: false,
      events: [
        {
          topic: 'run.failed',
          // Its own key: a retracted saga run.failed must not swallow this one.
          dedupeKey: `${this.input.runId}:run.failed:rolled-back`,
          payload: { code: 'GOVERNANCE_ERROR', reason: saga.error, sagaPhase: this.record.sagaPhase },
        },
      ],
    };
  }

  /** FINALIZING (after governance that stood; a rolled-back saga fails the run from GOVERNANCE_CHECK), then COMPLETED or FAILED. */
  async finalize({ outcome, sagaCommitted, events }: Governed): Promise<void> {
    const { input, record } = this;
    if (sagaCommitted && record.phase === 'GOVERNANCE_CHECK') await this.transition('FINALIZING', 'running');
    const status: RunStatus = outcome.kind === 'succeeded' ? 'succeeded' : outcome.status;
    const error = outcome.kind === 'failed' ? { code: outcome.code, message: outcome.message } : null;
    await this.pendingMoves.carriedBy((moves) => this.domain.createRunLog({
      ...moves,
      runId: input.runId,
      tenantId: input.tenantId,
      status,
      record: {
        outcome: outcome.kind,
        error,
        plan: input.plan.map((s) => s.skill),
        stepsCompleted: record.stepsCompleted,
        costUsd: record.costUsd,
        tokens: record.tokens,
        budgetUsd: input.budgetUsd,
        observabilityStatus: record.observabilityStatus,
        sagaPhase: record.sagaPhase,
        authorization: input.authorization,
      },
    }));
    await this.transition(outcome.kind === 'succeeded' ? 'COMPLETED' : 'FAILED', status, { error, events });
  }

  /**
   * Whatever ended the run, its governance records and final status are written to the end, even
   * when the run is being cancelled. When even that fails, the run is marked unfinalized and its
   * workflow fails, so Temporal's own status says what the stored run says.
   */
  async closeRecorded(close: () => Promise<void>): Promise<void> {
    try {
      await CancellationScope.nonCancellable(close);
    } catch (err) {
      if (!this.patches.has('neverWedge')) throw err;
      const error = `the run could not be finalized: ${describeFailure(err)}`;
      await CancellationScope.nonCancellable(() => this.domain.recordUnfinalizedRun({ runId: this.input.runId, error }));
      throw ApplicationFailure.nonRetryable(error, 'RunNotFinalized');
    }
  }

  /** The workflow's result: the final state, or for a FAILED run a failure carrying it. */
  result(): RunState {
    const state = this.view();
    if (state.phase === 'FAILED' && this.patches.has('failedRunFailsWorkflow')) {
      throw ApplicationFailure.create({
        type: state.error?.code ?? 'RUN_FAILED',
        message: `run ${state.status}: ${state.error?.message ?? 'no reason recorded'}`,
        nonRetryable: true,
        details: [state],
      });
    }
    return state;
  }

  private historyIsLong(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= (this.input.continueAsNewAfterEvents ?? RUN_HISTORY_EVENTS_BOUND) || this.governor.heavyHistory();
  }

  /** Hands the run to a fresh execution of its workflow (same workflow id) before step `nextStep` (and turn `agentTurn` of it). */
  private async continueAsNew(nextStep: number, agentTurn?: number, agentCalls?: CarriedCalls): Promise<never> {
    // An update or signal still being handled would be lost with this execution.
    await condition(allHandlersFinished);
    this.record.continuedAsNew = (this.record.continuedAsNew ?? 0) + 1;
    return continueAsNew<(input: RunWorkflowInput) => Promise<RunState>>({
      ...this.input,
      continued: {
        nextStep,
        ...(agentTurn !== undefined ? { agentTurn } : {}),
        ...(agentCalls ? { agentCalls } : {}),
        state: this.view(),
        governor: this.governor.carried(),
      },
    });
  }

  private setSagaPhase(phase: SagaPhase): void {
    this.record.sagaPhase = phase;
    this.publish();
  }

}

function withoutGovernorState({ pause: _pause, lastCheck: _lastCheck, policyVersion: _policyVersion, ...record }: RunState): RunRecord {
  return record;
}

/**
 * The state with every text a tenant, a provider or a model wrote (a pause's detail, the tool an
 * approval waits for, a policy check's reason, an error's message) escaped, so the Web UI shows it
 * as the literal text it is (core/web-ui-text.ts). The rest are our own words, numbers and times.
 */
function withLiteralText(state: RunState): RunState {
  const { pause, lastCheck, error } = state;
  return {
    ...state,
    pause: pause && {
      ...pause,
      detail: asLiteralText(pause.detail),
      ...(pause.approval ? { approval: { ...pause.approval, tool: asLiteralText(pause.approval.tool) } } : {}),
    },
    lastCheck: lastCheck && { ...lastCheck, reason: asLiteralText(lastCheck.reason) },
    error: error && { ...error, message: asLiteralText(error.message) },
  };
}

/** The run's current details on its Web UI page (Markdown; `$` escaped, or two would make math). */
function describe(state: RunState): string {
  const lines = [
    `**${state.phase}** (${state.status})`,
    `steps ${state.stepsCompleted}/${state.totalSteps} · cost \\$${state.costUsd.toFixed(6)} of \\$${state.budgetUsd}`,
    `governance saga: ${state.sagaPhase} · observability: ${state.observabilityStatus}`,
  ];
  if (state.pause) {
    const p = state.pause;
    lines.push(`**PAUSED** (${p.reason}) since ${p.since}, expires ${p.expiresAt}: ${p.detail}; resume by ${p.allowedAuthorities.join(', ')}`);
  }
  if (state.agent) lines.push(`agent: step ${state.agent.stepIndex + 1}, turn ${state.agent.turn + 1} · ${state.turns ?? 0} turn(s), ${state.toolCalls ?? 0} tool call(s)`);
  if (state.pause?.approval) lines.push(`waiting for approval of ${state.pause.approval.tool} (argsSha256 ${state.pause.approval.argsSha256})`);
  if (state.continuedAsNew) lines.push(`execution ${state.continuedAsNew + 1} of this run (its history continued as new ${state.continuedAsNew} times)`);
  if (state.lastCheck) lines.push(`last policy check: ${state.lastCheck.decision} before step ${state.lastCheck.stepIndex + 1} (${state.lastCheck.reason})`);
  if (state.error) lines.push(`error: ${state.error.code}: ${state.error.message}`);
  return lines.join('\n\n');
}
