import type { PolicyCheckResponse } from '../core/contracts';
import { ApplicationFailure, CancellationScope, condition, workflowInfo } from '@temporalio/workflow';
import { actionLimitReached, ruleOnToolCall, type RequestedToolCall } from '../core/agent';
import { budgetWarningAtUsd, effectiveBudgetUsd, hasOverrunBudget, wouldOverrunBudget } from '../core/budget';
import type { FailureCode, RunOutcome } from '../core/outcome';
import {
  PAUSE_REASONS,
  RESUME_AUTHORITIES,
  canResume,
  DEFAULT_RESUME_AUTHORITIES,
  type PauseReason,
} from '../core/policy-check';
import { isTerminalPhase } from '../core/phases';
import type { ToolPolicy } from '../core/policy';
// Not from core/policy: that module brings zod into every cached workflow (core/tools.ts says why).
import { DEFAULT_TOOL_POLICY } from '../core/tools';
import { addUsd } from '../core/pricing';
import { predictStepCost } from '../core/step-cost';
import { governanceMessage, type ToolCallResolution } from '../core/tool-calls';
import type { DomainWrites } from './activity-proxies';
import {
  ANONYMOUS_ACTOR,
  TENANT_SUSPENDED_REASON,
  controlRequestFrom,
  heldAuthorities,
  pauseRequestFrom,
  signalProblem,
  type ContinuedRun,
  type ControlRequest,
  type GovernorMemory,
  type HeldPause,
  type PauseEffect,
  type PendingApproval,
  type PolicySettings,
  type PauseRequest,
  type PauseState,
  type ResumeRefusal,
  type ResumeRequest,
  type RunState,
  type RunWorkflowInput,
} from './messages';
import type { RunPatches } from './patches';
import { holdPause, type PauseEnd } from './pause';
import type { PendingMoves } from './pending-moves';
import { workflowNow } from './time';

function settingsFrom(check: PolicyCheckResponse): PolicySettings {
  const { rules } = check;
  return {
    version: check.policyVersion,
    budgetPerRunUsd: rules.budgetPerRunUsd,
    checkIntervalMs: rules.checkIntervalSeconds * 1000,
    approvalSkills: rules.approvalSkills,
    warningThresholdPct: rules.warningThresholdPct,
    pauseSlaMs: rules.pauseSlaSeconds * 1000,
    pauseWarningMs: rules.pauseWarningSeconds * 1000,
    pauseTimeoutBehavior: rules.pauseTimeoutBehavior,
    // Policies stored before the rule existed terminate, as the default does.
    onPredictedOverrun: rules.onPredictedOverrun ?? 'TERMINATE',
    pauseOnThreshold: rules.pauseOnThreshold ?? false,
    maxSteps: rules.maxSteps,
    maxTokens: rules.maxTokens,
    tools: rules.tools ?? DEFAULT_TOOL_POLICY,
  };
}

/** What the governor lets an agent's tool call do: run, be refused (the model is told), or end the run. */
export type ToolCallGate =
  | { gate: 'run'; priceUsd: number }
  | { gate: 'refuse'; resolution: Extract<ToolCallResolution, 'unknown_tool' | 'not_allowed' | 'denied'>; message: string }
  | { gate: 'end'; resolution: Extract<ToolCallResolution, 'unknown_tool' | 'not_allowed' | 'denied' | 'limit' | 'not_run'>; message: string; outcome: RunOutcome };

/** Where in the plan a governed step sits: a plan step, or a turn or call inside an agent step. */
interface Position {
  stepIndex: number;
  /** Inside an agent step that has started: its approval (if its skill needs one) was given before its first turn. */
  inAgent: boolean;
}

const STOPPED: RunOutcome = { kind: 'failed', status: 'cancelled', code: 'STOPPED', message: 'run stopped' };

/** Refused signals written per write, and queued at most (the rest are counted, and written as a count). */
const REFUSALS_PER_WRITE = 100;
const MAX_QUEUED_REFUSALS = 1_000;
/** Far below Temporal's 10,000 signals per execution, so a run continues as new long before it is refused any. */
export const SIGNALS_BEFORE_CONTINUE = 2_000;
/** Far below Temporal's 50 MB history limit (its warning comes at 10 MB). */
export const HISTORY_BYTES_BEFORE_CONTINUE = 8 * 1024 * 1024;

/** A refused control signal, as the run records it. */
interface RefusedSignal {
  dedupeKey: string;
  kind: string;
  actor: string | null;
  authority: string | null;
  detail: string;
}

/** How many request ids a run carries across continue-as-new: redeliveries come soon after the first. */
const CARRIED_REQUEST_IDS = 1_000;

function freshMemory(knownPolicyVersion: number): GovernorMemory {
  return {
    settings: null,
    knownPolicyVersion,
    lastCheckAt: null,
    checkNumber: 0,
    pauseNumber: 0,
    signalNumber: 0,
    checkRequested: false,
    approvedStep: -1,
    overrunAcceptedStep: -1,
    stopRequest: null,
    pauseRequest: null,
    seenRequestIds: [],
  };
}

/** What the governor shows of itself in the run's state: its pause, its last check, the policy it holds. */
export type GovernorSnapshot = Required<Pick<RunState, 'pause' | 'lastCheck' | 'policyVersion'>>;

