import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tenantStatusPush } from '../dispatch/control-pusher';
import { TENANT_SUSPENDED_REASON, pauseSignal, runStateQuery, stopSignal } from '../workflows/messages';
import { expectFullGovernanceRecords } from './helpers/records';
import { controlEvents, storedRun, waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * Issue 17 item 10, on the real stack: who a pause is recorded as made by, who may always lift a
 * pause, and a tenant's suspension reaching its paused runs.
 */

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

/** A run in a long step, so a signal finds it executing and the pause holds before step 1. */
async function executingRun(tenant: TestTenant) {
  const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(3, { latencyMs: 1500 }) });
  await stack.waitForPhase(runId, ['EXECUTING']);
  return { runId, handle: stack.client.workflow.getHandle(runId) };
}

describe('who a pause is recorded as made by', () => {
  it('a pause signalled without an actor is recorded as anonymous, never as the policy', async () => {
    const tenant = await stack.createTenant();
    const { runId, handle } = await executingRun(tenant);
    await handle.signal(pauseSignal, { pauseReason: 'MANUAL_PAUSE', reason: 'from a shell, unsigned' });
    await waitForPause(stack.db, runId);
    await handle.signal(stopSignal, { actor: 'ops@acme', reason: 'done looking' });
    await stack.waitForPhase(runId, 'terminal');
    const pause = (await controlEvents(stack.db, runId)).find((e) => e.kind === 'pause' && e.accepted)!;
    expect(pause).toMatchObject({ actor: 'anonymous', detail: 'MANUAL_PAUSE: from a shell, unsigned' });
  });

  it("a pause the policy makes is still the policy's, and a signed one its sender's", async () => {
    const approvals = await stack.createTenant({ policy: { approvalSkills: ['sim.llm'] } });
    const byPolicy = await stack.submitRun(approvals.apiKey, { plan: simPlan(1) });
    await waitForPause(stack.db, byPolicy);
    await stack.client.workflow.getHandle(byPolicy).signal(stopSignal, { actor: 'ops@acme' });

    const tenant = await stack.createTenant();
    const { runId, handle } = await executingRun(tenant);
    await handle.signal(pauseSignal, { actor: 'ops@acme', pauseReason: 'MANUAL_PAUSE' });
    await waitForPause(stack.db, runId);
    await handle.signal(stopSignal, { actor: 'ops@acme' });

    await Promise.all([stack.waitForPhase(byPolicy, 'terminal'), stack.waitForPhase(runId, 'terminal')]);
    expect((await controlEvents(stack.db, byPolicy)).find((e) => e.kind === 'pause')).toMatchObject({ actor: 'policy', authority: 'SYSTEM_AUTO' });
    expect((await controlEvents(stack.db, runId)).find((e) => e.kind === 'pause')).toMatchObject({ actor: 'ops@acme' });
  });
});

describe("a pause's allowed authorities", () => {
  it("always include TENANT_ADMIN and FOUNDER_ONLY, whatever a signal names: the tenant's admin lifts it through the API", async () => {
    const tenant = await stack.createTenant();
    const { runId, handle } = await executingRun(tenant);
    await handle.signal(pauseSignal, { actor: 'someone', pauseReason: 'MANUAL_PAUSE', allowedAuthorities: ['SYSTEM_AUTO'] });
    await waitForPause(stack.db, runId);
    expect((await handle.query(runStateQuery)).pause?.allowedAuthorities).toEqual(['SYSTEM_AUTO', 'TENANT_ADMIN', 'FOUNDER_ONLY']);

    // The admin's resume used to be refused 409: "may not resume a MANUAL_PAUSE pause (allowed: SYSTEM_AUTO)".
    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, body: { reason: 'mine to lift' } });
    expect(resumed.status).toBe(200);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  });

  it('lets the founder lift a pause that named only a tenant user', async () => {
    const tenant = await stack.createTenant();
    const { runId, handle } = await executingRun(tenant);
    await handle.signal(pauseSignal, { actor: 'someone', pauseReason: 'MANUAL_PAUSE', allowedAuthorities: ['TENANT_USER'] });
    await waitForPause(stack.db, runId);
    expect((await handle.query(runStateQuery)).pause?.allowedAuthorities).toEqual(['TENANT_USER', 'TENANT_ADMIN', 'FOUNDER_ONLY']);
    await handle.signal('resume', { actor: 'founder', authority: 'FOUNDER_ONLY', reason: 'unlocking' });
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
    expect((await controlEvents(stack.db, runId)).filter((e) => !e.accepted)).toEqual([]);
  });
});

