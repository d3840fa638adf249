import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RUN_EXPECTATIONS } from '../core/audit';
import type { ObservabilityMode } from '../core/policy';
import { runStateQuery } from '../workflows/messages';
import { governanceRecords } from './helpers/records';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { finalRunState } from './helpers/runs';

let stack: Stack;

/** The test stack's retry budget: a non-transient error is final on this attempt. */
const MAX_DOMAIN_ATTEMPTS = 3;

beforeAll(async () => {
  stack = await startStack({ maxDomainAttempts: MAX_DOMAIN_ATTEMPTS });
});
afterAll(() => stack?.close());
// startTrace is a run's first activity, so its fault cannot wait for the run id: each test adds
// it for every run and removes it here. Tests in a file run one after another.
afterEach(() => stack.faults.clear());

function failEveryTraceStart(): void {
  stack.faults.add({ activity: 'startTrace', mode: 'fail' });
}

async function tenantWithMode(mode: ObservabilityMode) {
  return stack.createTenant({ policy: { observabilityMode: mode } });
}

type Records = Awaited<ReturnType<typeof governanceRecords>>;

/** The guard's record in every mode: one FAILED start_trace ack carrying the mode and the error. */
function expectFailedTraceStartAck(records: Records, mode: ObservabilityMode): void {
  const failedAcks = records.acks.filter((a) => a.status === 'FAILED');
  expect(failedAcks).toHaveLength(1);
  expect(failedAcks[0]).toMatchObject({ domain: 'logs', action: 'start_trace', resultId: null, metadata: { observabilityMode: mode } });
  expect(failedAcks[0]!.error).toContain(`startTrace gave up after ${MAX_DOMAIN_ATTEMPTS} attempts`);
  expect(failedAcks[0]!.error).toContain('injected fault in startTrace');
  // Every other expectation is acked OK; start_trace never is.
  const ok = records.acks.filter((a) => a.status === 'OK').map((a) => `${a.domain}/${a.action}`);
  // A run the guard failed owes the lesson of it too (and declared it).
  const lesson = records.expectations.some((e) => e.domain === 'lessons') ? ['lessons/record_lesson'] : [];
  expect(ok.sort()).toEqual(
    [...RUN_EXPECTATIONS.filter((e) => e.action !== 'start_trace').map((e) => `${e.domain}/${e.action}`), ...lesson].sort(),
  );
  expect(records.acks.some((a) => a.status === 'ROLLED_BACK')).toBe(false);
}

/** A run that carried on without its trace: completed, with the trace written by the saga. */
async function expectCompletedWithoutTraceStart(runId: string, steps: number): Promise<Records> {
  const records = await governanceRecords(stack.db, runId);
  expect(records.steps.map((s) => s.stepIndex)).toEqual(Array.from({ length: steps }, (_, i) => i));
  expect(records.traces).toHaveLength(1);
  expect(records.traces[0]).toMatchObject({ status: 'completed', outcome: 'succeeded', rolledBack: false });
  expect(records.traces[0]!.completedAt).not.toBeNull();
  expect(records.incidents.filter((i) => i.dedupeKey === 'outcome')).toMatchObject([{ kind: 'none' }]);
  expect(records.evaluations.filter((e) => e.kind === 'final')).toMatchObject([{ decision: 'COMPLIANT' }]);
  expect(records.logs).toHaveLength(1);
  // The trace never started, so only the run's start is announced before its outcome.
  expect(records.events.map((e) => e.topic).sort()).toEqual(['policy.evaluated', 'run.completed', 'run.started', 'trace.completed']);
  return records;
}