/** The run the governor governs: it reads the run's state and asks it to publish, never writes it. */
export interface RunView {
  view(): RunState;
  publish(): void;
  /** Continues the run as new where it stands (a pause held, its history too large); never returns. */
  continueAsNewHere(): Promise<never>;
}

/**
 * Policy as a live force during execution (seed FIX-005, §11.2, §13.5): before each step the run
 * asks for a fresh decision when its check interval has passed in workflow time, a control signal
 * arrived, or the next skill needs approval; a PAUSE is a durable wait for a resume with the
 * policy's SLA as its deadline; a step predicted to overrun the budget does not start. Runs
 * recorded before mid-run checks (`policyChecks` false) only keep the hard limit after each step.
 */
export class RunGovernor {
  private readonly memory: GovernorMemory;
  /** Requests already acted on, by their sender's id: a redelivered one is a no-op. */
  private readonly seenRequestIds: Set<string>;
  private resumeRequest: ControlRequest | null = null;
  /** Set once the run only writes its governance and final records (whatever phase a failing run is in). */
  private closing = false;
  private readonly reservesBudget: boolean;
  private snapshotState: GovernorSnapshot;
  /** Signal refusals are written in batches (runs started before wrote one each). */
  private readonly batchesRefusals: boolean;
  /** Undecodable and oversized signals are refused, and the run continues as new before the signal limit. */
  private readonly boundsSignals: boolean;
  /** The run pauses itself at its warning point when its policy says so (runs started before left it to the reactor). */
  private readonly pausesAtThreshold: boolean;
  private readonly refusals: RefusedSignal[] = [];
  private refusalsDropped = 0;
  private flushing: Promise<void> | null = null;
  /** Signals this execution has received (Temporal's limit counts per execution). */
  private signalsReceived = 0;

  constructor(
    private readonly input: RunWorkflowInput,
    private readonly run: RunView,
    /** The run's phase moves not yet written: a policy check's transaction records them. */
    private readonly moves: PendingMoves,
    private readonly domain: DomainWrites,
    private readonly patches: RunPatches,
    readonly policyChecks: boolean,
    continued?: ContinuedRun,
  ) {
    this.memory = continued ? { ...continued.governor } : freshMemory(input.policyVersion ?? 0);
    this.seenRequestIds = new Set(this.memory.seenRequestIds);
    this.reservesBudget = policyChecks && patches.has('budgetReservation');
    this.batchesRefusals = policyChecks && patches.has('signalRefusalsInBatches');
    this.boundsSignals = policyChecks && patches.has('signalsBounded');
    this.pausesAtThreshold = policyChecks && patches.has('thresholdPauseByTheRun');
    this.snapshotState = {
      pause: continued?.state.pause ?? null,
      lastCheck: continued?.state.lastCheck ?? null,
      policyVersion: continued?.state.policyVersion ?? this.memory.knownPolicyVersion,
    };
  }

  /** For the run's state (its query, search attributes and result); null for a run without checks. */
  snapshot(): GovernorSnapshot | null {
    return this.policyChecks ? { ...this.snapshotState } : null;
  }

  /** What the next execution needs to go on where this one stops (only ever between steps, never paused). */
  carried(): GovernorMemory {
    return { ...this.memory, seenRequestIds: [...this.seenRequestIds].slice(-CARRIED_REQUEST_IDS) };
  }

  // ---- control messages (registered by `runWorkflow`) ----

  async onPause(raw: unknown): Promise<void> {
    if (this.refusedAsSent('pause', raw)) return this.flushed();
    const request = pauseRequestFrom(raw);
    if (!this.firstDelivery(request)) return;
    const reason = request.pauseReason ?? 'MANUAL_PAUSE';
    if (!PAUSE_REASONS.includes(reason)) return this.rejectSignal('pause', request, `unknown pause reason '${reason}'`);
    if (reason === 'TOOL_APPROVAL') return this.rejectSignal('pause', request, 'a TOOL_APPROVAL pause is made by the run itself, for one tool call');
    if (!this.controllable()) return this.rejectSignal('pause', request, this.uncontrollable('paused'));
    if (this.snapshotState.pause || this.memory.pauseRequest) return this.rejectSignal('pause', request, 'run is already paused');
    // A pause nobody signed is recorded as made by someone unknown, never as the policy's own.
    this.memory.pauseRequest = { ...request, actor: request.actor ?? ANONYMOUS_ACTOR, pauseReason: reason };
    this.memory.checkRequested = true;
  }

  async onResumeSignal(raw: unknown): Promise<void> {
    if (this.refusedAsSent('resume', raw)) return this.flushed();
    const request = controlRequestFrom(raw);
    if (!this.firstDelivery(request)) return;
    if (this.withdrawsPendingPause()) return this.withdrawPendingPause(request);
    const refusal = this.resumeRefusal(request);
    if (refusal) return this.rejectSignal('resume', request, refusal.sentence);
    this.resumeRequest = request;
  }

  /**
   * A pause the run accepted mid-step is held only at the next boundary; a resume that comes in
   * between (a tenant-wide resume right after a tenant-wide pause) withdraws it, so the run does
   * not pause later with no resume to come. Runs started before refused such a resume.
   */
  private withdrawsPendingPause(): boolean {
    return this.snapshotState.pause === null && this.memory.pauseRequest !== null && this.patches.has('resumeWithdrawsPendingPause');
  }

