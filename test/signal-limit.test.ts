import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlPushes } from '../db/schema';
import { enqueuePush, tenantStatusPush } from '../dispatch/control-pusher';
import { policyChangedSignal } from '../workflows/messages';
import { freshDatabase } from './helpers/fresh-database';
import { startOwnDevServer, type OwnDevServer } from './helpers/own-dev-server';
import { storedRun, waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * Temporal refuses further signals to an execution that has received
 * `history.maximumSignalsPerExecution` of them (10,000 by default). A run at that limit gets a 409
 * that names it from the control routes, and a tenant-wide push skips it (recorded) and goes on, so
 * the tenant's later changes are not stuck behind it (issue 17, item 3). The limit is 5 on a dev
 * server of this file's own, with a database of its own (another file's dispatcher would deliver
 * this file's pushes against the shared server).
 */

const SIGNAL_LIMIT = 5;

let server: OwnDevServer;
let stack: Stack;
let fresh: Awaited<ReturnType<typeof freshDatabase>>;

beforeAll(async () => {
  server = await startOwnDevServer({ dynamicConfig: { 'history.maximumSignalsPerExecution': SIGNAL_LIMIT } });
  fresh = await freshDatabase('signal_limit');
  stack = await startStack({ temporalAddress: server.address, databaseUrl: fresh.url });
});
afterAll(async () => {
  await stack?.close();
  server?.stop();
  await fresh?.drop();
});

/** A live run that has received as many signals as its execution may. */
async function runAtTheLimit(tenant: TestTenant): Promise<string> {
  const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(30, { latencyMs: 1000 }) });
  await stack.waitForPhase(runId, ['EXECUTING']);
  const handle = stack.client.workflow.getHandle(runId);
  for (let i = 0; i < SIGNAL_LIMIT; i += 1) await handle.signal(policyChangedSignal, { actor: 'test', requestId: `fill-${i}` });
  await expect(handle.signal(policyChangedSignal, { actor: 'test' })).rejects.toThrow();
  return runId;
}

describe("a run at Temporal's signal limit", () => {
  it('is answered 409 naming the limit on pause and stop, never 500', async () => {
    const tenant = await stack.createTenant();
    const runId = await runAtTheLimit(tenant);
    for (const action of ['pause', 'stop']) {
      const res = await stack.request('POST', `/api/v1/runs/${runId}/${action}`, { apiKey: tenant.apiKey });
      expect(res.status).toBe(409);
      expect(res.body.error).toMatch(/maximum number of signals for one execution \(history\.maximumSignalsPerExecution/);
      expect(res.body.error).toContain(`temporal workflow cancel --workflow-id ${runId}`);
    }
    // A refused stop is not taken for one on its way: the next is tried again, and refused again.
    expect((await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey })).status).toBe(409);
    // The way out it names: cancelling the workflow ends the run like a stop.
    await stack.client.workflow.getHandle(runId).cancel();
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ status: 'cancelled', errorCode: 'STOPPED' });
  });

  it("does not hold back a tenant-wide push for the tenant's other runs, nor the tenant's next push", async () => {
    const tenant = await stack.createTenant({ policy: { pauseSlaSeconds: 600 } });
    const full = await runAtTheLimit(tenant);
    const other = await stack.submitRun(tenant.apiKey, { plan: simPlan(30, { latencyMs: 1000 }) });
    await stack.waitForPhase(other, ['EXECUTING']);

    const paused = await stack.request('POST', '/api/v1/tenant/pause', { apiKey: tenant.apiKey, body: { reason: 'provider incident' } });
    expect(paused.status).toBe(202);
    expect(paused.body).toMatchObject({ push: 'pushed', signalledRuns: 1, skippedRuns: [{ runId: full, reason: expect.stringMatching(/signal limit/) }] });
    expect(await waitForPause(stack.db, other)).toMatchObject({ pauseReason: 'MANUAL_PAUSE' });
    const [push] = await stack.db.select().from(controlPushes).where(eq(controlPushes.tenantId, tenant.tenantId));
    expect(push!.pushedAt).not.toBeNull();
    expect(push!.lastError).toMatch(new RegExp(`skipped 1 run.*${full}.*maximumSignalsPerExecution`));

    // The tenant's next change reaches the other run.
    const resumed = await stack.request('POST', '/api/v1/tenant/resume', { apiKey: tenant.apiKey });
    expect(resumed.body).toMatchObject({ push: 'pushed', signalledRuns: 1 });
    await waitFor('the other run to resume', async () => (await storedRun(stack.db, other)).pauseReason === null);

    // A push the dispatcher delivers (the API's own attempt never came) goes past the full run too.
    const queued = await enqueuePush(stack.db, tenant.tenantId, tenantStatusPush('active', 'test'), { graceMs: 0 });
    const delivered = await waitFor('the dispatcher to deliver the push', async () => {
      await stack.dispatcher.runOnce();
      const [row] = await stack.db.select().from(controlPushes).where(eq(controlPushes.id, queued));
      return row!.pushedAt !== null && row;
    });
    expect(delivered).toMatchObject({ signalledRuns: 1, lastError: expect.stringContaining(full) });
    const pushes = await stack.db.select().from(controlPushes).where(eq(controlPushes.tenantId, tenant.tenantId));
    expect(pushes.map((p) => p.pushedAt !== null)).toEqual([true, true, true]);

    expect((await stack.request('POST', `/api/v1/runs/${other}/stop`, { apiKey: tenant.apiKey })).status).toBe(202);
    await stack.client.workflow.getHandle(full).cancel();
    for (const id of [full, other]) expect((await stack.waitForPhase(id, 'terminal')).status).toBe('cancelled');
  });
});
