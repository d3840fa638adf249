import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIncidentActivities } from '../activities/incidents';
import { RUN_EXPECTATIONS } from '../core/audit';
import type { SagaPhase } from '../core/saga';
import { runStateQuery, type RunState } from '../workflows/messages';
import { expectFullGovernanceRecords, governanceRecords } from './helpers/records';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { finalRunState, recordHistory } from './helpers/runs';

let stack: Stack;
let tenant: TestTenant;

/** The test stack's retry budget: a non-transient error is final on this attempt. */
const MAX_DOMAIN_ATTEMPTS = 3;

beforeAll(async () => {
  stack = await startStack({ maxDomainAttempts: MAX_DOMAIN_ATTEMPTS });
  tenant = await stack.createTenant();
});
afterAll(() => stack?.close());

/** One slow step, so a fault for the run is in place long before the saga starts. */
const SLOW_PLAN = simPlan(1, { latencyMs: 1000 });
const SUCCESS_TOPICS = ['run.completed', 'trace.completed', 'policy.evaluated', 'incident.created'];

type Records = Awaited<ReturnType<typeof governanceRecords>>;

function acksOf(records: Records, status: 'OK' | 'FAILED' | 'ROLLED_BACK') {
  return records.acks.filter((a) => a.status === status);
}

function key(a: { domain: string; action: string }): string {
  return `${a.domain}/${a.action}`;
}

const BASE_OK = ['logs/start_trace', 'logs/create_log_record', 'orchestrator/finalize_run'];

interface SagaFailureCase {
  activity: 'createIncident' | 'evaluatePolicy' | 'completeTrace';
  /** The saga phase reached before the failing step. */
  reached: SagaPhase;
  /** What the compensations undo, newest first: ack key and the saga phase it undoes. */
  undone: { ack: string; phase: SagaPhase }[];
  /** OK acks beyond the base ones: the steps that committed before the failure. */
  committedOk: string[];
}

const FAILURE_CASES: SagaFailureCase[] = [
  { activity: 'createIncident', reached: 'NOT_STARTED', undone: [], committedOk: [] },
  {
    activity: 'evaluatePolicy',
    reached: 'INCIDENT_CREATED',
    undone: [{ ack: 'incidents/create_incident', phase: 'INCIDENT_CREATED' }],
    committedOk: ['incidents/create_incident'],
  },
  {
    activity: 'completeTrace',
    reached: 'POLICY_EVALUATED',
    undone: [
      { ack: 'policies/evaluate_policy', phase: 'POLICY_EVALUATED' },
      { ack: 'incidents/create_incident', phase: 'INCIDENT_CREATED' },
    ],
    committedOk: ['incidents/create_incident', 'policies/evaluate_policy'],
  },
];