  private async withdrawPendingPause(request: ResumeRequest): Promise<void> {
    const pending = this.memory.pauseRequest!;
    const refusal = this.resumeRefusal(request, this.pendingPause());
    if (refusal) return this.rejectSignal('resume', request, refusal.sentence);
    this.memory.pauseRequest = null;
    const reason = pending.pauseReason ?? 'MANUAL_PAUSE';
    await this.domain.recordResume({
      runId: this.input.runId,
      tenantId: this.input.tenantId,
      dedupeKey: `pause-withdrawn:${this.memory.pauseNumber + 1}:${this.signalsReceived}`,
      kind: 'pause_withdrawn',
      actor: request.actor ?? ANONYMOUS_ACTOR,
      authority: heldAuthorities(request)[0] ?? null,
      accepted: true,
      detail: `withdrew the ${reason} pause${pending.tag ? ` (${pending.tag})` : ''} requested by ${pending.actor ?? ANONYMOUS_ACTOR} before it took effect${request.reason ? `: ${request.reason}` : ''}`,
      reason,
      pausedForMs: 0,
      endedBy: 'operator',
    });
  }

  /** The update's validator: refuses at once, with the reason, a resume that cannot be accepted now. */
  validateResume(raw: unknown): void {
    const problem = signalProblem(raw);
    if (problem) throw refusedUpdate({ code: 'UNREADABLE_REQUEST', sentence: `update refused: ${problem}` });
    const request = controlRequestFrom(raw);
    // A request already acted on is answered, not refused: its sender is retrying, and it counts once.
    if (request.requestId !== undefined && this.seenRequestIds.has(request.requestId)) return;
    // A pause not yet held may be withdrawn (`withdrawsPendingPause`); a validator asks no patch.
    const refusal = this.resumeRefusal(request, this.snapshotState.pause ?? this.pendingPause());
    if (refusal) throw refusedUpdate(refusal);
  }

  /** A resume (or an approval, or a denial) that answers once the run goes on (or has ended). */
  async onResumeUpdate(raw: unknown): Promise<RunState> {
    const request = controlRequestFrom(raw);
    if (!this.firstDelivery(request)) return this.run.view();
    if (this.withdrawsPendingPause()) {
      await this.withdrawPendingPause(request);
      return this.run.view();
    }
    this.resumeRequest = request;
    await condition(() => this.snapshotState.pause === null || isTerminalPhase(this.run.view().phase));
    return this.run.view();
  }

  async onStop(raw: unknown): Promise<void> {
    if (this.refusedAsSent('stop', raw)) return this.flushed();
    const request = controlRequestFrom(raw);
    if (!this.firstDelivery(request)) return;
    if (!this.controllable()) return this.rejectSignal('stop', request, this.uncontrollable('stopped'));
    this.memory.stopRequest ??= request;
    this.memory.checkRequested = true;
  }

  onPolicyChanged(raw?: unknown): void {
    this.signalsReceived += 1;
    // Whatever else it carries, a policy change asks for a fresh check at the next step boundary.
    this.memory.checkRequested = true;
    this.stopPauseOnSuspension(raw);
  }

  /**
   * A paused run meets no step boundary until its pause ends, so its tenant's suspension would leave
   * it paused until the SLA ran out: the suspension's push is taken as a stop by the run that holds
   * a pause, which ends it at once (as a stop of a paused run does), recorded with the push's actor.
   */
  private stopPauseOnSuspension(raw: unknown): void {
    if (!this.snapshotState.pause || this.memory.stopRequest || this.closing) return;
    const request = controlRequestFrom(raw);
    if (request.reason !== TENANT_SUSPENDED_REASON || !this.patches.has('suspensionStopsPausedRun')) return;
    this.memory.stopRequest = { ...request, actor: request.actor ?? ANONYMOUS_ACTOR };
  }

  /**
   * The run has received so many signals in this execution, or its history has grown so large,
   * that it should continue as new at its next boundary: Temporal refuses signals past
   * `history.maximumSignalsPerExecution` (10,000 by default) and ends a history past 50 MB.
   */
  heavyHistory(): boolean {
    if (!this.boundsSignals) return false;
    return this.signalsReceived >= SIGNALS_BEFORE_CONTINUE || workflowInfo().historySize >= HISTORY_BYTES_BEFORE_CONTINUE;
  }

  // ---- the step boundary ----

  /**
   * Runs before step `stepIndex`: the policy, then the step's reservation against the budget. A
   * predicted overrun terminates the run before any money is spent, or, when the policy says PAUSE,
   * waits for a person: their resume accepts the risk for this one step.
   */
  async beforeStep(stepIndex: number): Promise<RunOutcome | null> {
    if (!this.policyChecks) return null;
    for (;;) {
      const verdict = await this.policyGate(stepIndex);
      if (verdict) return verdict;
      const overrun = this.predictedOverrun(stepIndex);
      if (!overrun) return null;
      if (this.memory.settings?.onPredictedOverrun !== 'PAUSE') return { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: overrun };
      // Only a person may accept spending over the budget: a timer that would resume the run ends it.
      const end = await this.hold('BUDGET_WARNING', overrun, null, { timerMayResume: false, effect: { kind: 'acceptStepOverrun', stepIndex } });
      if (end.ended === 'outcome') return end.outcome;
      if (end.ended === 'resumed') this.memory.overrunAcceptedStep = stepIndex;
      // A stop ends the run through the check; a resume is followed by the policy as it is now.
      this.memory.checkRequested = true;
    }
  }

