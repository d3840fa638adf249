import { CancellationScope, condition } from '@temporalio/workflow';
import type { PolicyCheckResponse } from '../activities/policies';
import type { CarriedMoves } from '../activities/runs';
import { budgetWarningAtUsd, effectiveBudgetUsd, hasOverrunBudget, wouldOverrunBudget } from '../core/budget';
import type { FailureCode, RunOutcome } from '../core/outcome';
import {
  PAUSE_REASONS,
  RESUME_AUTHORITIES,
  canResume,
  type PauseReason,
} from '../core/policy-check';
import { isTerminalPhase } from '../core/phases';
import { predictStepCost } from '../core/step-cost';
import type { DomainWrites } from './activity-proxies';
import {
  controlRequestFrom,
  heldAuthorities,
  pauseRequestFrom,
  type ContinuedRun,
  type ControlRequest,
  type GovernorMemory,
  type PolicySettings,
  type PauseRequest,
  type PauseState,
  type ResumeRequest,
  type RunState,
  type RunWorkflowInput,
} from './messages';
import type { RunPatches } from './patches';
import { holdPause, type PauseEnd } from './pause';
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
  };
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
  /** Runs `write` with the phase moves not yet written, to record them in the same transaction. */
  carryMoves<T>(write: (moves: CarriedMoves) => Promise<T>): Promise<T>;
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

  constructor(
    private readonly input: RunWorkflowInput,
    private readonly run: RunView,
    private readonly domain: DomainWrites,
    private readonly patches: RunPatches,
    readonly policyChecks: boolean,
    continued?: ContinuedRun,
  ) {
    this.memory = continued ? { ...continued.governor } : freshMemory(input.policyVersion ?? 0);
    this.seenRequestIds = new Set(this.memory.seenRequestIds);
    this.reservesBudget = policyChecks && patches.has('budgetReservation');
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
    const request = pauseRequestFrom(raw);
    if (!this.firstDelivery(request)) return;
    const reason = request.pauseReason ?? 'MANUAL_PAUSE';
    if (!PAUSE_REASONS.includes(reason)) return this.rejectSignal('pause', request, `unknown pause reason '${reason}'`);
    if (!this.controllable()) return this.rejectSignal('pause', request, this.uncontrollable('paused'));
    if (this.snapshotState.pause || this.memory.pauseRequest) return this.rejectSignal('pause', request, 'run is already paused');
    this.memory.pauseRequest = { ...request, pauseReason: reason };
    this.memory.checkRequested = true;
  }

  async onResumeSignal(raw: unknown): Promise<void> {
    const request = controlRequestFrom(raw);
    if (!this.firstDelivery(request)) return;
    const refusal = this.resumeRefusal(request);
    if (refusal) return this.rejectSignal('resume', request, refusal);
    this.resumeRequest = request;
  }

  /** The update's validator: refuses at once, with the reason, a resume that cannot be accepted now. */
  validateResume(raw: unknown): void {
    const refusal = this.resumeRefusal(controlRequestFrom(raw));
    if (refusal) throw new Error(refusal);
  }

  /** A resume that answers once the run goes on (or has ended). */
  async onResumeUpdate(raw: unknown): Promise<RunState> {
    this.resumeRequest = controlRequestFrom(raw);
    await condition(() => this.snapshotState.pause === null || isTerminalPhase(this.run.view().phase));
    return this.run.view();
  }

  async onStop(raw: unknown): Promise<void> {
    const request = controlRequestFrom(raw);
    if (!this.firstDelivery(request)) return;
    if (!this.controllable()) return this.rejectSignal('stop', request, this.uncontrollable('stopped'));
    this.memory.stopRequest ??= request;
    this.memory.checkRequested = true;
  }

  onPolicyChanged(): void {
    this.memory.checkRequested = true;
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
      const end = await this.hold('BUDGET_WARNING', overrun, null, { timerMayResume: false });
      if (end.ended === 'outcome') return end.outcome;
      if (end.ended === 'resumed') this.memory.overrunAcceptedStep = stepIndex;
      // A stop ends the run through the check; a resume is followed by the policy as it is now.
      this.memory.checkRequested = true;
    }
  }

  /** The hard limit after step `stepIndex`: only a step without an upper bound can have crossed it. */
  afterStep(stepIndex: number): RunOutcome | null {
    const spent = this.run.view().costUsd;
    const budget = this.budgetUsd();
    if (!hasOverrunBudget(spent, budget)) return null;
    return { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: `spent $${spent} after step ${stepIndex}, over the run's budget of $${budget}` };
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
    return CancellationScope.nonCancellable(() =>
      this.domain.recordRejectedSignal({
        runId: this.input.runId,
        tenantId: this.input.tenantId,
        dedupeKey: `signal:${number}`,
        kind,
        actor: request?.actor ?? null,
        authority: request?.authority ?? null,
        detail: why,
      }),
    );
  }

  /** Why a resume cannot be accepted now, or null when it can. */
  private resumeRefusal(request: ResumeRequest): string | null {
    const { pause } = this.snapshotState;
    if (!pause) return `run is not paused (phase ${this.run.view().phase})`;
    if (request.ifPauseTag !== undefined && pause.tag !== request.ifPauseTag) {
      return `the run's pause (${pause.reason}) was not set by '${request.ifPauseTag}'`;
    }
    const held = heldAuthorities(request);
    if (held.length === 0) return `a resume must name its authority (one of ${RESUME_AUTHORITIES.join(', ')})`;
    if (!canResume(pause.allowedAuthorities, held)) {
      return `authority ${held.join('/')} may not resume a ${pause.reason} pause (allowed: ${pause.allowedAuthorities.join(', ')})`;
    }
    return null;
  }

  private checkDue(stepIndex: number): boolean {
    const { memory } = this;
    if (memory.checkRequested || memory.stopRequest || memory.pauseRequest || !memory.settings || memory.lastCheckAt === null) return true;
    const nextSkill = this.input.plan[stepIndex]!.skill;
    if (memory.settings.approvalSkills.includes(nextSkill) && memory.approvedStep !== stepIndex) return true;
    return workflowNow() - memory.lastCheckAt >= memory.settings.checkIntervalMs;
  }

  private async check(stepIndex: number): Promise<PolicyCheckResponse> {
    const { memory, input } = this;
    const progress = this.run.view();
    memory.checkRequested = false;
    memory.checkNumber += 1;
    const result = await this.run.carryMoves((moves) => this.domain.checkPolicy({
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
      nextStepApproved: memory.approvedStep === stepIndex,
      stopRequested: memory.stopRequest !== null,
    }));
    memory.lastCheckAt = workflowNow();
    memory.settings = settingsFrom(result);
    this.snapshotState.lastCheck = { decision: result.decision, reason: result.reason, stepIndex };
    return result;
  }

  private acceptPolicy(result: PolicyCheckResponse): void {
    this.memory.knownPolicyVersion = result.policyVersion;
    this.snapshotState.policyVersion = result.policyVersion;
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
  private async policyGate(stepIndex: number): Promise<RunOutcome | null> {
    const { memory } = this;
    while (this.checkDue(stepIndex)) {
      const result = await this.check(stepIndex);
      this.run.publish();
      if (result.decision === 'TERMINATE') return this.terminationOutcome(result);
      if (result.decision === 'CONTINUE' || result.decision === 'SKIP') {
        this.acceptPolicy(result);
        if (!memory.pauseRequest) return null;
        const request = memory.pauseRequest;
        memory.pauseRequest = null;
        const end = await this.hold(request.pauseReason ?? 'MANUAL_PAUSE', request.reason ?? 'paused by an operator', request);
        if (end.ended === 'outcome') return end.outcome;
        memory.checkRequested = true;
        continue;
      }
      // PAUSE: the policy asks for a human.
      const end = await this.hold(result.pauseReason ?? 'POLICY_CHANGE', result.reason, null);
      if (end.ended === 'outcome') return end.outcome;
      if (end.ended === 'resumed') {
        // A resume accepts what the pause was about: the changed policy, or the step needing approval.
        this.acceptPolicy(result);
        if (result.violations.some((v) => v.type === 'APPROVAL_REQUIRED')) memory.approvedStep = stepIndex;
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
    const prediction = predictStepCost(step, spent, this.input.prices);
    const budget = this.budgetUsd();
    if (!prediction || !wouldOverrunBudget(spent.costUsd, prediction.usd, budget)) return null;
    const basis = prediction.basis === 'upper-bound' ? 'at most' : "about (the run's average step)";
    return `predicted overrun: step ${stepIndex} (${step.skill}) would cost ${basis} $${prediction.usd} with $${spent.costUsd} spent, over the run's budget of $${budget}; refused before it ran`;
  }

  private setPause(pause: PauseState | null): void {
    this.snapshotState.pause = pause;
    this.run.publish();
  }

  /** The durable wait (`workflows/pause.ts`), shown in the run's state while it holds. */
  private hold(reason: PauseReason, detail: string, request: PauseRequest | null, options = { timerMayResume: true }): Promise<PauseEnd> {
    this.memory.pauseNumber += 1;
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
      },
      { number: this.memory.pauseNumber, reason, detail, request },
    );
  }
}
