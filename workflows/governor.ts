import { CancellationScope, condition, patched, setHandler } from '@temporalio/workflow';
import type { PolicyCheckResponse } from '../activities/policies';
import { budgetWarningAtUsd, effectiveBudgetUsd, wouldOverrunBudget } from '../core/budget';
import type { FailureCode, RunOutcome } from '../core/outcome';
import type { PauseTimeoutBehavior, PredictedOverrunBehavior } from '../core/policy';
import {
  DEFAULT_RESUME_AUTHORITIES,
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
  pauseRequestFrom,
  pauseSignal,
  policyChangedSignal,
  resumeSignal,
  resumeUpdate,
  stopSignal,
  type ControlRequest,
  type PauseRequest,
  type ResumeRequest,
  type RunState,
  type RunWorkflowInput,
} from './messages';
import { workflowNow } from './time';

/** Runs that closed before control requests were refused while closing replay without the refusals. */
export const REFUSE_CONTROL_WHILE_CLOSING_PATCH = 'refuse-control-while-closing';
/** Runs started before budget reservation let a step run whatever it was predicted to cost. */
export const BUDGET_RESERVATION_PATCH = 'budget-reservation';

/** What the run keeps of its tenant's policy between checks. */
export interface PolicySettings {
  version: number;
  budgetPerRunUsd: number;
  checkIntervalMs: number;
  approvalSkills: readonly string[];
  warningThresholdPct: number;
  pauseSlaMs: number;
  pauseWarningMs: number;
  pauseTimeoutBehavior: PauseTimeoutBehavior;
  onPredictedOverrun: PredictedOverrunBehavior;
}

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

function heldAuthorities(request: ControlRequest): string[] {
  return [request.authority, ...(request.authorities ?? [])].filter((a): a is string => typeof a === 'string');
}

