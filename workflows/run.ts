import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { hasOverrunBudget } from '../core/budget';
import { sagaEventKey, type OutboundEvent } from '../core/events';
import type { FailureCode, RunOutcome } from '../core/outcome';
import { assertTransition, type FailedStatus, type RunPhase, type RunStatus } from '../core/phases';
import { addUsd } from '../core/pricing';
import type { SagaPhase } from '../core/saga';
import { PAUSE_REASON, RUN_PHASE, RUN_STATUS, TENANT_ID } from '../core/search-attributes';
import { runDomainWrites, skills } from './activity-proxies';
import { createRunGovernor } from './governor';
import { runStateQuery, type RunState, type RunWorkflowInput } from './messages';

/** Runs recorded before mid-run policy checks existed replay without them. */
export const MID_RUN_POLICY_PATCH = 'mid-run-policy-checks';
/**
 * A write that fails for good (the retry budget spent on an error that is not an outage) used to
 * fail the workflow and leave the stored run mid-phase forever; now the run fails and says why.
 */
export const NEVER_WEDGE_PATCH = 'never-wedge-on-a-failed-write';
/**
 * A run that ends FAILED fails its workflow too (after every record is written), so Temporal's own
 * status — the Web UI's badge, `ExecutionStatus = "Failed"` in a list query — tells the run's outcome.
 * The failure's type is the run's failure code and its details carry the final `RunState`.
 */
export const FAILED_RUN_FAILS_WORKFLOW_PATCH = 'failed-run-fails-its-workflow';
/** A run that failed while executing used to go straight to FAILED, its saga run in EXECUTING. */
export const FAILED_RUN_CLOSES_VISIBLY_PATCH = 'failed-run-closes-through-governance';
/**
 * A compensation that gave up used to end the saga there and leave the run unfinalized; now the
 * others still run and the run is finalized FAILED with what could not be undone.
 */
export const COMPENSATION_GIVES_UP_PATCH = 'compensation-gives-up-run-still-finalized';

/** Runs started before long runs continued as new keep one history, however long. */
export const LONG_RUN_CONTINUES_AS_NEW_PATCH = 'long-run-continues-as-new';
/**
 * A run continues as new, between steps, once its history holds this many events: far below the
 * 10,240 at which Temporal starts warning (a step adds about seven, a pause a dozen more), and
 * small enough that a worker taking over replays it in a moment.
 */
export const RUN_HISTORY_EVENTS_BOUND = 2_000;

function failed(status: FailedStatus, code: FailureCode, message: string): RunOutcome {
  return { kind: 'failed', status, code, message };
}

