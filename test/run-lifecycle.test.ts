import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_PHASE, RUN_STATUS, TENANT_ID } from '../core/search-attributes';
import { runs } from '../db/schema';
import { runStateQuery } from '../workflows/messages';
import { expectFullGovernanceRecords } from './helpers/records';
import { controlEvents, recordHistory } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

let stack: Stack;
let tenant: TestTenant;

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
});
afterAll(() => stack?.close());

describe('a governed run, end to end', () => {
  it('takes a 3-step sim.llm run to COMPLETED with every domain record written once', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(3), budgetUsd: 1.5 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 3, sagaPhase: 'EVENTS_PUBLISHED' });
    expect(run.costUsd).toBeGreaterThan(0);

    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.steps.map((s) => s.stepIndex)).toEqual([0, 1, 2]);
    expect(records.steps.reduce((sum, s) => sum + s.costUsd, 0)).toBeCloseTo(run.costUsd, 6);
    expect(records.incidents[0]).toMatchObject({ kind: 'none', severity: 'NONE' });
    expect(records.evaluations.find((e) => e.kind === 'final')).toMatchObject({ decision: 'COMPLIANT' });
    // One mid-run check before the first step; the default 30 s interval covers the rest.
    expect(records.evaluations.filter((e) => e.kind === 'mid_run').map((e) => [e.stepIndex, e.decision])).toEqual([[0, 'CONTINUE']]);
    expect(records.acks.every((a) => a.status === 'OK')).toBe(true);
    expect(records.events.map((e) => e.topic).sort()).toEqual(['policy.evaluated', 'run.completed', 'run.started', 'trace.completed', 'trace.started']);

    const handle = stack.client.workflow.getHandle(runId);
    // The stored run is final once finalizeRun commits; the workflow closes right after.
    expect(await handle.result()).toMatchObject({ phase: 'COMPLETED', status: 'succeeded' });
    const description = await handle.describe();
    expect(description.status.name).toBe('COMPLETED');
    expect(description.typedSearchAttributes.get(RUN_PHASE)).toBe('COMPLETED');
    expect(description.typedSearchAttributes.get(RUN_STATUS)).toBe('succeeded');
    expect(description.typedSearchAttributes.get(TENANT_ID)).toBe(tenant.tenantId);
    const state = await handle.query(runStateQuery);
    expect(state).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 3, totalSteps: 3 });

    const api = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(api.status).toBe(200);
    expect(api.body.run).toMatchObject({ id: runId, phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 3 });
    expect(api.body.trace.steps).toHaveLength(3);
    expect(api.body.incidents).toHaveLength(1);
    expect(api.body.policyEvaluations.map((e: { kind: string }) => e.kind)).toEqual(['mid_run', 'final']);
    expect(api.body.run.requestHash).toBeUndefined();

    if (process.env.RECORD_HISTORY) recordHistory(runId, process.env.RECORD_HISTORY);
  });

  it('fails a run whose authorization was denied, with an incident', async () => {
    // A budget above the policy's is denied and recorded (a viewer's submit is refused 403 instead: test/api-door.test.ts).
    const res = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(2), budgetUsd: 1_000 } });
    expect(res.status).toBe(202);
    expect(res.body.authorizationDecision).toBe('DENIED');
    const run = await stack.waitForPhase(res.body.runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed_policy', errorCode: 'AUTHORIZATION_DENIED', stepsCompleted: 0 });
    expect(run.authorizationReason).toMatch(/budget \$1000 is above the policy's/);
    const records = await expectFullGovernanceRecords(stack.db, res.body.runId);
    expect(records.incidents[0]).toMatchObject({ kind: 'failure', errorCode: 'AUTHORIZATION_DENIED' });
    expect(records.evaluations.find((e) => e.kind === 'final')).toMatchObject({ decision: 'VIOLATION' });
    expect(records.steps).toHaveLength(0);
  });

  it('denies a skill the tenant policy does not allow', async () => {
    const restricted = await stack.createTenant({ policy: { allowedSkills: ['llm.chat'] } });
    const res = await stack.request('POST', '/api/v1/runs', { apiKey: restricted.apiKey, body: { plan: simPlan(1) } });
    expect(res.body.authorizationDecision).toBe('DENIED');
    const run = await stack.waitForPhase(res.body.runId, 'terminal');
    expect(run).toMatchObject({ status: 'failed_policy', errorCode: 'AUTHORIZATION_DENIED' });
    expect(run.authorizationReason).toMatch(/sim\.llm/);
  });

  it('fails a run whose step still fails after its retries', async () => {
    const plan = [...simPlan(1), { skill: 'sim.llm', input: { prompt: 'broken', fail: true } }, ...simPlan(1)];
    const runId = await stack.submitRun(tenant.apiKey, { plan });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'STEP_FAILED', stepsCompleted: 1 });
    expect(run.errorMessage).toMatch(/step 2 \(sim\.llm\) failed: simulated failure on attempt 3/);
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.incidents[0]).toMatchObject({ kind: 'failure', errorCode: 'STEP_FAILED', severity: 'HIGH' });
    expect(records.events.find((e) => e.topic === 'run.failed')!.payload).toMatchObject({ phase: 'FAILED', code: 'STEP_FAILED', stepsCompleted: 1 });
  });

  it('closes a failed run through GOVERNANCE_CHECK and FINALIZING, refusing a stop that arrives while it closes', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'broken', fail: true } }] });
    // Holds the saga's first write, so the run is seen closing and a stop arrives meanwhile.
    stack.faults.add({ activity: 'createIncident', runId, mode: 'stall', stallMs: 1500, times: 1 });
    const closing = await stack.waitForPhase(runId, ['GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED', 'FAILED']);
    expect(closing).toMatchObject({ phase: 'GOVERNANCE_CHECK', status: 'running' });
    const stop = await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey, body: { reason: 'too late' } });
    expect(stop.status).toBe(202);

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'STEP_FAILED' });
    await expectFullGovernanceRecords(stack.db, runId);
    // The workflow closes only once every signal it received is handled and recorded.
    await stack.client.workflow.getHandle(runId).result().catch(() => undefined);
    const refusals = (await controlEvents(stack.db, runId)).filter((e) => !e.accepted).map((e) => [e.kind, e.detail]);
    expect(refusals).toEqual([['stop', 'run cannot be stopped: it is closing (writing its governance and final records)']]);
    if (process.env.RECORD_HISTORIES) recordHistory(runId, `run-failed-closes-visibly-stop-refused-${process.env.RECORD_HISTORIES}`);
  });

  it('lets a step that fails twice succeed on its third attempt', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'flaky', failAttempts: 2 } }] });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 1 });
  });

  it('refuses, before it runs, the step that would take the run over its budget', async () => {
    // Each step reports 10,000 completion tokens = $0.06 at sim-1 prices, known from its input; the budget holds one.
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(4, { completionTokens: 10_000 }), budgetUsd: 0.1 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed_policy', errorCode: 'BUDGET_EXCEEDED', stepsCompleted: 1 });
    expect(run.costUsd).toBeLessThanOrEqual(0.1);
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.incidents[0]).toMatchObject({ kind: 'failure', errorCode: 'BUDGET_EXCEEDED' });
    expect(records.steps).toHaveLength(1);
    const final = records.evaluations.find((e) => e.kind === 'final')!;
    expect(final).toMatchObject({ decision: 'VIOLATION', violations: ['BUDGET_EXCEEDED'] });
    expect(final.reason).toMatch(/predicted overrun: step 2 \(sim\.llm\) would cost at most \$0\.06/);
  });

  it('gives the same run and one workflow for a repeated Idempotency-Key', async () => {
    const body = { plan: simPlan(1) };
    const headers = { 'idempotency-key': `key-${Date.now()}` };
    const first = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body, headers });
    const firstExecution = (await stack.client.workflow.getHandle(first.body.runId).describe()).runId;
    const second = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body, headers });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.runId).toBe(first.body.runId);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    await stack.waitForPhase(first.body.runId, 'terminal');
    const third = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body, headers });
    expect(third.body.runId).toBe(first.body.runId);
    expect((await stack.client.workflow.getHandle(first.body.runId).describe()).runId).toBe(firstExecution);

    const rows = await stack.db
      .select({ id: runs.id })
      .from(runs)
      .where(and(eq(runs.tenantId, tenant.tenantId), eq(runs.idempotencyKey, headers['idempotency-key'])));
    expect(rows).toHaveLength(1);

    const other = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(2) }, headers });
    expect(other.status).toBe(422);
    expect(other.body.error).toMatch(/different request body/);
  });

  it('lists the tenant runs by status and phase, paged', async () => {
    const res = await stack.request('GET', '/api/v1/runs?phase=COMPLETED&limit=2', { apiKey: tenant.apiKey });
    expect(res.status).toBe(200);
    expect(res.body.runs).toHaveLength(2);
    expect(res.body.runs.every((r: { phase: string }) => r.phase === 'COMPLETED')).toBe(true);
    const next = await stack.request('GET', `/api/v1/runs?phase=COMPLETED&limit=2&cursor=${res.body.nextCursor}`, { apiKey: tenant.apiKey });
    expect(next.status).toBe(200);
    const ids = new Set([...res.body.runs, ...next.body.runs].map((r: { runId: string }) => r.runId));
    expect(ids.size).toBe(res.body.runs.length + next.body.runs.length);
    const failed = await stack.request('GET', '/api/v1/runs?status=failed_policy', { apiKey: tenant.apiKey });
    expect(failed.body.runs.length).toBeGreaterThanOrEqual(2);
    expect(failed.body.runs.every((r: { status: string }) => r.status === 'failed_policy')).toBe(true);
  });

  it('serves health and Prometheus metrics', async () => {
    const health = await stack.request('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ postgres: 'ok', redis: 'ok', temporal: 'ok' });
    const metrics = await stack.request('GET', '/metrics');
    expect(metrics.body).toMatch(/governed_runs_submitted_total\{decision="ALLOWED"\} \d+/);
    const workerMetrics = await stack.workerMetrics.registry.metrics();
    expect(workerMetrics).toMatch(/governed_runs_finished_total\{status="succeeded"\} [1-9]/);
    expect(workerMetrics).toMatch(/governed_run_phase_transitions_total\{from="EXECUTING",to="GOVERNANCE_CHECK"\} [1-9]/);
    expect(workerMetrics).toMatch(/governed_step_duration_seconds_count\{skill="sim.llm",outcome="ok"\} [1-9]/);
  });
});
