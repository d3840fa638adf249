import { allHandlersFinished, condition, setHandler } from '@temporalio/workflow';
import type { RunOutcome } from '../core/outcome';
import {
  pauseSignal,
  policyChangedSignal,
  resumeSignal,
  resumeUpdate,
  resumeUpdateByItsFormerName,
  runStateQuery,
  stopSignal,
  type RunState,
  type RunWorkflowInput,
} from './messages';
import { failed } from './failures';
import { RunLifecycle } from './run-lifecycle';

/**
 * A governed run, as the seed's phase table reads (§13.4):
 * CREATED → AUTHORIZED → EXECUTING → GOVERNANCE_CHECK → FINALIZING → COMPLETED | FAILED.
 * Every run, a failing one too, ends through its governance records and its final record.
 */
export async function runWorkflow(input: RunWorkflowInput): Promise<RunState> {
  const run = new RunLifecycle(input);
  const { governor } = run;
  setHandler(runStateQuery, () => run.view());
  setHandler(pauseSignal, (request) => governor.onPause(request));
  setHandler(resumeSignal, (request) => governor.onResumeSignal(request));
  for (const update of [resumeUpdate, resumeUpdateByItsFormerName]) {
    setHandler(update, (request) => governor.onResumeUpdate(request), { validator: (request) => governor.validateResume(request) });
  }
  setHandler(stopSignal, (request) => governor.onStop(request));
  setHandler(policyChangedSignal, (request) => governor.onPolicyChanged(request));

  const outcome = await run.outcomeOf(() => (input.continued ? run.executePlan(input.continued.nextStep, input.continued.agentTurn) : authorizeAndExecute(run)));
  await governor.close(outcome);
  await run.closeRecorded(async () => {
    const governed = await run.governanceCheck(outcome);
    await run.finalize(governed);
  });
  // Signals that arrived late are still recorded before the workflow closes.
  await condition(allHandlersFinished);
  return run.result();
}

/** CREATED (the trace starts, the authorization stands) → AUTHORIZED → EXECUTING, then the plan. */
async function authorizeAndExecute(run: RunLifecycle): Promise<RunOutcome> {
  const traceRefused = await run.startTrace();
  if (traceRefused) return traceRefused;
  const { authorization } = run.input;
  if (authorization.decision === 'DENIED') {
    return failed('failed_policy', 'AUTHORIZATION_DENIED', `authorization denied: ${authorization.reason ?? 'no reason given'}`);
  }
  await run.transition('AUTHORIZED', 'queued');
  await run.transition('EXECUTING', 'running');
  return run.executePlan(0);
}
