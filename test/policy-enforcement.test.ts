import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyRules } from '../core/policy';
import { savePolicy, currentPolicy } from '../db/tenancy';
import { PAUSE_REASON } from '../core/search-attributes';
import { controlPushes, policies } from '../db/schema';
import { expectFullGovernanceRecords, governanceRecords } from './helpers/records';
import { midRunEvaluations, storedRun, waitForPause, waitForSteps } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

/** Each step takes `latencyMs` and costs about $0.006 (1,000 completion tokens at sim-1 prices). */
function slowPlan(steps: number, latencyMs: number) {
  return simPlan(steps, { latencyMs, completionTokens: 1000 });
}

async function putPolicy(tenant: TestTenant, changes: Partial<PolicyRules>) {
  const current = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
  expect(current.status).toBe(200);
  const res = await stack.request('PUT', '/api/v1/policies', { apiKey: tenant.apiKey, body: { ...current.body.rules, ...changes } });
  expect(res.status).toBe(200);
  return res.body as { version: number; signalledRuns: number };
}

describe('policies API', () => {
  it('versions every change, validates it, and is for admins only', async () => {
    const tenant = await stack.createTenant();
    const before = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    expect(before.body.version).toBe(1);
    const saved = await putPolicy(tenant, { maxSteps: 7 });
    expect(saved.version).toBe(2);
    expect((await currentPolicy(stack.db, tenant.tenantId)).rules.maxSteps).toBe(7);

    const invalid = await stack.request('PUT', '/api/v1/policies', {
      apiKey: tenant.apiKey,
      body: { ...before.body.rules, pauseSlaSeconds: 5, pauseWarningSeconds: 10 },
    });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error).toMatch(/pauseWarningSeconds must be shorter/);
    const partial = await stack.request('PUT', '/api/v1/policies', { apiKey: tenant.apiKey, body: { maxSteps: 3 } });
    expect(partial.status).toBe(400);
    expect((await currentPolicy(stack.db, tenant.tenantId)).version).toBe(2);

    const member = await stack.createKey(tenant.tenantId, 'member');
    const forbidden = await stack.request('GET', '/api/v1/policies', { apiKey: member });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error).toMatch(/needs admin/);
  });

  it('a PUT of the current policy answers its version with changed: false, writes no version and pushes nothing; a real change does both', async () => {
    const own = await stack.createTenant();
    const runId = await stack.submitRun(own.apiKey, { plan: slowPlan(3, 1500) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const current = await stack.request('GET', '/api/v1/policies', { apiKey: own.apiKey });
    const versions = async () => (await stack.db.select().from(policies).where(eq(policies.tenantId, own.tenantId))).length;
    const pushes = async () => (await stack.db.select().from(controlPushes).where(eq(controlPushes.tenantId, own.tenantId))).length;
    const [versionsBefore, pushesBefore] = [await versions(), await pushes()];

    const again = await stack.request('PUT', '/api/v1/policies', { apiKey: own.apiKey, body: current.body.rules });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ version: current.body.version, rules: current.body.rules, changed: false });
    // The same rules in another order, and a defaulted rule left out, are the same policy.
    const { pauseOnThreshold: _defaulted, ...shuffled } = Object.fromEntries(Object.entries(current.body.rules as Record<string, unknown>).reverse());
    expect((await stack.request('PUT', '/api/v1/policies', { apiKey: own.apiKey, body: shuffled })).body).toMatchObject({ version: current.body.version, changed: false });
    expect([await versions(), await pushes()]).toEqual([versionsBefore, pushesBefore]);

    const changed = await stack.request('PUT', '/api/v1/policies', { apiKey: own.apiKey, body: { ...current.body.rules, maxSteps: current.body.rules.maxSteps + 1 } });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ version: current.body.version + 1, changed: true, push: expect.any(String) });
    expect([await versions(), await pushes()]).toEqual([versionsBefore + 1, pushesBefore + 1]);
    await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: own.apiKey });
  });
});