  /** The hard limit after step `stepIndex`: only a step without an upper bound can have crossed it. */
  afterStep(stepIndex: number): RunOutcome | null {
    this.pauseAtThreshold();
    const spent = this.run.view().costUsd;
    const budget = this.budgetUsd();
    if (!hasOverrunBudget(spent, budget)) return null;
    return { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: `spent $${spent} after step ${stepIndex + 1}, over the run's budget of $${budget}` };
  }

  // ---- inside an agent step: before each model turn and each tool call ----

  /** Before a model turn: the policy (a stop, a pause, a change) and the run's limits, as before any step. */
  async beforeAgentTurn(stepIndex: number): Promise<RunOutcome | null> {
    return (await this.policyGate(stepIndex, true)) ?? this.limitReached();
  }

  /**
   * A turn or call refused for what it may cost: the run ends BUDGET_EXCEEDED, or, when the policy
   * says PAUSE, waits for a person whose resume accepts this one overrun. Null when accepted.
   */
  async acceptPredictedOverrun(stepIndex: number, reason: string): Promise<RunOutcome | null> {
    for (;;) {
      if (this.memory.settings?.onPredictedOverrun !== 'PAUSE') return { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: reason };
      const end = await this.hold('BUDGET_WARNING', reason, null, { timerMayResume: false, effect: { kind: 'acceptOverrun' } });
      if (end.ended === 'outcome') return end.outcome;
      this.memory.checkRequested = true;
      // A stop that came during the pause ends the run through the check; a change is held to.
      const verdict = await this.policyGate(stepIndex, true);
      if (verdict) return verdict;
      if (end.ended === 'resumed') return null;
    }
  }

  /**
   * Before one tool call: the policy, the run's limits, what the tenant's tool policy says of the
   * call, its price against the budget (with `reservedUsd` already promised to calls of the same
   * turn), and, when the tool needs approval, a person who approves these exact arguments.
   */
  async beforeToolCall(
    stepIndex: number,
    turn: number,
    call: RequestedToolCall,
    reservedUsd: number,
    narrowedTo: readonly string[] | undefined,
    options: { overrunAccepted?: boolean } = {},
  ): Promise<ToolCallGate> {
    const tool = call.tool ?? call.functionName;
    const ended = (outcome: RunOutcome): ToolCallGate => ({ gate: 'end', resolution: 'not_run', message: governanceMessage('not_run', tool, outcome.kind === 'failed' ? outcome.message : ''), outcome });
    const stopped = (await this.policyGate(stepIndex, true)) ?? this.limitReached();
    if (stopped) return ended(stopped);
    const view = this.run.view();
    const policy = this.memory.settings?.tools ?? DEFAULT_TOOL_POLICY;
    const ruling = ruleOnToolCall(policy, narrowedTo, call, view.toolCalls ?? 0);
    if (ruling.ruling === 'refuse') {
      const resolution = ruling.code === 'TOOL_CALL_LIMIT' ? 'limit' : ruling.code === 'UNKNOWN_TOOL' ? 'unknown_tool' : 'not_allowed';
      const message = governanceMessage(resolution, tool, ruling.reason);
      if (resolution === 'limit') return { gate: 'end', resolution, message, outcome: { kind: 'failed', status: 'failed_policy', code: 'TOOL_CALL_LIMIT', message: `terminated by policy: ${ruling.reason}` } };
      if (policy.onDenied === 'FAIL_RUN') return { gate: 'end', resolution, message, outcome: { kind: 'failed', status: 'failed_policy', code: 'TOOL_DENIED', message: `terminated by policy: ${ruling.reason}` } };
      return { gate: 'refuse', resolution, message };
    }
    const spent = addUsd(view.costUsd, reservedUsd);
    const budget = this.budgetUsd();
    if (!options.overrunAccepted && wouldOverrunBudget(spent, ruling.priceUsd, budget)) {
      const reason = `predicted overrun: ${tool} costs $${ruling.priceUsd} a call with $${spent} spent or promised, over the run's budget of $${budget}; refused before it ran`;
      const refused = await this.acceptPredictedOverrun(stepIndex, reason);
      if (refused) return ended(refused);
    }
    if (!ruling.needsApproval) return { gate: 'run', priceUsd: ruling.priceUsd };
    const approval: PendingApproval = { stepIndex, turn, callIndex: call.callIndex, tool, argsSha256: call.argsSha256, argsPreview: call.argsPreview };
    const end = await this.hold('TOOL_APPROVAL', `${tool} wants to run with ${call.argsPreview}`, null, { timerMayResume: true, approval, effect: { kind: 'approval' } });
    return this.approvalGate(stepIndex, call, end, ruling.priceUsd);
  }