describe("a tenant's suspension", () => {
  it('is pushed with the reason the runs recognize', () => {
    expect(tenantStatusPush('suspended', 'api-key:x').payload.reason).toBe(TENANT_SUSPENDED_REASON);
    expect(tenantStatusPush('active', 'api-key:x').payload.reason).not.toBe(TENANT_SUSPENDED_REASON);
  });

  it('ends its paused runs at once (not at their SLA, an hour away), each with its full governance', async () => {
    const tenant = await stack.createTenant({ policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 3600, pauseWarningSeconds: 60 } });
    const forApproval = await stack.submitRun(tenant.apiKey, { plan: simPlan(2) });
    await waitForPause(stack.db, forApproval);
    const suspendedAt = Date.now();
    const suspended = await stack.request('POST', '/api/v1/tenant/suspend', { apiKey: tenant.apiKey });
    expect(suspended.body).toMatchObject({ status: 'suspended', push: 'pushed', signalledRuns: 1 });

    const ended = await stack.waitForPhase(forApproval, 'terminal', 20_000);
    expect(Date.now() - suspendedAt).toBeLessThan(20_000);
    expect(ended).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED', pauseReason: null, stepsCompleted: 0 });
    // Recorded as a stop by whoever suspended the tenant, saying why.
    expect(ended.errorMessage).toMatch(/^run stopped by api-key:[0-9a-f-]+: tenant suspended$/);
    await expectFullGovernanceRecords(stack.db, forApproval);
  });

  it('ends a manually paused run too, while a policy change leaves a paused run paused', async () => {
    const tenant = await stack.createTenant();
    const { runId: manual, handle } = await executingRun(tenant);
    await stack.request('POST', `/api/v1/runs/${manual}/pause`, { apiKey: tenant.apiKey, body: { reason: 'hold on' } });
    await waitForPause(stack.db, manual);

    // A new policy version is not a suspension: the pause holds.
    const policy = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    const put = await stack.request('PUT', '/api/v1/policies', { apiKey: tenant.apiKey, body: { ...policy.body.rules, warningThresholdPct: 90 } });
    expect(put.body).toMatchObject({ push: 'pushed', signalledRuns: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await handle.query(runStateQuery)).pause).toMatchObject({ reason: 'MANUAL_PAUSE' });
    expect((await storedRun(stack.db, manual)).phase).toBe('EXECUTING');

    await stack.request('POST', '/api/v1/tenant/suspend', { apiKey: tenant.apiKey });
    const ended = await stack.waitForPhase(manual, 'terminal', 20_000);
    expect(ended).toMatchObject({ status: 'cancelled', errorCode: 'STOPPED', stepsCompleted: 1 });
    expect(ended.errorMessage).toMatch(/^run stopped by api-key:[0-9a-f-]+: tenant suspended$/);
    await expectFullGovernanceRecords(stack.db, manual);
  });
});

describe("the run's internal authority names never reach a tenant", () => {
  const internal = /FOUNDER_ONLY|SYSTEM_AUTO|TENANT_ADMIN|TENANT_USER|API_KEY_OWNER/;

  it('a refused pause reason says who may lift it in words', async () => {
    const tenant = await stack.createTenant();
    const member = await stack.createKey(tenant.tenantId, 'member');
    const { runId } = await executingRun(tenant);
    const refused = await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: member, body: { pauseReason: 'POLICY_CHANGE' } });
    expect(refused.body).toMatchObject({ status: 403, code: 'PAUSE_REASON_NOT_ALLOWED' });
    expect(refused.body.error).toBe('a member key may not pause with POLICY_CHANGE: only an admin key or the service operator may resume it');
    expect(JSON.stringify(refused.body)).not.toMatch(internal);
    await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey });
  });

  it("a paused run's state, a refused resume and a resume's answer say it in words", async () => {
    const tenant = await stack.createTenant({ policy: { approvalSkills: ['sim.llm'] } });
    const member = await stack.createKey(tenant.tenantId, 'member');
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    await waitForPause(stack.db, runId);

    const read = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: member });
    expect(read.status).toBe(200);
    expect(read.body.live.pause).toMatchObject({ reason: 'APPROVAL_REQUIRED', resumableBy: ['an admin key', 'the service operator'] });
    expect(JSON.stringify(read.body.live)).not.toMatch(internal);

    const refused = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: member });
    expect(refused.body).toMatchObject({ status: 409, code: 'RESUME_NOT_ALLOWED' });
    expect(refused.body.error).toBe('this key (a member key) may not resume a APPROVAL_REQUIRED pause: only an admin key or the service operator may');
    expect(JSON.stringify(refused.body)).not.toMatch(internal);

    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey });
    expect(resumed.status).toBe(200);
    expect(JSON.stringify(resumed.body)).not.toMatch(internal);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  });
});