describe('policy enforced mid-run', () => {
  it('BUDGET_EXCEEDED: a budget cut below the spend terminates the run at its next step', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 3600 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(6, 700), budgetUsd: 1 });
    await waitForSteps(stack.db, runId, 1);
    const { signalledRuns } = await putPolicy(tenant, { budgetPerRunUsd: 0.001 });
    expect(signalledRuns).toBe(1);
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed_policy', errorCode: 'BUDGET_EXCEEDED' });
    expect(run.stepsCompleted).toBeLessThan(6);
    const checks = await midRunEvaluations(stack.db, runId);
    expect(checks.at(-1)).toMatchObject({ decision: 'TERMINATE', policyVersion: 2 });
    expect(checks.at(-1)!.violations).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'BUDGET_EXCEEDED' })]));
    await expectFullGovernanceRecords(stack.db, runId);
  });

  it('TENANT_SUSPENDED: suspending the tenant terminates its running run', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 3600 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(6, 700) });
    await waitForSteps(stack.db, runId, 1);
    const suspended = await stack.request('POST', '/api/v1/tenant/suspend', { apiKey: tenant.apiKey });
    expect(suspended.body).toMatchObject({ status: 'suspended', signalledRuns: 1 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ status: 'failed_policy', errorCode: 'POLICY_TERMINATED' });
    expect(run.errorMessage).toMatch(/TENANT_SUSPENDED/);
    await expectFullGovernanceRecords(stack.db, runId);
    // A suspended tenant's new runs are denied at submit.
    const denied = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan: simPlan(1) } });
    expect(denied.body.authorizationDecision).toBe('DENIED');
    const active = await stack.request('POST', '/api/v1/tenant/activate', { apiKey: tenant.apiKey });
    expect(active.body.status).toBe('active');
  });

  it('MANUAL_STOP: a stop from the API ends the run cancelled before its next step', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 3600 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(6, 700) });
    await waitForSteps(stack.db, runId, 1);
    const stop = await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey, body: { reason: 'wrong prompt' } });
    expect(stop.status).toBe(202);
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED' });
    expect(run.errorMessage).toMatch(/wrong prompt/);
    expect((await midRunEvaluations(stack.db, runId)).at(-1)!.violations).toEqual([expect.objectContaining({ type: 'MANUAL_STOP' })]);
    await expectFullGovernanceRecords(stack.db, runId);
    const again = await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey });
    expect(again.status).toBe(409);
  });

  it('LIMIT_CHANGED: a tightened limit pauses the run until an admin accepts it (the push)', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 3600 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(5, 600) });
    await waitForSteps(stack.db, runId, 1);
    await putPolicy(tenant, { maxSteps: 20 });
    const paused = await waitForPause(stack.db, runId);
    expect(paused.pauseReason).toBe('POLICY_CHANGE');
    // The push made the very next step boundary check, not the 1-hour interval.
    expect(paused.stepsCompleted).toBeLessThanOrEqual(2);
    const checks = await midRunEvaluations(stack.db, runId);
    expect(checks.at(-1)).toMatchObject({ decision: 'PAUSE' });
    expect(checks.at(-1)!.reason).toMatch(/LIMIT_CHANGED: policy v1 -> v2: max steps 50 -> 20/);
    // The pause is stored by a local write; Temporal has the upserted reason once that workflow task completes.
    const reason = await waitFor('the pause reason in Temporal', async () =>
      (await stack.client.workflow.getHandle(runId).describe()).typedSearchAttributes.get(PAUSE_REASON),
    );
    expect(reason).toBe('POLICY_CHANGE');

    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, body: { reason: 'limit is fine' } });
    expect(resumed.status).toBe(200);
    expect(resumed.body.state.pause).toBeNull();
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 5, pauseReason: null });
    expect((await midRunEvaluations(stack.db, runId)).at(-1)).toMatchObject({ decision: 'CONTINUE', policyVersion: 2 });
    const records = await expectFullGovernanceRecords(stack.db, runId);
    // The run finished under the version it accepted on resume, not the one it was submitted under.
    expect(records.evaluations.find((e) => e.kind === 'final')).toMatchObject({ decision: 'COMPLIANT', policyVersion: 2 });
  });

  it('a change with no push takes effect once the check interval has passed (the timer)', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 2 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(12, 500) });
    await waitForSteps(stack.db, runId, 1);
    // Written straight to the database: no signal reaches the run.
    const current = await currentPolicy(stack.db, tenant.tenantId);
    await savePolicy(stack.db, tenant.tenantId, { ...current.rules, enabled: false }, 'test');
    const paused = await waitForPause(stack.db, runId);
    expect(paused.pauseReason).toBe('POLICY_CHANGE');
    const checks = await midRunEvaluations(stack.db, runId);
    const first = checks[0]!;
    const pausing = checks.at(-1)!;
    expect(pausing.reason).toMatch(/POLICY_DISABLED/);
    // Steps ran unchecked until two seconds of workflow time had passed since the previous check.
    expect(pausing.createdAt.getTime() - checks.at(-2)!.createdAt.getTime()).toBeGreaterThanOrEqual(1900);
    expect(pausing.stepIndex!).toBeGreaterThan(first.stepIndex! + 1);

    await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ status: 'cancelled', errorCode: 'STOPPED' });
    await expectFullGovernanceRecords(stack.db, runId);
  });

  it('records crossing the warning threshold as a risk level and a threshold.exceeded event', async () => {
    const tenant = await stack.createTenant({ policy: { warningThresholdPct: 50 } });
    // $0.006 per step against a $0.02 budget: the second step crosses 50%.
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(3, 0), budgetUsd: 0.02 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', riskLevel: 'HIGH' });
    const { events } = await governanceRecords(stack.db, runId);
    const threshold = events.filter((e) => e.topic === 'threshold.exceeded');
    expect(threshold).toHaveLength(1);
    expect(threshold[0]!.payload).toMatchObject({ stepIndex: 1, warningAtUsd: 0.01 });
  });

  it('SKIP: with mid-run checks disabled, a suspended tenant does not stop the run', async () => {
    const tenant = await stack.createTenant({ policy: { midRunChecks: false, checkIntervalSeconds: 0 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan(3, 500) });
    await waitForSteps(stack.db, runId, 1);
    await stack.request('POST', '/api/v1/tenant/suspend', { apiKey: tenant.apiKey });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run.phase).toBe('COMPLETED');
    const checks = await midRunEvaluations(stack.db, runId);
    expect(checks.length).toBeGreaterThanOrEqual(2);
    expect(checks.every((c) => c.decision === 'SKIP')).toBe(true);
    expect((await storedRun(stack.db, runId)).status).toBe('succeeded');
  });
});

describe('checkPolicy retried after it committed', () => {
  it('returns the recorded decision, not a fresh one', async () => {
    const { createPolicyActivities } = await import('../activities/policies');
    const { setTenantStatus } = await import('../db/tenancy');
    const { checkPolicy } = createPolicyActivities(stack.activityDeps);
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    await stack.waitForPhase(runId, 'terminal');
    const request = {
      runId,
      tenantId: tenant.tenantId,
      checkNumber: 99,
      stepIndex: 0,
      knownPolicyVersion: 1,
      runBudgetUsd: 1,
      costUsd: 0,
      tokens: 0,
      stepsCompleted: 0,
      remainingSkills: ['sim.llm' as const],
      nextStepApproved: false,
      stopRequested: false,
    };
    expect((await checkPolicy(request)).decision).toBe('CONTINUE');
    await setTenantStatus(stack.db, tenant.tenantId, 'suspended');
    expect((await checkPolicy(request)).decision).toBe('CONTINUE');
    expect((await checkPolicy({ ...request, checkNumber: 100 })).decision).toBe('TERMINATE');
    const recorded = (await midRunEvaluations(stack.db, runId)).filter((e) => e.dedupeKey === 'check:99');
    expect(recorded).toHaveLength(1);
  });
});