  /** What a person's decision (or the approval's SLA) makes of the call that waited for it. */
  private async approvalGate(stepIndex: number, call: RequestedToolCall, end: PauseEnd, priceUsd: number): Promise<ToolCallGate> {
    const tool = call.tool ?? call.functionName;
    const policy = this.toolPolicy();
    const ended = (outcome: RunOutcome): ToolCallGate => ({ gate: 'end', resolution: 'not_run', message: governanceMessage('not_run', tool, outcome.kind === 'failed' ? outcome.message : ''), outcome });
    if (end.ended === 'outcome') return ended(end.outcome);
    if (end.ended === 'stopped') {
      const verdict = await this.policyGate(stepIndex, true);
      return ended(verdict ?? { kind: 'failed', status: 'cancelled', code: 'STOPPED', message: 'run stopped' });
    }
    if (end.ended === 'denied') {
      const message = governanceMessage('denied', tool, end.by);
      if (policy.onDenied === 'FAIL_RUN') return { gate: 'end', resolution: 'denied', message, outcome: { kind: 'failed', status: 'failed_policy', code: 'TOOL_DENIED', message: `terminated by policy: ${tool} was denied (${end.by})` } };
      return { gate: 'refuse', resolution: 'denied', message };
    }
    return { gate: 'run', priceUsd };
  }

  // ---- a pause carried across continue-as-new ----

  /**
   * Takes up the pause an earlier execution was holding when it continued as new (its history
   * too large to go on), where it stood: same pause, same expiry, nothing recorded twice. What
   * its resume accepts is applied as the code that paused would have; null when none was held.
   */
  async resumeHeldPause(): Promise<{ end: PauseEnd; effect: PauseEffect } | null> {
    const held = this.memory.heldPause;
    if (!held) return null;
    this.memory.heldPause = null;
    const end = await this.hold(held.pause.reason, held.pause.detail, held.request, { timerMayResume: held.timerMayResume, effect: held.effect, adopted: held });
    const { effect } = held;
    if (end.ended === 'resumed') {
      if (effect.kind === 'acceptPolicy') {
        this.acceptPolicyVersion(effect.version);
        if (effect.approveStep !== null) this.memory.approvedStep = effect.approveStep;
      }
      if (effect.kind === 'acceptStepOverrun') this.memory.overrunAcceptedStep = effect.stepIndex;
    }
    this.memory.checkRequested = true;
    return { end, effect };
  }

  /** The gate of a tool call whose pause was carried: its approval decided, or the rest of its checks after an accepted overrun. */
  async gateAfterHeldPause(
    stepIndex: number,
    turn: number,
    call: RequestedToolCall,
    held: { end: PauseEnd; effect: PauseEffect },
    reservedUsd: number,
    narrowedTo: readonly string[] | undefined,
  ): Promise<ToolCallGate> {
    if (held.effect.kind === 'approval') {
      const end: PauseEnd = held.end.ended === 'stopped' ? { ended: 'outcome', outcome: (await this.policyGate(stepIndex, true)) ?? STOPPED } : held.end;
      const ruling = ruleOnToolCall(this.toolPolicy(), narrowedTo, call, this.run.view().toolCalls ?? 0);
      return this.approvalGate(stepIndex, call, end, ruling.ruling === 'run' ? ruling.priceUsd : 0);
    }
    if (held.end.ended === 'outcome') {
      const tool = call.tool ?? call.functionName;
      return { gate: 'end', resolution: 'not_run', message: governanceMessage('not_run', tool, held.end.outcome.kind === 'failed' ? held.end.outcome.message : ''), outcome: held.end.outcome };
    }
    return this.beforeToolCall(stepIndex, turn, call, reservedUsd, narrowedTo, { overrunAccepted: held.effect.kind === 'acceptOverrun' && held.end.ended === 'resumed' });
  }

  /** The hard limit after an agent's turn or calls: what a provider billed beyond its bound shows here. */
  afterAgentAction(what: string): RunOutcome | null {
    this.pauseAtThreshold();
    const spent = this.run.view().costUsd;
    const budget = this.budgetUsd();
    if (!hasOverrunBudget(spent, budget)) return null;
    return { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: `spent $${spent} after ${what}, over the run's budget of $${budget}` };
  }

  /**
   * `pauseOnThreshold`, from the policy the run holds: once its spend passes the warning point, the
   * run asks for a BUDGET_WARNING pause of its own, held at its next boundary (the reactor only
   * raises the alert). Once per run.
   */
  private pauseAtThreshold(): void {
    const { memory } = this;
    if (!this.pausesAtThreshold || memory.thresholdPauseRequested || !memory.settings?.pauseOnThreshold) return;
    const warningAt = this.warningAtUsd();
    const spent = this.run.view().costUsd;
    if (warningAt === null || spent < warningAt) return;
    memory.thresholdPauseRequested = true;
    memory.pauseRequest ??= {
      actor: 'policy',
      authority: 'SYSTEM_AUTO',
      pauseReason: 'BUDGET_WARNING',
      reason: `spent $${spent}, past the warning threshold of $${warningAt}`,
    };
    memory.checkRequested = true;
  }