describe('the observability guard, when a trace cannot start', () => {
  it('STRICT: fails the run before any step, with an incident', async () => {
    const tenant = await tenantWithMode('STRICT');
    failEveryTraceStart();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2), budgetUsd: 1.5 });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({
      phase: 'FAILED',
      status: 'failed',
      errorCode: 'OBSERVABILITY_REQUIRED',
      observabilityMode: 'STRICT',
      stepsCompleted: 0,
      costUsd: 0,
      startedAt: null,
      sagaPhase: 'EVENTS_PUBLISHED',
    });
    expect(run.errorMessage).toMatch(/trace could not start \(STRICT mode\): startTrace gave up after 3 attempts/);
    // The run keeps why it failed its observability requirement.
    expect(run.observabilityError).toMatch(/injected fault in startTrace/);
    expect(stack.faults.hits('startTrace')).toBe(MAX_DOMAIN_ATTEMPTS);

    const records = await governanceRecords(stack.db, runId);
    expectFailedTraceStartAck(records, 'STRICT');
    expect(records.steps).toHaveLength(0);
    // Not even the first policy check ran: the run never left CREATED before failing.
    expect(records.evaluations.filter((e) => e.kind === 'mid_run')).toHaveLength(0);
    expect(records.incidents.filter((i) => i.dedupeKey === 'outcome')).toMatchObject([
      { kind: 'failure', errorCode: 'OBSERVABILITY_REQUIRED', severity: 'HIGH', rolledBack: false },
    ]);
    expect(records.evaluations.filter((e) => e.kind === 'final')).toMatchObject([{ decision: 'COMPLIANT' }]);
    // The saga still closes the trace record the guard could not open, with the failed outcome.
    expect(records.traces).toMatchObject([{ status: 'completed', outcome: 'failed' }]);
    expect(records.events.map((e) => e.topic).sort()).toEqual(['incident.created', 'lesson.recorded', 'policy.evaluated', 'run.failed', 'trace.completed']);
    expect(records.expectations.map((e) => `${e.domain}/${e.action}`)).toContain('lessons/record_lesson');

    const result = await finalRunState(stack.client.workflow.getHandle(runId));
    expect(result).toMatchObject({ phase: 'FAILED', error: { code: 'OBSERVABILITY_REQUIRED' }, stepsCompleted: 0 });
  });

  it('DEGRADED: carries on, and marks the run degraded in the database, the API and the live query', async () => {
    const tenant = await tenantWithMode('DEGRADED');
    failEveryTraceStart();
    // The last step is slow, so the run can be looked at while it executes.
    const plan = [...simPlan(1), { skill: 'sim.llm', input: { prompt: 'slow step', latencyMs: 1500 } }];
    const runId = await stack.submitRun(tenant.apiKey, { plan, budgetUsd: 1.5 });
    const handle = stack.client.workflow.getHandle(runId);

    const executing = await stack.waitForPhase(runId, ['EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED', 'FAILED']);
    expect(executing.phase).toBe('EXECUTING');
    expect(executing).toMatchObject({ observabilityStatus: 'DEGRADED', observabilityMode: 'DEGRADED' });
    expect(executing.observabilityError).toMatch(/injected fault in startTrace/);
    const live = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(live.status).toBe(200);
    expect(live.body.run).toMatchObject({ phase: 'EXECUTING', observabilityStatus: 'DEGRADED' });
    expect(live.body.run.observabilityError).toMatch(/injected fault in startTrace/);
    expect(live.body.live).toMatchObject({ phase: 'EXECUTING', observabilityStatus: 'DEGRADED' });
    expect(live.body.trace).toBeNull();
    expect(await handle.query(runStateQuery)).toMatchObject({ observabilityStatus: 'DEGRADED' });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 2, observabilityStatus: 'DEGRADED', errorCode: null });
    expect(stack.faults.hits('startTrace')).toBe(MAX_DOMAIN_ATTEMPTS);

    const records = await expectCompletedWithoutTraceStart(runId, 2);
    expectFailedTraceStartAck(records, 'DEGRADED');
    expect(records.logs[0]!.record).toMatchObject({ observabilityStatus: 'DEGRADED', outcome: 'succeeded' });

    expect(await handle.result()).toMatchObject({ phase: 'COMPLETED', observabilityStatus: 'DEGRADED' });
    expect(await handle.query(runStateQuery)).toMatchObject({ phase: 'COMPLETED', observabilityStatus: 'DEGRADED' });
    const done = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(done.body.run).toMatchObject({ phase: 'COMPLETED', observabilityStatus: 'DEGRADED' });
    expect(done.body.trace).toMatchObject({ status: 'completed', steps: [{ stepIndex: 0 }, { stepIndex: 1 }] });
  });

  it('PERMISSIVE: carries on and leaves the observability status OK', async () => {
    const tenant = await tenantWithMode('PERMISSIVE');
    failEveryTraceStart();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2), budgetUsd: 1.5 });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({
      phase: 'COMPLETED',
      status: 'succeeded',
      stepsCompleted: 2,
      observabilityMode: 'PERMISSIVE',
      observabilityStatus: 'OK',
    });
    // Permissive runs on as if nothing happened, but the error is still kept on the run.
    expect(run.observabilityError).toMatch(/injected fault in startTrace/);
    expect(stack.faults.hits('startTrace')).toBe(MAX_DOMAIN_ATTEMPTS);

    const records = await expectCompletedWithoutTraceStart(runId, 2);
    expectFailedTraceStartAck(records, 'PERMISSIVE');
    expect(records.logs[0]!.record).toMatchObject({ observabilityStatus: 'OK' });

    const handle = stack.client.workflow.getHandle(runId);
    expect(await handle.result()).toMatchObject({ phase: 'COMPLETED', observabilityStatus: 'OK' });
    expect(await handle.query(runStateQuery)).toMatchObject({ observabilityStatus: 'OK' });
  });

  it('uses the API default (DEGRADED) for a tenant whose policy names no mode', async () => {
    const tenant = await stack.createTenant();
    failEveryTraceStart();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1), budgetUsd: 1.5 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', observabilityMode: 'DEGRADED', observabilityStatus: 'DEGRADED' });
    expectFailedTraceStartAck(await governanceRecords(stack.db, runId), 'DEGRADED');
  });
});