/** The governor's own state: plain data, so a run that continues as new carries it whole. */
export interface GovernorMemory {
  settings: PolicySettings | null;
  knownPolicyVersion: number;
  /** Workflow time of the last policy check. */
  lastCheckAt: number | null;
  /** Counters that key the run's records (`check:n`, `pause:n`, `signal:n`): they never restart. */
  checkNumber: number;
  pauseNumber: number;
  signalNumber: number;
  checkRequested: boolean;
  approvedStep: number;
  /** The step whose predicted overrun a resume accepted: it runs, and the hard limit after it still holds. */
  overrunAcceptedStep: number;
  /** Controls accepted and not yet acted on at a step boundary. */
  stopRequest: ControlRequest | null;
  pauseRequest: PauseRequest | null;
  /** Ids of requests already acted on (the newest ones), so a redelivered request is a no-op. */
  seenRequestIds: string[];
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

type PauseEnd = { ended: 'resumed' } | { ended: 'stopped' } | { ended: 'outcome'; outcome: RunOutcome };

export interface GovernorContext {
  input: RunWorkflowInput;
  state: RunState;
  publishState(): void;
  /** The run's writes (`runDomainWrites`): local-first or task-queue, chosen once per run. */
  domain: DomainWrites;
  /** What the previous execution of a run that continued as new remembered. */
  carried?: GovernorMemory;
}

/**
 * Policy as a live force during execution (seed FIX-005, §11.2, §13.5): before each step the run
 * asks for a fresh decision when its check interval has passed in workflow time, a control signal
 * arrived, or the next skill needs approval; a PAUSE is a durable wait for a resume with the
 * policy's SLA as its deadline.
 */
export function createRunGovernor({ input, state, publishState, domain, carried }: GovernorContext) {
  const { runId, tenantId } = input;
  /** What the governor remembers between steps; a run that continues as new carries it over. */
  const memory: GovernorMemory = carried ? { ...carried } : freshMemory(input.policyVersion ?? 0);
  const reservesBudget = patched(BUDGET_RESERVATION_PATCH);
  let resumeRequest: ControlRequest | null = null;
  /** Requests already acted on, by their sender's id: a redelivered one is a no-op. */
  const seenRequestIds = new Set(memory.seenRequestIds);
  const firstDelivery = (request: ControlRequest): boolean => {
    if (request.requestId === undefined) return true;
    if (seenRequestIds.has(request.requestId)) return false;
    seenRequestIds.add(request.requestId);
    return true;
  };

  if (!carried) {
    state.pause = null;
    state.lastCheck = null;
    state.policyVersion = memory.knownPolicyVersion;
  }

  /** Set once the run only writes its governance and final records (whatever phase a failing run is in). */
  let closing = false;
  const controllable = () => !closing && !isTerminalPhase(state.phase) && state.phase !== 'GOVERNANCE_CHECK' && state.phase !== 'FINALIZING';
  const uncontrollable = (action: 'paused' | 'stopped') =>
    closing ? `run cannot be ${action}: it is closing (writing its governance and final records)` : `run cannot be ${action} in phase ${state.phase}`;

  /** Recorded even when the run is being cancelled: a refused signal must not go unseen. */
  function rejectSignal(kind: string, request: ControlRequest | undefined, why: string): Promise<void> {
    memory.signalNumber += 1;
    const number = memory.signalNumber;
    return CancellationScope.nonCancellable(() => domain.recordRejectedSignal({
      runId,
      tenantId,
      dedupeKey: `signal:${number}`,
      kind,
      actor: request?.actor ?? null,
      authority: request?.authority ?? null,
      detail: why,
    }));
  }

  /** Why a resume cannot be accepted now, or null when it can. */
  function resumeRefusal(request: ResumeRequest): string | null {
    if (!state.pause) return `run is not paused (phase ${state.phase})`;
    if (request.ifPauseTag !== undefined && state.pause.tag !== request.ifPauseTag) {
      return `the run's pause (${state.pause.reason}) was not set by '${request.ifPauseTag}'`;
    }
    const held = heldAuthorities(request);
    if (held.length === 0) return `a resume must name its authority (one of ${RESUME_AUTHORITIES.join(', ')})`;
    if (!canResume(state.pause.allowedAuthorities, held)) {
      return `authority ${held.join('/')} may not resume a ${state.pause.reason} pause (allowed: ${state.pause.allowedAuthorities.join(', ')})`;
    }
    return null;
  }

  setHandler(pauseSignal, async (raw) => {
    const request = pauseRequestFrom(raw);
    if (!firstDelivery(request)) return;
    const reason = request.pauseReason ?? 'MANUAL_PAUSE';
    if (!PAUSE_REASONS.includes(reason)) return rejectSignal('pause', request, `unknown pause reason '${reason}'`);
    if (!controllable()) return rejectSignal('pause', request, uncontrollable('paused'));
    if (state.pause || memory.pauseRequest) return rejectSignal('pause', request, 'run is already paused');
    memory.pauseRequest = { ...request, pauseReason: reason };
    memory.checkRequested = true;
  });

  setHandler(resumeSignal, async (raw) => {
    const request = controlRequestFrom(raw);
    if (!firstDelivery(request)) return;
    const refusal = resumeRefusal(request);
    if (refusal) return rejectSignal('resume', request, refusal);
    resumeRequest = request;
  });

  setHandler(
    resumeUpdate,
    async (raw) => {
      resumeRequest = controlRequestFrom(raw);
      await condition(() => state.pause === null || isTerminalPhase(state.phase));
      return state;
    },
    {
      validator: (raw) => {
        const refusal = resumeRefusal(controlRequestFrom(raw));
        if (refusal) throw new Error(refusal);
      },
    },
  );

  setHandler(stopSignal, async (raw) => {
    const request = controlRequestFrom(raw);
    if (!firstDelivery(request)) return;
    if (!controllable()) return rejectSignal('stop', request, uncontrollable('stopped'));
    memory.stopRequest ??= request;
    memory.checkRequested = true;
  });

  setHandler(policyChangedSignal, async () => {
    memory.checkRequested = true;
  });

  function checkDue(stepIndex: number): boolean {
    if (memory.checkRequested || memory.stopRequest || memory.pauseRequest || !memory.settings || memory.lastCheckAt === null) return true;
    const nextSkill = input.plan[stepIndex]!.skill;
    if (memory.settings.approvalSkills.includes(nextSkill) && memory.approvedStep !== stepIndex) return true;
    return workflowNow() - memory.lastCheckAt >= memory.settings.checkIntervalMs;
  }

  async function check(stepIndex: number): Promise<PolicyCheckResponse> {
    memory.checkRequested = false;
    memory.checkNumber += 1;
    const result = await domain.checkPolicy({
      runId,
      tenantId,
      checkNumber: memory.checkNumber,
      stepIndex,
      knownPolicyVersion: memory.knownPolicyVersion,
      runBudgetUsd: input.budgetUsd,
      costUsd: state.costUsd,
      tokens: state.tokens,
      stepsCompleted: state.stepsCompleted,
      remainingSkills: input.plan.slice(stepIndex).map((s) => s.skill),
      nextStepApproved: memory.approvedStep === stepIndex,
      stopRequested: memory.stopRequest !== null,
    });
    memory.lastCheckAt = workflowNow();
    memory.settings = settingsFrom(result);
    state.lastCheck = { decision: result.decision, reason: result.reason, stepIndex };
    return result;
  }

  function acceptPolicy(result: PolicyCheckResponse): void {
    memory.knownPolicyVersion = result.policyVersion;
    state.policyVersion = memory.knownPolicyVersion;
  }

  function terminationOutcome(result: PolicyCheckResponse): RunOutcome {
    const types = result.violations.map((v) => v.type);
    if (types.includes('MANUAL_STOP')) {
      const by = memory.stopRequest?.actor ? ` by ${memory.stopRequest.actor}` : '';
      const why = memory.stopRequest?.reason ? `: ${memory.stopRequest.reason}` : '';
      return { kind: 'failed', status: 'cancelled', code: 'STOPPED', message: `run stopped${by}${why}` };
    }
    const code: FailureCode = types.includes('BUDGET_EXCEEDED') ? 'BUDGET_EXCEEDED' : 'POLICY_TERMINATED';
    return { kind: 'failed', status: 'failed_policy', code, message: `terminated by policy: ${result.reason}` };
  }

  /** A control event the run records on its own behalf (timers, not people). */
  function systemEvent(kind: string, dedupeKey: string, detail: string) {
    return { runId, tenantId, dedupeKey, kind, actor: 'system', authority: 'SYSTEM_AUTO', accepted: true, detail };
  }

  function setPause(pause: RunState['pause']): void {
    state.pause = pause;
    publishState();
  }

  /** The durable wait: a resume, a stop, or the SLA running out (with a warning before it). */
  async function pause(reason: PauseReason, detail: string, request: PauseRequest | null): Promise<PauseEnd> {
    const policy = memory.settings!;
    memory.pauseNumber += 1;
    const number = memory.pauseNumber;
    const startedAt = workflowNow();
    const allowedAuthorities = request?.allowedAuthorities?.length ? request.allowedAuthorities : [...DEFAULT_RESUME_AUTHORITIES[reason]];
    const actor = request?.actor ?? 'policy';
    setPause({
      number,
      reason,
      detail,
      allowedAuthorities,
      since: new Date(startedAt).toISOString(),
      expiresAt: new Date(startedAt + policy.pauseSlaMs).toISOString(),
      escalated: false,
      ...(request?.tag !== undefined ? { tag: request.tag } : {}),
    });
    await domain.recordPause({
      runId,
      tenantId,
      dedupeKey: `pause:${number}`,
      kind: 'pause',
      actor,
      authority: request?.authority ?? 'SYSTEM_AUTO',
      accepted: true,
      detail: `${reason}: ${detail}`,
      reason,
      // A run held by governance is not stale: its audit deadlines move by the longest this pause can hold it.
      holdsUpToSeconds: (policy.pauseSlaMs * (policy.pauseTimeoutBehavior === 'ESCALATE' ? 2 : 1)) / 1000,
    });

    const interrupted = () => resumeRequest !== null || memory.stopRequest !== null;
    const resumed = async (by: ControlRequest, endedBy: 'operator' | 'timeout'): Promise<PauseEnd> => {
      await domain.recordResume({
        runId,
        tenantId,
        dedupeKey: `resume:${number}`,
        kind: 'resume',
        actor: by.actor ?? null,
        authority: heldAuthorities(by)[0] ?? null,
        accepted: true,
        detail: endedBy === 'timeout' ? 'resumed automatically when the pause SLA ran out (CONTINUE)' : (by.reason ?? null),
        reason,
        pausedForMs: workflowNow() - startedAt,
        endedBy,
      });
      resumeRequest = null;
      setPause(null);
      return { ended: 'resumed' };
    };

    for (let period = 1; ; period += 1) {
      const periodStart = workflowNow();
      state.pause!.expiresAt = new Date(periodStart + policy.pauseSlaMs).toISOString();
      publishState();
      const untilWarning = policy.pauseSlaMs - policy.pauseWarningMs;
      let woke = await condition(interrupted, untilWarning);
      if (!woke && policy.pauseWarningMs > 0) {
        await domain.recordPauseWarning({
          ...systemEvent('pause_expiring', `pause-warning:${number}:${period}`, `${reason} pause expires in ${policy.pauseWarningMs / 1000}s (then ${policy.pauseTimeoutBehavior})`),
          // The warning goes to whoever may still resume the run.
          resumableBy: state.pause!.allowedAuthorities,
          expiresAt: state.pause!.expiresAt,
        });
        woke = await condition(interrupted, policy.pauseWarningMs);
      }
      if (woke) {
        if (memory.stopRequest) {
          setPause(null);
          return { ended: 'stopped' };
        }
        return resumed(resumeRequest!, 'operator');
      }

      const escalation = policy.pauseTimeoutBehavior === 'ESCALATE' && !state.pause!.escalated;
      await domain.recordPauseTimeout({
        ...systemEvent('pause_timeout', `pause-timeout:${number}:${period}`, `${reason} pause ran out its SLA of ${policy.pauseSlaMs / 1000}s`),
        behavior: policy.pauseTimeoutBehavior,
        reason,
        escalation,
      });
      if (policy.pauseTimeoutBehavior === 'CONTINUE') {
        return resumed({ actor: 'system', authority: 'SYSTEM_AUTO' }, 'timeout');
      }
      if (escalation) {
        state.pause!.escalated = true;
        continue;
      }
      const afterEscalation = state.pause!.escalated ? ' nor within the escalation period' : '';
      setPause(null);
      return {
        ended: 'outcome',
        outcome: {
          kind: 'failed',
          status: 'failed_policy',
          code: 'PAUSE_TIMEOUT',
          message: `${reason} pause was not resumed within its SLA${afterEscalation} (${policy.pauseTimeoutBehavior})`,
        },
      };
    }
  }

  /**
   * The policy's answer before step `stepIndex`: null lets the step run, an outcome ends the run.
   * Loops because a resumed pause is followed by a fresh check of the policy as it is now.
   */
  async function policyGate(stepIndex: number): Promise<RunOutcome | null> {
    while (checkDue(stepIndex)) {
      const result = await check(stepIndex);
      publishState();
      if (result.decision === 'TERMINATE') return terminationOutcome(result);
      if (result.decision === 'CONTINUE' || result.decision === 'SKIP') {
        acceptPolicy(result);
        if (!memory.pauseRequest) return null;
        const request = memory.pauseRequest;
        memory.pauseRequest = null;
        const end = await pause(request.pauseReason ?? 'MANUAL_PAUSE', request.reason ?? 'paused by an operator', request);
        if (end.ended === 'outcome') return end.outcome;
        memory.checkRequested = true;
        continue;
      }
      // PAUSE: the policy asks for a human.
      const end = await pause(result.pauseReason ?? 'POLICY_CHANGE', result.reason, null);
      if (end.ended === 'outcome') return end.outcome;
      if (end.ended === 'resumed') {
        // A resume accepts what the pause was about: the changed policy, or the step needing approval.
        acceptPolicy(result);
        if (result.violations.some((v) => v.type === 'APPROVAL_REQUIRED')) memory.approvedStep = stepIndex;
      }
      memory.checkRequested = true;
    }
    return null;
  }

  /** Why step `stepIndex` may not start because of what it may cost, or null when it fits the budget. */
  function predictedOverrun(stepIndex: number): string | null {
    if (!reservesBudget || memory.overrunAcceptedStep === stepIndex) return null;
    const step = input.plan[stepIndex]!;
    const prediction = predictStepCost(step, state);
    const budget = effectiveBudgetUsd(input.budgetUsd, memory.settings?.budgetPerRunUsd);
    if (!prediction || !wouldOverrunBudget(state.costUsd, prediction.usd, budget)) return null;
    const basis = prediction.basis === 'upper-bound' ? 'at most' : 'about (the run\'s average step)';
    return `predicted overrun: step ${stepIndex} (${step.skill}) would cost ${basis} $${prediction.usd} with $${state.costUsd} spent, over the run's budget of $${budget}; refused before it ran`;
  }

  /**
   * Runs before step `stepIndex`: the policy, then the step's reservation against the budget. A
   * predicted overrun terminates the run before any money is spent, or, when the policy says PAUSE,
   * waits for a person: their resume accepts the risk for this one step.
   */
  async function beforeStep(stepIndex: number): Promise<RunOutcome | null> {
    for (;;) {
      const verdict = await policyGate(stepIndex);
      if (verdict) return verdict;
      const overrun = predictedOverrun(stepIndex);
      if (!overrun) return null;
      if (memory.settings?.onPredictedOverrun !== 'PAUSE') return { kind: 'failed', status: 'failed_policy', code: 'BUDGET_EXCEEDED', message: overrun };
      const end = await pause('BUDGET_WARNING', overrun, null);
      if (end.ended === 'outcome') return end.outcome;
      if (end.ended === 'resumed') memory.overrunAcceptedStep = stepIndex;
      // A stop ends the run through the check; a resume is followed by the policy as it is now.
      memory.checkRequested = true;
    }
  }

  return {
    beforeStep,
    /** What the next execution needs to go on where this one stops (only ever between steps, never paused). */
    memory: (): GovernorMemory => ({ ...memory, seenRequestIds: [...seenRequestIds].slice(-CARRIED_REQUEST_IDS) }),
    /** The hard limit after each step: the run's budget, or a lower one its accepted policy set. */
    budgetUsd: () => effectiveBudgetUsd(input.budgetUsd, memory.settings?.budgetPerRunUsd),
    warningAtUsd: () => (memory.settings ? budgetWarningAtUsd(effectiveBudgetUsd(input.budgetUsd, memory.settings.budgetPerRunUsd), memory.settings.warningThresholdPct) : null),
    /**
     * The run is closing: a pause still held is lifted, and from now on a pause or stop is refused
     * and recorded as refused (it used to be accepted and never acted on). So is one accepted that
     * the run never reached a step boundary to act on: a signal delivered together with the result
     * that ended the run (as after a retried workflow task) is handled first.
     */
    close: async (outcome: RunOutcome) => {
      if (patched(REFUSE_CONTROL_WHILE_CLOSING_PATCH)) {
        closing = true;
        const stopped = outcome.kind === 'failed' && outcome.code === 'STOPPED';
        if (memory.stopRequest && !stopped) await rejectSignal('stop', memory.stopRequest, uncontrollable('stopped'));
        if (memory.pauseRequest) await rejectSignal('pause', memory.pauseRequest, uncontrollable('paused'));
        memory.stopRequest = memory.pauseRequest = null;
      }
      if (state.pause) setPause(null);
    },
  };
}