function describeFailure(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

export async function runWorkflow(input: RunWorkflowInput): Promise<RunState> {
  const { runId, tenantId, continued } = input;
  const state: RunState = continued?.state ?? {
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
  let upserted: string | null = null;
  setHandler(runStateQuery, () => state);
  const domain = runDomainWrites();
  const governor = patched(MID_RUN_POLICY_PATCH) ? createRunGovernor({ input, state, publishState, domain, carried: continued?.governor }) : null;
  publishState();

  function publishState(): void {
    const pauseReason = state.pause?.reason ?? null;
    const attributes = `${state.phase}|${state.status}|${pauseReason}`;
    // Each upsert is a history event: runs with the patch upsert only what changed.
    if (!governor || attributes !== upserted) {
      upsertSearchAttributes([
        { key: RUN_PHASE, value: state.phase },
        { key: RUN_STATUS, value: state.status },
        { key: TENANT_ID, value: tenantId },
        { key: PAUSE_REASON, value: pauseReason },
      ]);
      upserted = attributes;
    }
    const lines = [
      `**${state.phase}** (${state.status})`,
      `steps ${state.stepsCompleted}/${state.totalSteps} · cost $${state.costUsd.toFixed(6)} of $${state.budgetUsd}`,
      `governance saga: ${state.sagaPhase} · observability: ${state.observabilityStatus}`,
    ];
    if (state.pause) {
      const p = state.pause;
      lines.push(`**PAUSED** (${p.reason}) since ${p.since}, expires ${p.expiresAt}: ${p.detail}; resume by ${p.allowedAuthorities.join(', ')}`);
    }
    if (state.continuedAsNew) lines.push(`execution ${state.continuedAsNew + 1} of this run (its history continued as new ${state.continuedAsNew} times)`);
    if (state.lastCheck) lines.push(`last policy check: ${state.lastCheck.decision} before step ${state.lastCheck.stepIndex} (${state.lastCheck.reason})`);
    if (state.error) lines.push(`error: ${state.error.code}: ${state.error.message}`);
    setCurrentDetails(lines.join('\n\n'));
  }

  /** Checks the edge in workflow code first: an illegal transition is a bug and fails the task loudly. */
  async function transition(to: RunPhase, status: RunStatus): Promise<void> {
    assertTransition(state.phase, to, status);
    await domain.recordTransition({ runId, from: state.phase, to, status });
    state.phase = to;
    state.status = status;
    publishState();
  }

  function setSagaPhase(phase: SagaPhase): void {
    state.sagaPhase = phase;
    publishState();
  }

  /** Observability guard (seed FIX-004): a trace that cannot start is handled per mode. */
  async function startTraceGuarded(): Promise<RunOutcome | null> {
    try {
      await domain.startTrace({ runId, tenantId });
      return null;
    } catch (err) {
      if (isCancellation(err)) throw err;
      const error = describeFailure(err);
      await domain.recordTraceStartFailure({ runId, mode: input.observabilityMode, error });
      if (input.observabilityMode === 'STRICT') {
        return failed('failed', 'OBSERVABILITY_REQUIRED', `trace could not start (STRICT mode): ${error}`);
      }
      if (input.observabilityMode === 'DEGRADED') {
        state.observabilityStatus = 'DEGRADED';
        publishState();
      }
      return null;
    }
  }

  function historyIsLong(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= (input.continueAsNewAfterEvents ?? RUN_HISTORY_EVENTS_BOUND);
  }

  /** Hands the run to a fresh execution of its workflow (same workflow id) before step `nextStep`. */
  async function continueRun(nextStep: number): Promise<never> {
    // An update or signal still being handled would be lost with this execution.
    await condition(allHandlersFinished);
    state.continuedAsNew = (state.continuedAsNew ?? 0) + 1;
    return continueAsNew<typeof runWorkflow>({ ...input, continued: { nextStep, state, governor: governor!.memory() } });
  }

  async function executePlan(firstStep: number): Promise<RunOutcome> {
    for (let stepIndex = firstStep; stepIndex < input.plan.length; stepIndex += 1) {
      const step = input.plan[stepIndex]!;
      if (governor && stepIndex > firstStep && historyIsLong() && patched(LONG_RUN_CONTINUES_AS_NEW_PATCH)) await continueRun(stepIndex);
      const verdict = await governor?.beforeStep(stepIndex);
      if (verdict) return verdict;
      let result;
      try {
        result = await skills.executeStep({ runId, stepIndex, step });
      } catch (err) {
        if (isCancellation(err)) throw err;
        return failed('failed', 'STEP_FAILED', `step ${stepIndex} (${step.skill}) failed: ${describeFailure(err)}`);
      }
      state.costUsd = addUsd(state.costUsd, result.costUsd);
      state.tokens += result.tokensIn + result.tokensOut;
      state.stepsCompleted = stepIndex + 1;
      await domain.recordTraceStep({
        runId,
        stepIndex,
        skill: step.skill,
        result,
        progress: { costUsd: state.costUsd, tokens: state.tokens, stepsCompleted: state.stepsCompleted },
        ...(governor ? { warningAtUsd: governor.warningAtUsd(), tenantId } : {}),
      });
      publishState();
      const budget = governor?.budgetUsd() ?? input.budgetUsd;
      if (hasOverrunBudget(state.costUsd, budget)) {
        return failed('failed_policy', 'BUDGET_EXCEEDED', `spent $${state.costUsd} after step ${stepIndex}, over the run's budget of $${budget}`);
      }
    }
    return { kind: 'succeeded' };
  }

  function outcomeEvents(outcome: RunOutcome): OutboundEvent[] {
    // The phase the run ends in: the saga writes these events before the run gets there.
    const summary = { phase: outcome.kind === 'succeeded' ? 'COMPLETED' : 'FAILED', costUsd: state.costUsd, stepsCompleted: state.stepsCompleted };
    const runEvent: OutboundEvent =
      outcome.kind === 'succeeded'
        ? { topic: 'run.completed', dedupeKey: sagaEventKey(runId, 'run.completed'), payload: summary }
        : { topic: 'run.failed', dedupeKey: sagaEventKey(runId, 'run.failed'), payload: { ...summary, code: outcome.code, reason: outcome.message } };
    const events: OutboundEvent[] = [
      runEvent,
      { topic: 'policy.evaluated', dedupeKey: sagaEventKey(runId, 'policy.evaluated'), payload: { outcome: outcome.kind } },
      { topic: 'trace.completed', dedupeKey: sagaEventKey(runId, 'trace.completed'), payload: { outcome: outcome.kind } },
    ];
    if (outcome.kind === 'failed') {
      events.push({ topic: 'incident.created', dedupeKey: sagaEventKey(runId, 'incident.created'), payload: { code: outcome.code } });
    }
    return events;
  }

  /**
   * The transaction coordinator as a saga (seed FIX-001): incident, policy evaluation, trace
   * completion. Each compensation is registered before its step, because a step can commit and
   * still time out; compensations run newest first and cope with nothing to undo.
   */
  async function runGovernanceSaga(outcome: RunOutcome): Promise<{ committed: true } | { committed: false; error: string }> {
    const compensations: { undoes: SagaPhase; undo: typeof domain.rollbackIncident }[] = [];
    try {
      compensations.unshift({ undoes: 'INCIDENT_CREATED', undo: domain.rollbackIncident });
      await domain.createIncident({ runId, tenantId, outcome });
      setSagaPhase('INCIDENT_CREATED');

      compensations.unshift({ undoes: 'POLICY_EVALUATED', undo: domain.rollbackPolicyEvaluation });
      await domain.evaluatePolicy({ runId, tenantId, outcome, policyVersion: state.policyVersion });
      setSagaPhase('POLICY_EVALUATED');

      compensations.unshift({ undoes: 'TRACE_COMPLETED', undo: domain.rollbackTraceCompletion });
      await domain.completeTrace({ runId, tenantId, outcome: outcome.kind, events: outcomeEvents(outcome) });
      setSagaPhase('TRACE_COMPLETED');
      // The last step's transaction committed the saga and wrote its events to the outbox.
      setSagaPhase('COMMITTED');
      setSagaPhase('EVENTS_PUBLISHED');
      return { committed: true };
    } catch (err) {
      const error = describeFailure(err);
      const reason = `governance saga failed after ${state.sagaPhase}: ${error}`;
      const notUndone: string[] = [];
      await CancellationScope.nonCancellable(async () => {
        for (const { undoes, undo } of compensations) {
          try {
            await undo({ runId, reason, undoesPhase: undoes });
          } catch (compensationError) {
            if (!patched(COMPENSATION_GIVES_UP_PATCH)) throw compensationError;
            notUndone.push(`could not undo ${undoes}: ${describeFailure(compensationError)}`);
          }
        }
      });
      if (notUndone.length) {
        setSagaPhase('ROLLBACK_INCOMPLETE');
        return { committed: false, error: [reason, ...notUndone].join('; ') };
      }
      setSagaPhase('ROLLED_BACK');
      return { committed: false, error: reason };
    }
  }

  async function finish(outcome: RunOutcome): Promise<void> {
    let final = outcome;
    // A run that failed while executing closes through the same phases as one that succeeded, so
    // its governance and finalization show (status `running`, the only one §13.4 allows there:
    // the run is still at work, writing its records; FAILED with the real status comes last).
    // A run that never executed (denied, trace refused) fails from where it stands, as the phase
    // table says.
    const throughGovernance = final.kind === 'succeeded' || (state.phase === 'EXECUTING' && patched(FAILED_RUN_CLOSES_VISIBLY_PATCH));
    if (throughGovernance) await transition('GOVERNANCE_CHECK', 'running');
    const saga = await runGovernanceSaga(final);
    const closingEvents: OutboundEvent[] = [];
    if (!saga.committed) {
      final = failed('failed', 'GOVERNANCE_ERROR', saga.error);
      closingEvents.push({
        topic: 'run.failed',
        // Its own key: a retracted saga run.failed must not swallow this one.
        dedupeKey: `${runId}:run.failed:rolled-back`,
        payload: { code: 'GOVERNANCE_ERROR', reason: saga.error, sagaPhase: state.sagaPhase },
      });
    }
    // FINALIZING follows governance that stood; a rolled-back saga fails the run from GOVERNANCE_CHECK.
    if (saga.committed && state.phase === 'GOVERNANCE_CHECK') await transition('FINALIZING', 'running');

    const to: RunPhase = final.kind === 'succeeded' ? 'COMPLETED' : 'FAILED';
    const status: RunStatus = final.kind === 'succeeded' ? 'succeeded' : final.status;
    const error = final.kind === 'failed' ? { code: final.code, message: final.message } : null;
    assertTransition(state.phase, to, status);
    await domain.createRunLog({
      runId,
      tenantId,
      status,
      record: {
        outcome: final.kind,
        error,
        plan: input.plan.map((s) => s.skill),
        stepsCompleted: state.stepsCompleted,
        costUsd: state.costUsd,
        tokens: state.tokens,
        budgetUsd: input.budgetUsd,
        observabilityStatus: state.observabilityStatus,
        sagaPhase: state.sagaPhase,
        authorization: input.authorization,
      },
    });
    await domain.finalizeRun({
      runId,
      tenantId,
      from: state.phase,
      to,
      status,
      sagaPhase: state.sagaPhase,
      error,
      events: closingEvents,
    });
    state.phase = to;
    state.status = status;
    state.error = error;
    publishState();
  }

  async function execute(): Promise<RunOutcome> {
    if (continued) return executePlan(continued.nextStep);
    const guardFailure = await startTraceGuarded();
    if (guardFailure) return guardFailure;
    if (input.authorization.decision === 'DENIED') {
      return failed('failed_policy', 'AUTHORIZATION_DENIED', `authorization denied: ${input.authorization.reason ?? 'no reason given'}`);
    }
    await transition('AUTHORIZED', 'queued');
    await transition('EXECUTING', 'running');
    return executePlan(0);
  }

  let outcome: RunOutcome;
  try {
    outcome = await execute();
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    if (isCancellation(err)) outcome = failed('cancelled', 'STOPPED', 'run cancelled');
    else if (patched(NEVER_WEDGE_PATCH)) outcome = failed('failed', 'RECORDING_FAILED', `the run could not record its progress: ${describeFailure(err)}`);
    else throw err;
  }
  await governor?.close(outcome);
  // Whatever ended the run, its governance records and final status are written to the end.
  try {
    await CancellationScope.nonCancellable(() => finish(outcome));
  } catch (err) {
    if (!patched(NEVER_WEDGE_PATCH)) throw err;
    // Fails the workflow too, so Temporal's own status says what the stored run says.
    const error = `the run could not be finalized: ${describeFailure(err)}`;
    await CancellationScope.nonCancellable(() => domain.recordUnfinalizedRun({ runId, error }));
    throw ApplicationFailure.nonRetryable(error, 'RunNotFinalized');
  }
  // Signals that arrived late are still recorded before the workflow closes.
  await condition(allHandlersFinished);
  if (state.phase === 'FAILED' && patched(FAILED_RUN_FAILS_WORKFLOW_PATCH)) {
    throw ApplicationFailure.create({
      type: state.error?.code ?? 'RUN_FAILED',
      message: `run ${state.status}: ${state.error?.message ?? 'no reason recorded'}`,
      nonRetryable: true,
      details: [state],
    });
  }
  return state;
}
