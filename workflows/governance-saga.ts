import { CancellationScope } from '@temporalio/workflow';
import { sagaEventKey, type OutboundEvent } from '../core/events';
import type { RunOutcome } from '../core/outcome';
import type { RunPhase } from '../core/phases';
import type { SagaPhase } from '../core/saga';
import type { RecordedIncident } from '../activities/incidents';
import type { RecordedLesson } from '../activities/lessons';
import type { DomainWrites } from './activity-proxies';
import type { RunState } from './messages';
import { describeFailure } from './failures';
import type { RunPatches } from './patches';

export type SagaResult = { committed: true } | { committed: false; error: string };

/** What the saga needs from the run it closes. */
export interface SagaContext {
  runId: string;
  tenantId: string;
  domain: DomainWrites;
  patches: RunPatches;
  /** The policy version the run holds at its end (undefined for runs recorded before mid-run checks). */
  policyVersion: number | undefined;
  /** The phase the run's outcome was decided in, before the saga moved it (its lesson's phase). */
  endedIn: RunPhase;
  progress(): Pick<RunState, 'costUsd' | 'stepsCompleted' | 'sagaPhase'>;
  setSagaPhase(phase: SagaPhase): void;
}

/**
 * The transaction coordinator as a saga (seed FIX-001): the incident, the policy evaluation, the
 * lesson (when the run owes one) and the trace completion, each a write of its own domain. Each compensation is registered before its
 * step, because a step can commit and still time out; on a failure they run newest first, cope
 * with nothing to undo, and mark what was written as rolled back (never deleted).
 */
export async function runGovernanceSaga(ctx: SagaContext, outcome: RunOutcome): Promise<SagaResult> {
  const { runId, tenantId, domain } = ctx;
  const compensations: { undoes: SagaPhase; undo: typeof domain.rollbackIncident }[] = [];
  const learns = ctx.patches.has('lessonsLearned');
  try {
    compensations.unshift({ undoes: 'INCIDENT_CREATED', undo: domain.rollbackIncident });
    const incident = await domain.createIncident({ runId, tenantId, outcome, ...(learns ? { lessons: true } : {}) });
    ctx.setSagaPhase('INCIDENT_CREATED');

    compensations.unshift({ undoes: 'POLICY_EVALUATED', undo: domain.rollbackPolicyEvaluation });
    await domain.evaluatePolicy({ runId, tenantId, outcome, policyVersion: ctx.policyVersion });
    ctx.setSagaPhase('POLICY_EVALUATED');

    let lesson: RecordedLesson = { lessonId: null };
    // The incident step declared the lesson in the contract by the same rule the lesson step
    // follows, so a run it found owing none has nothing for that step to write. An answer missing
    // (from a worker older than the answer, or no answer at all in a recorded history) counts as
    // owing one.
    const owesNoLesson = (incident as RecordedIncident | undefined)?.owesLesson === false;
    if (learns && !(owesNoLesson && ctx.patches.has('lessonsOnlyWhenLearned'))) {
      compensations.unshift({ undoes: 'LESSON_RECORDED', undo: domain.rollbackLesson });
      const { costUsd, stepsCompleted } = ctx.progress();
      lesson = await domain.recordLesson({
        runId,
        tenantId,
        outcome,
        end: { phase: ctx.endedIn, stepIndex: stepsCompleted, costUsd },
        ...(ctx.policyVersion !== undefined ? { policyVersion: ctx.policyVersion } : {}),
      });
      // A run with nothing to teach wrote nothing: its saga stands where it stood.
      if (lesson.lessonId !== null) ctx.setSagaPhase('LESSON_RECORDED');
    }

    compensations.unshift({ undoes: 'TRACE_COMPLETED', undo: domain.rollbackTraceCompletion });
    await domain.completeTrace({ runId, tenantId, outcome: outcome.kind, events: [...outcomeEvents(ctx, outcome), ...lessonEvents(runId, lesson)] });
    ctx.setSagaPhase('TRACE_COMPLETED');
    // The last step's transaction committed the saga and wrote its events to the outbox.
    ctx.setSagaPhase('COMMITTED');
    ctx.setSagaPhase('EVENTS_PUBLISHED');
    return { committed: true };
  } catch (err) {
    const reason = `governance saga failed after ${ctx.progress().sagaPhase}: ${describeFailure(err)}`;
    const notUndone: string[] = [];
    await CancellationScope.nonCancellable(async () => {
      for (const { undoes, undo } of compensations) {
        try {
          await undo({ runId, reason, undoesPhase: undoes });
        } catch (compensationError) {
          if (!ctx.patches.has('compensationGivesUp')) throw compensationError;
          notUndone.push(`could not undo ${undoes}: ${describeFailure(compensationError)}`);
        }
      }
    });
    if (notUndone.length) {
      ctx.setSagaPhase('ROLLBACK_INCOMPLETE');
      return { committed: false, error: [reason, ...notUndone].join('; ') };
    }
    ctx.setSagaPhase('ROLLED_BACK');
    return { committed: false, error: reason };
  }
}

/** A lesson is announced with the saga that recorded it, so a rolled-back one never is. */
function lessonEvents(runId: string, lesson: RecordedLesson): OutboundEvent[] {
  if (lesson.lessonId === null) return [];
  const { lessonId, kind, code, patternKey, stepIndex, tool } = lesson;
  return [{ topic: 'lesson.recorded', dedupeKey: sagaEventKey(runId, 'lesson.recorded'), payload: { lessonId, kind, code, patternKey, stepIndex, tool } }];
}

/** The events the saga's last write sends: the run's, its evaluation's and its trace's (and its incident's). */
function outcomeEvents(ctx: SagaContext, outcome: RunOutcome): OutboundEvent[] {
  const { runId } = ctx;
  const { costUsd, stepsCompleted } = ctx.progress();
  // The phase the run ends in: the saga writes these events before the run gets there.
  const summary = { phase: outcome.kind === 'succeeded' ? 'COMPLETED' : 'FAILED', costUsd, stepsCompleted };
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