  /** The run's limits from the policy it holds, met between checks: BUDGET_EXCEEDED, as a check would say. */
  private limitReached(): RunOutcome | null {
    const settings = this.memory.settings;
    if (!settings) return null;
    const view = this.run.view();
    const reason = actionLimitReached(
      { maxSteps: settings.maxSteps ?? Number.POSITIVE_INFINITY, maxTokens: settings.maxTokens ?? Number.POSITIVE_INFINITY, budgetUsd: this.budgetUsd() },
      { actionsCompleted: view.actionsCompleted ?? view.stepsCompleted, tokens: view.tokens, costUsd: view.costUsd },
    );
    return reason ? { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: `terminated by policy: BUDGET_EXCEEDED: ${reason}` } : null;
  }

  /** Where the run is warned (`threshold.exceeded`), once a policy is held. */
  warningAtUsd(): number | null {
    const settings = this.memory.settings;
    return settings ? budgetWarningAtUsd(this.budgetUsd(), settings.warningThresholdPct) : null;
  }

  /**
   * The run is closing: a pause still held is lifted, and from now on a pause or stop is refused
   * and recorded as refused (it used to be accepted and never acted on). So is one accepted that
   * the run never reached a step boundary to act on: a signal delivered together with the result
   * that ended the run (as after a retried workflow task) is handled first.
   */
  async close(outcome: RunOutcome): Promise<void> {
    if (!this.policyChecks) return;
    if (this.patches.has('refuseControlWhileClosing')) {
      this.closing = true;
      const stopped = outcome.kind === 'failed' && outcome.code === 'STOPPED';
      if (this.memory.stopRequest && !stopped) await this.rejectSignal('stop', this.memory.stopRequest, this.uncontrollable('stopped'));
      if (this.memory.pauseRequest) await this.rejectSignal('pause', this.memory.pauseRequest, this.uncontrollable('paused'));
      this.memory.stopRequest = this.memory.pauseRequest = null;
    }
    if (this.snapshotState.pause) this.setPause(null);
  }

  // ---- inside ----

  /** The budget the run is held to now. */
  budget(): number {
    return this.budgetUsd();
  }

  /** The tenant's tool policy as the run holds it. */
  toolPolicy(): ToolPolicy {
    return this.memory.settings?.tools ?? DEFAULT_TOOL_POLICY;
  }

  /** The run's budget, or a lower one its accepted policy set. */
  private budgetUsd(): number {
    return effectiveBudgetUsd(this.input.budgetUsd, this.memory.settings?.budgetPerRunUsd);
  }

  private firstDelivery(request: ControlRequest): boolean {
    if (request.requestId === undefined) return true;
    if (this.seenRequestIds.has(request.requestId)) return false;
    this.seenRequestIds.add(request.requestId);
    return true;
  }

  private controllable(): boolean {
    const { phase } = this.run.view();
    return !this.closing && !isTerminalPhase(phase) && phase !== 'GOVERNANCE_CHECK' && phase !== 'FINALIZING';
  }

  private uncontrollable(action: 'paused' | 'stopped'): string {
    return this.closing
      ? `run cannot be ${action}: it is closing (writing its governance and final records)`
      : `run cannot be ${action} in phase ${this.run.view().phase}`;
  }

  /** Recorded even when the run is being cancelled: a refused signal must not go unseen. */
  private rejectSignal(kind: string, request: ControlRequest | undefined, why: string): Promise<void> {
    this.memory.signalNumber += 1;
    const number = this.memory.signalNumber;
    const refusal: RefusedSignal = { dedupeKey: `signal:${number}`, kind, actor: request?.actor ?? null, authority: request?.authority ?? null, detail: why };
    if (!this.batchesRefusals) {
      return CancellationScope.nonCancellable(() => this.domain.recordRejectedSignal({ runId: this.input.runId, tenantId: this.input.tenantId, ...refusal }));
    }
    // A flood must not cost a write (and a history event) per signal: refusals wait in a bounded
    // queue and are written in batches, by one flush at a time.
    if (this.refusals.length < MAX_QUEUED_REFUSALS) this.refusals.push(refusal);
    else this.refusalsDropped += 1;
    return this.flushed();
  }

  /** Resolves once every refusal queued so far is written. */
  private flushed(): Promise<void> {
    this.flushing ??= CancellationScope.nonCancellable(async () => {
      try {
        while (this.refusals.length > 0 || this.refusalsDropped > 0) {
          const batch = this.refusals.splice(0, REFUSALS_PER_WRITE);
          const dropped = this.refusalsDropped;
          this.refusalsDropped = 0;
          await this.domain.recordRejectedSignals({ runId: this.input.runId, tenantId: this.input.tenantId, refusals: batch, dropped });
        }
      } finally {
        this.flushing = null;
      }
    });
    return this.flushing;
  }

  /**
   * A signal refused for what it carries (a payload that cannot be decoded, or one larger than a
   * control may be): refused, counted, never acted on. Every signal counts toward the run's bound.
   */
  private refusedAsSent(kind: string, raw: unknown): boolean {
    this.signalsReceived += 1;
    if (!this.boundsSignals) return false;
    const problem = signalProblem(raw);
    if (!problem) return false;
    void this.rejectSignal(kind, undefined, `signal refused: ${problem}`);
    return true;
  }