/** Polls the live saga phase until it is `phase`, while the failing step is still being retried. */
async function observeSagaPhase(runId: string, phase: SagaPhase, timeoutMs = 15_000): Promise<RunState> {
  const handle = stack.client.workflow.getHandle(runId);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await handle.query(runStateQuery);
    if (state.sagaPhase === phase) return state;
    if (state.sagaPhase === 'ROLLED_BACK' || state.phase === 'COMPLETED' || state.phase === 'FAILED' || Date.now() > deadline) {
      throw new Error(`run ${runId} never showed saga phase ${phase} (now ${state.phase}/${state.sagaPhase})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the governance saga', () => {
  describe.each(FAILURE_CASES)('when $activity keeps failing', ({ activity, reached, undone, committedOk }) => {
    it('rolls back every write the saga made, with one ROLLED_BACK ack per undone step, and fails the run', async () => {
      const runId = await stack.submitRun(tenant.apiKey, { plan: SLOW_PLAN, budgetUsd: 1.5 });
      stack.faults.add({ activity, runId, mode: 'fail' });

      // While the failing step is being retried the live state shows how far the saga got.
      if (reached !== 'NOT_STARTED') {
        const live = await observeSagaPhase(runId, reached);
        expect(live).toMatchObject({ phase: 'GOVERNANCE_CHECK', status: 'running' });
      }

      const run = await stack.waitForPhase(runId, 'terminal');
      expect(run).toMatchObject({
        phase: 'FAILED',
        status: 'failed',
        errorCode: 'GOVERNANCE_ERROR',
        sagaPhase: 'ROLLED_BACK',
        stepsCompleted: 1,
      });
      expect(run.errorMessage).toContain(`governance saga failed after ${reached}`);
      expect(run.errorMessage).toContain(`${activity} gave up after ${MAX_DOMAIN_ATTEMPTS} attempts`);
      // A non-transient failure is final after the retry budget, not retried forever.
      expect(stack.faults.hits(activity, runId)).toBe(MAX_DOMAIN_ATTEMPTS);

      const result = await finalRunState(stack.client.workflow.getHandle(runId));
      expect(result).toMatchObject({ phase: 'FAILED', status: 'failed', sagaPhase: 'ROLLED_BACK', error: { code: 'GOVERNANCE_ERROR' } });

      const records = await governanceRecords(stack.db, runId);

      // Rows: whatever the saga wrote is still there (never deleted) and marked rolled back.
      const outcomeIncidents = records.incidents.filter((i) => i.dedupeKey === 'outcome');
      const finalEvaluations = records.evaluations.filter((e) => e.kind === 'final');
      const incidentWritten = activity !== 'createIncident';
      const evaluationWritten = activity === 'completeTrace';
      expect(outcomeIncidents).toHaveLength(incidentWritten ? 1 : 0);
      expect(outcomeIncidents.every((i) => i.rolledBack)).toBe(true);
      expect(outcomeIncidents.every((i) => i.kind === 'none')).toBe(true);
      expect(finalEvaluations).toHaveLength(evaluationWritten ? 1 : 0);
      expect(finalEvaluations.every((e) => e.rolledBack)).toBe(true);
      // The trace was started but its completion never committed: nothing to undo there.
      expect(records.traces).toHaveLength(1);
      expect(records.traces[0]).toMatchObject({ status: 'running', rolledBack: false, completedAt: null });
      // Mid-run records are not part of the saga and stay as they were.
      expect(records.evaluations.filter((e) => e.kind === 'mid_run').every((e) => !e.rolledBack)).toBe(true);
      expect(records.steps).toHaveLength(1);

      // Acks: exactly one ROLLED_BACK per undone step, naming the phase it undoes.
      const rolledBack = acksOf(records, 'ROLLED_BACK');
      expect(rolledBack.map(key).sort()).toEqual(undone.map((u) => u.ack).sort());
      for (const { ack, phase } of undone) {
        const [row] = rolledBack.filter((a) => key(a) === ack);
        expect(row).toMatchObject({ rolledBack: true, metadata: { rollbackPhase: phase, rollbackSuccess: true } });
        expect(row!.rollbackReason).toContain(`governance saga failed after ${reached}`);
        expect(row!.resultId).not.toBeNull();
      }
      const undoneIds = rolledBack.map((a) => a.resultId).sort();
      expect(undoneIds).toEqual([...outcomeIncidents, ...finalEvaluations].map((r) => r.id).sort());
      // Compensations ran newest first.
      const byTime = [...rolledBack].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime()).map(key);
      expect(byTime).toEqual(undone.map((u) => u.ack));

      expect(acksOf(records, 'OK').map(key).sort()).toEqual([...BASE_OK, ...committedOk].sort());
      expect(acksOf(records, 'FAILED')).toHaveLength(0);
      expect(records.logs).toHaveLength(1);
      expect(records.logs[0]!.record).toMatchObject({ outcome: 'failed', sagaPhase: 'ROLLED_BACK', error: { code: 'GOVERNANCE_ERROR' } });

      // Events: no success event left the saga; the run's failure is announced once.
      expect(records.events.map((e) => e.topic)).toEqual(['trace.started', 'run.started', 'run.failed']);
      expect(records.events[2]!.payload).toMatchObject({ code: 'GOVERNANCE_ERROR', sagaPhase: 'ROLLED_BACK', runId });
      expect(records.events.some((e) => SUCCESS_TOPICS.includes(e.topic))).toBe(false);
    });
  });

  it('writes one rollback ack for a compensation that had to be retried', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: SLOW_PLAN, budgetUsd: 1.5 });
    stack.faults.add({ activity: 'completeTrace', runId, mode: 'fail' });
    stack.faults.add({ activity: 'rollbackIncident', runId, mode: 'fail', times: 1 });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'GOVERNANCE_ERROR', sagaPhase: 'ROLLED_BACK' });
    expect(stack.faults.hits('rollbackIncident', runId)).toBe(1);

    let records = await governanceRecords(stack.db, runId);
    const incidentRollbacks = () =>
      records.acks.filter((a) => a.status === 'ROLLED_BACK' && key(a) === 'incidents/create_incident');
    expect(incidentRollbacks()).toHaveLength(1);
    expect(incidentRollbacks()[0]!.metadata).toMatchObject({ rollbackPhase: 'INCIDENT_CREATED' });
    expect(acksOf(records, 'ROLLED_BACK').map(key).sort()).toEqual(['incidents/create_incident', 'policies/evaluate_policy']);
    const [incident] = records.incidents.filter((i) => i.dedupeKey === 'outcome');
    expect(incident!.rolledBack).toBe(true);

    // A retry that arrives after the compensation committed (its completion was lost) must
    // change nothing: the same real activity, run again against the database.
    const { rollbackIncident } = createIncidentActivities(stack.activityDeps);
    await expect(rollbackIncident({ runId, reason: 'late retry', undoesPhase: 'INCIDENT_CREATED' })).resolves.toEqual({ undone: true });
    records = await governanceRecords(stack.db, runId);
    expect(incidentRollbacks()).toHaveLength(1);
    expect(incidentRollbacks()[0]!.rollbackReason).toContain('governance saga failed after POLICY_EVALUATED');
    expect(records.incidents.filter((i) => i.dedupeKey === 'outcome')).toHaveLength(1);
  });

  it('finalizes the run when a compensation gives up, still runs the others, and names what it could not undo', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: SLOW_PLAN, budgetUsd: 1.5 });
    stack.faults.add({ activity: 'completeTrace', runId, mode: 'fail' });
    stack.faults.add({ activity: 'rollbackPolicyEvaluation', runId, mode: 'fail' });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'GOVERNANCE_ERROR', sagaPhase: 'ROLLBACK_INCOMPLETE' });
    expect(run.errorMessage).toContain('governance saga failed after POLICY_EVALUATED');
    expect(run.errorMessage).toContain(`could not undo POLICY_EVALUATED: rollbackPolicyEvaluation gave up after ${MAX_DOMAIN_ATTEMPTS} attempts`);
    expect(stack.faults.hits('rollbackPolicyEvaluation', runId)).toBe(MAX_DOMAIN_ATTEMPTS);

    const records = await governanceRecords(stack.db, runId);
    // The older compensation still ran; the evaluation it could not undo stands, unmarked.
    expect(acksOf(records, 'ROLLED_BACK').map(key)).toEqual(['incidents/create_incident']);
    expect(records.evaluations.find((e) => e.kind === 'final')).toMatchObject({ rolledBack: false });
    // Finalized: its log record and finalize_run ack, and the workflow failed with the run's code.
    expect(acksOf(records, 'OK').map(key).sort()).toEqual([...BASE_OK, 'incidents/create_incident', 'policies/evaluate_policy'].sort());
    expect(records.logs[0]!.record).toMatchObject({ outcome: 'failed', sagaPhase: 'ROLLBACK_INCOMPLETE', error: { code: 'GOVERNANCE_ERROR' } });
    const result = await finalRunState(stack.client.workflow.getHandle(runId));
    expect(result).toMatchObject({ phase: 'FAILED', sagaPhase: 'ROLLBACK_INCOMPLETE', error: { code: 'GOVERNANCE_ERROR' } });
    if (process.env.RECORD_HISTORIES) recordHistory(runId, `saga-compensation-gives-up-${process.env.RECORD_HISTORIES}`);
  });

  it('commits normally when each saga step fails twice and then succeeds', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: SLOW_PLAN, budgetUsd: 1.5 });
    for (const activity of ['createIncident', 'evaluatePolicy', 'completeTrace']) {
      stack.faults.add({ activity, runId, mode: 'fail', times: MAX_DOMAIN_ATTEMPTS - 1 });
    }

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', sagaPhase: 'EVENTS_PUBLISHED', errorCode: null });
    for (const activity of ['createIncident', 'evaluatePolicy', 'completeTrace']) {
      expect(stack.faults.hits(activity, runId)).toBe(MAX_DOMAIN_ATTEMPTS - 1);
    }
    expect(stack.faults.hits('rollbackIncident', runId)).toBe(0);

    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.acks).toHaveLength(RUN_EXPECTATIONS.length);
    expect(acksOf(records, 'ROLLED_BACK')).toHaveLength(0);
    expect(records.incidents.some((i) => i.rolledBack)).toBe(false);
    expect(records.evaluations.some((e) => e.rolledBack)).toBe(false);
    expect(records.traces[0]).toMatchObject({ status: 'completed', outcome: 'succeeded', rolledBack: false });
    expect(records.events.map((e) => e.topic).sort()).toEqual(['policy.evaluated', 'run.completed', 'run.started', 'trace.completed', 'trace.started']);
  });

  it('shows the saga progress on the stored run, the log record and the workflow result', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2), budgetUsd: 1.5 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', sagaPhase: 'EVENTS_PUBLISHED' });

    const handle = stack.client.workflow.getHandle(runId);
    const result = await handle.result();
    expect(result).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', sagaPhase: 'EVENTS_PUBLISHED', stepsCompleted: 2 });
    expect(await handle.query(runStateQuery)).toMatchObject({ sagaPhase: 'EVENTS_PUBLISHED' });

    const api = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(api.status).toBe(200);
    expect(api.body.run).toMatchObject({ sagaPhase: 'EVENTS_PUBLISHED' });
    expect(api.body.log.record).toMatchObject({ sagaPhase: 'EVENTS_PUBLISHED', outcome: 'succeeded' });
    // The event that announces the outcome names the phase the run ends in, not the one it was in.
    const { events } = await expectFullGovernanceRecords(stack.db, runId);
    expect(events.find((e) => e.topic === 'run.completed')!.payload).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2 });
  });
  it('undoes a trace completion that committed before its step failed, and withdraws its events', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: SLOW_PLAN, budgetUsd: 1.5 });
    // Each attempt commits the completion (idempotently) and then reports failure.
    stack.faults.add({ activity: 'completeTrace', runId, mode: 'failAfter' });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'GOVERNANCE_ERROR', sagaPhase: 'ROLLED_BACK' });
    expect(stack.faults.hits('completeTrace', runId)).toBe(MAX_DOMAIN_ATTEMPTS);

    const records = await governanceRecords(stack.db, runId);
    expect(records.traces[0]).toMatchObject({ status: 'completed', rolledBack: true });
    const rolledBack = acksOf(records, 'ROLLED_BACK');
    expect(rolledBack.map(key)).toEqual(expect.arrayContaining(['logs/complete_trace', 'policies/evaluate_policy', 'incidents/create_incident']));
    expect(rolledBack).toHaveLength(3);
    expect(rolledBack.find((a) => key(a) === 'logs/complete_trace')!.metadata).toMatchObject({ rollbackPhase: 'TRACE_COMPLETED' });

    const saga = records.events.filter((e) => e.dedupeKey !== `${runId}:run.failed:rolled-back` && !e.topic.endsWith('.started'));
    expect(saga.map((e) => e.topic).sort()).toEqual(['policy.evaluated', 'run.completed', 'trace.completed']);
    expect(saga.every((e) => e.retractedAt !== null)).toBe(true);
    // The run and its trace did start: those events stand.
    expect(records.events.filter((e) => e.topic.endsWith('.started')).map((e) => [e.topic, e.retractedAt])).toEqual([
      ['trace.started', null],
      ['run.started', null],
    ]);
    const closing = records.events.find((e) => e.dedupeKey === `${runId}:run.failed:rolled-back`);
    expect(closing).toMatchObject({ topic: 'run.failed', retractedAt: null });
  });
});
