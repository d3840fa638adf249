import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { desc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { controlPushes, policies, runs } from '../db/schema';
import { runStateQuery } from '../workflows/messages';
import { expectFullGovernanceRecords } from './helpers/records';
import { controlEvents, storedRun, waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy';
import { waitFor } from './helpers/wait';

let stack: Stack;
let proxy: TcpProxy;
let cutConnection: Connection;
/** An API whose Temporal client goes through a proxy the tests cut: Temporal "down" for it alone. */
let cutApi: { url: string; server: Server };

beforeAll(async () => {
  stack = await startStack();
  const [host, port] = inject('temporalAddress').split(':');
  proxy = await startTcpProxy({ host: host!, port: Number(port) });
  cutConnection = await Connection.connect({ address: `127.0.0.1:${proxy.port}` });
  const app = createApp({ ...stack.apiDeps, temporal: new Client({ connection: cutConnection }) });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  cutApi = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
});
afterAll(async () => {
  cutApi?.server.close();
  await cutConnection?.close();
  await proxy?.close();
  await stack?.close();
});

async function viaCutApi(method: string, path: string, apiKey: string, body?: unknown) {
  const started = Date.now();
  const response = await fetch(`${cutApi.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any, ms: Date.now() - started };
}

describe('with Temporal unreachable from the API', () => {
  it('a submit without an Idempotency-Key answers 202 promptly, and the starter runs it later', async () => {
    const tenant = await stack.createTenant();
    proxy.cut();
    const submitted = await viaCutApi('POST', '/api/v1/runs', tenant.apiKey, { plan: simPlan(2) });
    proxy.restore();
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({ authorizationDecision: 'ALLOWED', workflow: 'queued' });
    expect(submitted.ms).toBeLessThan(5000);
    const runId = submitted.body.runId as string;

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run.phase).toBe('COMPLETED');
    expect(run.workflowStartedAt).not.toBeNull();
    await expectFullGovernanceRecords(stack.db, runId);
    // Exactly one workflow, with the run's id.
    const executions = [];
    for await (const e of stack.client.workflow.list({ query: `WorkflowId = '${runId}'` })) executions.push(e);
    expect(executions).toHaveLength(1);
  });

  it('a policy change commits, answers that its push is queued, and reaches the live run once Temporal is back', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 3600 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(15, { latencyMs: 800 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    // The dispatcher reaches Temporal directly, so stop it from delivering until the answer is checked.
    await stack.dispatcher.stop();
    proxy.cut();
    const current = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    const changed = await viaCutApi('PUT', '/api/v1/policies', tenant.apiKey, { ...current.body.rules, budgetPerRunUsd: 40 });
    proxy.restore();
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ version: 2, push: 'queued' });
    expect(changed.ms).toBeLessThan(5000);
    const [latest] = await stack.db.select().from(policies).where(eq(policies.tenantId, tenant.tenantId)).orderBy(desc(policies.version)).limit(1);
    expect(latest!.version).toBe(2);

    const [queued] = await stack.db.select().from(controlPushes).where(eq(controlPushes.tenantId, tenant.tenantId));
    expect(queued).toMatchObject({ kind: 'policy_changed', pushedAt: null });
    // Due one backoff (1 s) after the API's failed attempt ended.
    expect(queued!.nextAttemptAt.getTime() - queued!.createdAt.getTime()).toBeGreaterThanOrEqual(1000);
    // Delivered by a dispatcher once due: this one, driven here, or another test file's on the
    // same database (every dispatcher serves every pending push). Each failed delivery doubles the
    // wait (1 s, 2 s, 4 s ...).
    await waitFor(
      'a dispatcher to deliver the due push',
      async () => {
        await stack.dispatcher.runOnce();
        const [row] = await stack.db.select().from(controlPushes).where(eq(controlPushes.id, queued!.id));
        return row!.pushedAt !== null;
      },
      30_000,
    );
    const [pushed] = await stack.db.select().from(controlPushes).where(eq(controlPushes.id, queued!.id));
    expect(pushed).toMatchObject({ signalledRuns: 1 });
    expect(pushed!.pushedAt).not.toBeNull();
    // The run re-checked before its next step although its interval is an hour: it holds version 2.
    await waitFor('run accepted version 2', async () => (await stack.client.workflow.getHandle(runId).query(runStateQuery)).policyVersion === 2);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  });
});

describe('a tenant-wide pause', () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await stack.createTenant({ policy: { pauseSlaSeconds: 600 } });
  });

  it('pauses every live run, and its resume lifts only the pauses it set', async () => {
    const plan = simPlan(3, { latencyMs: 400 });
    const [a, b, own] = await Promise.all([0, 1, 2].map(() => stack.submitRun(tenant.apiKey, { plan })));
    await Promise.all([a, b, own].map((id) => stack.waitForPhase(id!, ['EXECUTING'])));
    // One run an operator paused on their own before the tenant-wide pause.
    expect((await stack.request('POST', `/api/v1/runs/${own}/pause`, { apiKey: tenant.apiKey, body: { reason: 'mine' } })).status).toBe(202);
    await waitForPause(stack.db, own!);

    const paused = await stack.request('POST', '/api/v1/tenant/pause', { apiKey: tenant.apiKey, body: { reason: 'provider incident' } });
    expect(paused.status).toBe(202);
    expect(paused.body).toMatchObject({ push: 'pushed', signalledRuns: 3 });
    for (const id of [a, b]) {
      expect(await waitForPause(stack.db, id!)).toMatchObject({ pauseReason: 'MANUAL_PAUSE' });
      expect((await stack.client.workflow.getHandle(id!).query(runStateQuery)).pause).toMatchObject({ tag: 'tenant-pause', detail: 'provider incident' });
    }

    const resumed = await stack.request('POST', '/api/v1/tenant/resume', { apiKey: tenant.apiKey });
    expect(resumed.status).toBe(202);
    expect(resumed.body).toMatchObject({ push: 'pushed', signalledRuns: 3 });
    for (const id of [a, b]) expect((await stack.waitForPhase(id!, 'terminal')).phase).toBe('COMPLETED');

    // The operator's own pause stays; the tenant's resume is recorded as refused on it.
    expect((await storedRun(stack.db, own!)).pauseReason).toBe('MANUAL_PAUSE');
    const refusals = (await controlEvents(stack.db, own!)).filter((e) => !e.accepted).map((e) => `${e.kind}: ${e.detail}`);
    expect(refusals).toEqual(expect.arrayContaining(['pause: run is already paused', "resume: the run's pause (MANUAL_PAUSE) was not set by 'tenant-pause'"]));
    await stack.request('POST', `/api/v1/runs/${own}/resume`, { apiKey: tenant.apiKey });
    expect((await stack.waitForPhase(own!, 'terminal')).phase).toBe('COMPLETED');
  });

  it('a resume right after the pause reaches the runs that accepted it mid-step: none pauses later', async () => {
    const fresh = await stack.createTenant({ policy: { pauseSlaSeconds: 600 } });
    // Long steps: the pause is accepted mid-step and would be held only at the next boundary.
    const [midStep, alsoMidStep] = await Promise.all([0, 1].map(() => stack.submitRun(fresh.apiKey, { plan: simPlan(3, { latencyMs: 1500 }) })));
    await Promise.all([midStep, alsoMidStep].map((id) => stack.waitForPhase(id!, ['EXECUTING'])));
    const paused = await stack.request('POST', '/api/v1/tenant/pause', { apiKey: fresh.apiKey, body: { reason: 'blip' } });
    expect(paused.body).toMatchObject({ push: 'pushed', signalledRuns: 2 });
    // Neither run holds the pause yet: no stored pause.
    for (const id of [midStep, alsoMidStep]) expect((await storedRun(stack.db, id!)).pauseReason).toBeNull();
    const resumed = await stack.request('POST', '/api/v1/tenant/resume', { apiKey: fresh.apiKey, body: { reason: 'false alarm' } });
    expect(resumed.status).toBe(202);
    expect(resumed.body).toMatchObject({ push: 'pushed', signalledRuns: 2 });
    for (const id of [midStep, alsoMidStep]) {
      const run = await stack.waitForPhase(id!, 'terminal');
      expect(run.phase).toBe('COMPLETED');
      const events = await controlEvents(stack.db, id!);
      expect(events.filter((e) => e.kind === 'pause').map((e) => e.accepted)).toEqual([]);
      expect(events.find((e) => e.kind === 'pause_withdrawn')).toMatchObject({
        accepted: true,
        authority: 'TENANT_ADMIN',
        detail: expect.stringMatching(/^withdrew the MANUAL_PAUSE pause \(tenant-pause\) requested by .+ before it took effect: false alarm$/),
      });
    }
  });

  it('a run paused on its own mid-step is not withdrawn by a tenant-wide resume, nor one the tenant never paused', async () => {
    const fresh = await stack.createTenant({ policy: { pauseSlaSeconds: 600 } });
    const [own, untouched] = await Promise.all([0, 1].map(() => stack.submitRun(fresh.apiKey, { plan: simPlan(3, { latencyMs: 1500 }) })));
    await Promise.all([own, untouched].map((id) => stack.waitForPhase(id!, ['EXECUTING'])));
    // The operator's own pause, accepted mid-step; then a tenant-wide resume with no tenant-wide pause before it.
    expect((await stack.request('POST', `/api/v1/runs/${own}/pause`, { apiKey: fresh.apiKey, body: { reason: 'mine' } })).status).toBe(202);
    const resumed = await stack.request('POST', '/api/v1/tenant/resume', { apiKey: fresh.apiKey });
    // Only runs the tenant paused (none) or runs paused already (none yet) are targeted.
    expect(resumed.body).toMatchObject({ push: 'pushed', signalledRuns: 0 });
    expect(await waitForPause(stack.db, own!)).toMatchObject({ pauseReason: 'MANUAL_PAUSE' });
    expect((await stack.waitForPhase(untouched!, 'terminal')).phase).toBe('COMPLETED');
    // The operator's own resume lifts it.
    await stack.request('POST', `/api/v1/runs/${own}/resume`, { apiKey: fresh.apiKey });
    expect((await stack.waitForPhase(own!, 'terminal')).phase).toBe('COMPLETED');
  });

  it('names an incident of the tenant, refuses another tenant\'s, and is for admins only', async () => {
    const member = await stack.createKey(tenant.tenantId, 'member');
    expect((await stack.request('POST', '/api/v1/tenant/pause', { apiKey: member })).status).toBe(403);
    const unknown = await stack.request('POST', '/api/v1/tenant/pause', { apiKey: tenant.apiKey, body: { incidentId: '00000000-0000-4000-8000-000000000000' } });
    expect(unknown.status).toBe(404);
    const bad = await stack.request('POST', '/api/v1/tenant/pause', { apiKey: tenant.apiKey, body: { why: 'x' } });
    expect(bad.status).toBe(400);
    expect(await stack.db.select().from(controlPushes).where(eq(controlPushes.tenantId, tenant.tenantId))).toHaveLength(2);
  });
});

describe('roles and pause reasons', () => {
  it('a member may pause with a reason a member may resume, and not with one only an admin may', async () => {
    const tenant = await stack.createTenant();
    const member = await stack.createKey(tenant.tenantId, 'member');
    const runId = await stack.submitRun(member, { plan: simPlan(3, { latencyMs: 400 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const refused = await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: member, body: { pauseReason: 'POLICY_CHANGE' } });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatch(/may not pause with POLICY_CHANGE/);
    expect((await controlEvents(stack.db, runId)).filter((e) => e.kind === 'pause')).toHaveLength(0);

    // BUDGET_WARNING may be lifted by the key that submitted the run.
    const own = await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: member, body: { pauseReason: 'BUDGET_WARNING' } });
    expect(own.status).toBe(202);
    await waitForPause(stack.db, runId);
    expect((await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: member })).status).toBe(200);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
    const [stored] = await stack.db.select({ phase: runs.phase }).from(runs).where(eq(runs.id, runId));
    expect(stored!.phase).toBe('COMPLETED');
  });
});