  /** Why a resume cannot be accepted now, or null when it can. */
  private resumeRefusal(
    request: ResumeRequest,
    pause: Pick<PauseState, 'reason' | 'tag' | 'allowedAuthorities' | 'approval'> | null = this.snapshotState.pause,
  ): ResumeRefusal | null {
    if (!pause) return { code: 'RUN_NOT_PAUSED', sentence: `run is not paused (phase ${this.run.view().phase})` };
    if (request.ifPauseTag !== undefined && pause.tag !== request.ifPauseTag) {
      return { code: 'PAUSE_NOT_TAGGED', sentence: `the run's pause (${pause.reason}) was not set by '${request.ifPauseTag}'` };
    }
    const held = heldAuthorities(request);
    if (held.length === 0) return { code: 'NO_AUTHORITY', sentence: `a resume must name its authority (one of ${RESUME_AUTHORITIES.join(', ')})` };
    if (!canResume(pause.allowedAuthorities, held)) {
      return {
        code: 'AUTHORITY_NOT_ALLOWED',
        sentence: `authority ${held.join('/')} may not resume a ${pause.reason} pause (allowed: ${pause.allowedAuthorities.join(', ')})`,
        held,
        pauseReason: pause.reason,
        allowed: [...pause.allowedAuthorities],
      };
    }
    if (pause.approval) {
      // Bound to what the approver saw: another call, or changed arguments, need an approval of their own.
      if (request.argsSha256 === undefined) {
        return { code: 'APPROVAL_MISMATCH', sentence: `a tool approval must quote the arguments' hash (argsSha256) of ${pause.approval.tool}` };
      }
      if (request.argsSha256 !== pause.approval.argsSha256) {
        return {
          code: 'APPROVAL_MISMATCH',
          sentence: `argsSha256 ${request.argsSha256} is not the pending call's (${pause.approval.tool}, ${pause.approval.argsSha256}): the arguments changed or another call is waiting`,
        };
      }
    } else if (request.decision === 'deny') {
      return { code: 'NOT_AWAITING_APPROVAL', sentence: `only a tool approval can be denied; this pause is ${pause.reason}` };
    }
    return null;
  }

  /** The pause accepted mid-step and not yet held, as a resume is checked against it. */
  private pendingPause(): Pick<PauseState, 'reason' | 'tag' | 'allowedAuthorities' | 'approval'> | null {
    const pending = this.memory.pauseRequest;
    if (!pending) return null;
    const reason = pending.pauseReason ?? 'MANUAL_PAUSE';
    return {
      reason,
      allowedAuthorities: pending.allowedAuthorities?.length ? pending.allowedAuthorities : [...DEFAULT_RESUME_AUTHORITIES[reason]],
      ...(pending.tag !== undefined ? { tag: pending.tag } : {}),
    };
  }

  private checkDue({ stepIndex, inAgent }: Position): boolean {
    const { memory } = this;
    if (memory.checkRequested || memory.stopRequest || memory.pauseRequest || !memory.settings || memory.lastCheckAt === null) return true;
    const nextSkill = this.input.plan[stepIndex]!.skill;
    if (!inAgent && memory.settings.approvalSkills.includes(nextSkill) && memory.approvedStep !== stepIndex) return true;
    return workflowNow() - memory.lastCheckAt >= memory.settings.checkIntervalMs;
  }

  private async check({ stepIndex, inAgent }: Position): Promise<PolicyCheckResponse> {
    const { memory, input } = this;
    const progress = this.run.view();
    memory.checkRequested = false;
    memory.checkNumber += 1;
    const result = await this.moves.carriedBy((moves) => this.domain.checkPolicy({
      ...moves,
      runId: input.runId,
      tenantId: input.tenantId,
      checkNumber: memory.checkNumber,
      stepIndex,
      knownPolicyVersion: memory.knownPolicyVersion,
      runBudgetUsd: input.budgetUsd,
      costUsd: progress.costUsd,
      tokens: progress.tokens,
      stepsCompleted: progress.stepsCompleted,
      remainingSkills: input.plan.slice(stepIndex).map((s) => s.skill),
      nextStepApproved: inAgent || memory.approvedStep === stepIndex,
      stopRequested: memory.stopRequest !== null,
      ...(progress.actionsCompleted !== undefined ? { actionsCompleted: progress.actionsCompleted } : {}),
    }));
    memory.lastCheckAt = workflowNow();
    memory.settings = settingsFrom(result);
    this.snapshotState.lastCheck = { decision: result.decision, reason: result.reason, stepIndex };
    return result;
  }

  private acceptPolicy(result: PolicyCheckResponse): void {
    this.acceptPolicyVersion(result.policyVersion);
  }

  private acceptPolicyVersion(version: number): void {
    this.memory.knownPolicyVersion = version;
    this.snapshotState.policyVersion = version;
  }

  private terminationOutcome(result: PolicyCheckResponse): RunOutcome {
    const types = result.violations.map((v) => v.type);
    const { stopRequest } = this.memory;
    if (types.includes('MANUAL_STOP')) {
      const by = stopRequest?.actor ? ` by ${stopRequest.actor}` : '';
      const why = stopRequest?.reason ? `: ${stopRequest.reason}` : '';
      return { kind: 'failed', status: 'cancelled', code: 'STOPPED', message: `run stopped${by}${why}` };
    }
    const code: FailureCode = types.includes('BUDGET_EXCEEDED') ? 'BUDGET_EXCEEDED' : 'POLICY_TERMINATED';
    return { kind: 'failed', status: 'failed_policy', code, message: `terminated by policy: ${result.reason}` };
  }

  /**
   * The policy's answer before step `stepIndex`: null lets the step run, an outcome ends the run.
   * Loops because a resumed pause is followed by a fresh check of the policy as it is now.
   */
  private async policyGate(stepIndex: number, inAgent = false): Promise<RunOutcome | null> {
    const { memory } = this;
    const position = { stepIndex, inAgent };
    while (this.checkDue(position)) {
      const result = await this.check(position);
      this.run.publish();
      if (result.decision === 'TERMINATE') return this.terminationOutcome(result);
      if (result.decision === 'CONTINUE' || result.decision === 'SKIP') {
        this.acceptPolicy(result);
        if (!memory.pauseRequest) return null;
        const request = memory.pauseRequest;
        memory.pauseRequest = null;
        const end = await this.hold(request.pauseReason ?? 'MANUAL_PAUSE', request.reason ?? 'paused by an operator', request, { timerMayResume: true, effect: { kind: 'recheck' } });
        if (end.ended === 'outcome') return end.outcome;
        memory.checkRequested = true;
        continue;
      }
      // PAUSE: the policy asks for a human.
      const approveStep = result.violations.some((v) => v.type === 'APPROVAL_REQUIRED') && !inAgent ? stepIndex : null;
      const end = await this.hold(result.pauseReason ?? 'POLICY_CHANGE', result.reason, null, { timerMayResume: true, effect: { kind: 'acceptPolicy', version: result.policyVersion, approveStep } });
      if (end.ended === 'outcome') return end.outcome;
      if (end.ended === 'resumed') {
        // A resume accepts what the pause was about: the changed policy, or the step needing approval.
        this.acceptPolicy(result);
        if (result.violations.some((v) => v.type === 'APPROVAL_REQUIRED') && !inAgent) memory.approvedStep = stepIndex;
      }
      memory.checkRequested = true;
    }
    return null;
  }

  /** Why step `stepIndex` may not start because of what it may cost, or null when it fits the budget. */
  private predictedOverrun(stepIndex: number): string | null {
    if (!this.reservesBudget || this.memory.overrunAcceptedStep === stepIndex) return null;
    const step = this.input.plan[stepIndex]!;
    const spent = this.run.view();
    const boundedChat = step.skill === 'llm.chat' && step.input.maxTokens !== undefined;
    const rule = boundedChat && this.patches.has('priceBoundAtDearestRate') ? 'dearest' : 'named-or-default';
    const prediction = predictStepCost(step, spent, this.input.prices, rule);
    const budget = this.budgetUsd();
    if (!prediction || !wouldOverrunBudget(spent.costUsd, prediction.usd, budget)) return null;
    const basis = prediction.basis === 'upper-bound' ? 'at most' : "about (the run's average step)";
    return `predicted overrun: step ${stepIndex + 1} (${step.skill}) would cost ${basis} $${prediction.usd} with $${spent.costUsd} spent, over the run's budget of $${budget}; refused before it ran`;
  }

  private setPause(pause: PauseState | null): void {
    this.snapshotState.pause = pause;
    this.run.publish();
  }

  /** The durable wait (`workflows/pause.ts`), shown in the run's state while it holds. */
  private hold(
    reason: PauseReason,
    detail: string,
    request: PauseRequest | null,
    options: { timerMayResume: boolean; approval?: PendingApproval; effect: PauseEffect; adopted?: HeldPause },
  ): Promise<PauseEnd> {
    const { adopted } = options;
    if (!adopted) this.memory.pauseNumber += 1;
    const settings = this.memory.settings!;
    const policy =
      options.timerMayResume || settings.pauseTimeoutBehavior !== 'CONTINUE' ? settings : { ...settings, pauseTimeoutBehavior: 'TERMINATE' as const };
    return holdPause(
      {
        runId: this.input.runId,
        tenantId: this.input.tenantId,
        domain: this.domain,
        policy,
        show: (pause) => this.setPause(pause),
        publish: () => this.run.publish(),
        resumeRequest: () => this.resumeRequest,
        resumeHandled: () => {
          this.resumeRequest = null;
        },
        stopRequested: () => this.memory.stopRequest !== null,
        mustContinue: () => this.heavyHistory(),
        continueHolding: (held) => {
          this.memory.heldPause = { ...held, request, timerMayResume: options.timerMayResume, effect: options.effect };
          return this.run.continueAsNewHere();
        },
      },
      adopted
        ? { number: adopted.pause.number, reason, detail, request, adopted }
        : { number: this.memory.pauseNumber, reason, detail, request, approval: options.approval },
    );
  }
}

/**
 * A refused update as its caller reads it: the code as the failure's type, the sentence as its
 * message, the rest as details. A validator's refusal is not written to the history, so how it is
 * worded may change without a patch.
 */
function refusedUpdate(refusal: ResumeRefusal): ApplicationFailure {
  const { code, sentence, ...details } = refusal;
  return ApplicationFailure.create({ type: code, message: sentence, details: [details], nonRetryable: true });
}
