import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PAUSE_REASON, RUN_STATUS } from '../core/search-attributes';
import { incidents, outbox } from '../db/schema';
import { runStateQuery } from '../workflows/messages';
import { expectFullGovernanceRecords } from './helpers/records';
import { controlEvents, storedRun, waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';

const run = promisify(execFile);
let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

/** A tenant whose policy pauses every sim.llm step for approval, with a short SLA. */
function approvalTenant(pause: { sla?: number; warning?: number; behavior?: 'TERMINATE' | 'CONTINUE' | 'ESCALATE' } = {}) {
  return stack.createTenant({
    policy: {
      approvalSkills: ['sim.llm'],
      pauseSlaSeconds: pause.sla ?? 600,
      pauseWarningSeconds: pause.warning ?? 60,
      pauseTimeoutBehavior: pause.behavior ?? 'TERMINATE',
    },
  });
}

async function pausedRun(tenant: TestTenant, steps = 1) {
  const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(steps) });
  const paused = await waitForPause(stack.db, runId);
  return { runId, paused };
}

async function temporalCli(...args: string[]) {
  return run(inject('temporalCliPath'), [...args, '--address', inject('temporalAddress')]);
}

describe('a run paused for approval', () => {
  it('shows its pause and is resumed through the API', async () => {
    const tenant = await approvalTenant();
    const { runId, paused } = await pausedRun(tenant, 2);
    expect(paused).toMatchObject({ pauseReason: 'APPROVAL_REQUIRED', phase: 'EXECUTING', status: 'running', stepsCompleted: 0 });

    const handle = stack.client.workflow.getHandle(runId);
    const state = await handle.query(runStateQuery);
    expect(state.pause).toMatchObject({ reason: 'APPROVAL_REQUIRED', allowedAuthorities: ['TENANT_ADMIN', 'FOUNDER_ONLY'] });
    expect((await handle.describe()).typedSearchAttributes.get(PAUSE_REASON)).toBe('APPROVAL_REQUIRED');
    const api = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
    expect(api.body.live.pause.reason).toBe('APPROVAL_REQUIRED');

    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, body: { reason: 'looks good' } });
    expect(resumed.status).toBe(200);
    // The second step needs approval again.
    await waitFor('second pause', async () => (await handle.query(runStateQuery)).pause?.number === 2);
    await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey });
    const done = await stack.waitForPhase(runId, 'terminal');
    expect(done).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2, pauseReason: null });
    // The run's final write lands before its workflow task, with the last upsert, completes.
    await handle.result();
    expect((await handle.describe()).typedSearchAttributes.get(PAUSE_REASON)).toBeUndefined();

    const events = await controlEvents(stack.db, runId);
    expect(events.map((e) => [e.kind, e.accepted])).toEqual([
      ['pause', true],
      ['resume', true],
      ['pause', true],
      ['resume', true],
    ]);
    expect(events[1]).toMatchObject({ authority: 'TENANT_ADMIN', detail: 'looks good' });
    await expectFullGovernanceRecords(stack.db, runId);
  });

  it('answers 202 for an accepted resume whose new state is slow, and the run goes on', async () => {
    const tenant = await approvalTenant();
    const { runId } = await pausedRun(tenant, 1);
    // The resume's write fails its two quick local attempts, and the task-queue activity it is
    // handed to takes 3 s: the update is accepted at once, its new state comes after the API waits.
    stack.faults.add({ activity: 'recordResume', runId, mode: 'fail', times: 2 });
    stack.faults.add({ activity: 'recordResume', runId, mode: 'stall', stallMs: 3000, skip: 2, times: 1 });
    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, body: { reason: 'go' } });
    expect(resumed.status).toBe(202);
    expect(resumed.body).toMatchObject({ runId, resumed: true, note: expect.stringMatching(/accepted/) });
    const done = await stack.waitForPhase(runId, 'terminal');
    expect(done).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 1 });
    expect((await controlEvents(stack.db, runId)).map((e) => [e.kind, e.accepted])).toEqual([
      ['pause', true],
      ['resume', true],
    ]);
  });

  it('is resumed with the temporal CLI, sending plain JSON', async () => {
    const tenant = await approvalTenant();
    const { runId } = await pausedRun(tenant);
    await temporalCli('workflow', 'signal', '--workflow-id', runId, '--name', 'resume', '--input', '{"actor":"ops@acme","authority":"TENANT_ADMIN","reason":"approved on call"}');
    const done = await stack.waitForPhase(runId, 'terminal');
    expect(done.phase).toBe('COMPLETED');
    const resume = (await controlEvents(stack.db, runId)).find((e) => e.kind === 'resume');
    expect(resume).toMatchObject({ actor: 'ops@acme', authority: 'TENANT_ADMIN', accepted: true });
  });

  // CI installs tctl (temporal-dev.sh); only a machine without Go may skip this.
  it.skipIf(!inject('tctlPath') && !process.env.CI)('is resumed with tctl', async () => {
    const tenant = await approvalTenant();
    const { runId } = await pausedRun(tenant);
    await run(inject('tctlPath'), [
      '--address', inject('temporalAddress'),
      'workflow', 'signal', '--workflow_id', runId, '--name', 'resume', '--input', '{"actor":"ops@acme","authority":"TENANT_ADMIN"}',
    ]);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  });

  it('refuses a resume from a disallowed authority: 409 for the update, recorded for the signal', async () => {
    const tenant = await approvalTenant();
    const { runId } = await pausedRun(tenant);
    const member = await stack.createKey(tenant.tenantId, 'member');
    const refused = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: member });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'RESUME_NOT_ALLOWED', error: expect.stringMatching(/a member key\) may not resume a APPROVAL_REQUIRED pause/) });

    await temporalCli('workflow', 'signal', '--workflow-id', runId, '--name', 'resume', '--input', '{"actor":"intern","authority":"TENANT_USER"}');
    const rejected = await waitFor('the refused signal to be recorded', async () =>
      (await controlEvents(stack.db, runId)).find((e) => e.kind === 'resume' && !e.accepted),
    );
    expect(rejected).toMatchObject({ actor: 'intern', authority: 'TENANT_USER' });
    expect(rejected.detail).toMatch(/may not resume/);
    const [event] = await stack.db.select().from(outbox).where(and(eq(outbox.runId, runId), eq(outbox.topic, 'signal.rejected')));
    expect(event).toBeDefined();

    const state = await stack.client.workflow.getHandle(runId).query(runStateQuery);
    expect(state.pause?.reason).toBe('APPROVAL_REQUIRED');
    expect((await storedRun(stack.db, runId)).pauseReason).toBe('APPROVAL_REQUIRED');

    await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey });
    expect((await stack.waitForPhase(runId, 'terminal')).status).toBe('cancelled');
  });

  it('refuses a resume of a run that is not paused', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(3, { latencyMs: 1500 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const refused = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatch(/not paused/);
    await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey });
    await stack.waitForPhase(runId, 'terminal');
  });
});

describe('manual pause', () => {
  it('pauses before the next step and the run owner resumes it', async () => {
    const tenant = await stack.createTenant();
    const member = await stack.createKey(tenant.tenantId, 'member');
    const runId = await stack.submitRun(member, { plan: simPlan(3, { latencyMs: 800 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    // As an operator would from a shell: curl with no body at all.
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', `${stack.baseUrl}/api/v1/runs/${runId}/pause`, '-H', `authorization: Bearer ${member}`]);
    expect(stdout).toBe('202');
    const paused = await waitForPause(stack.db, runId);
    expect(paused.pauseReason).toBe('MANUAL_PAUSE');
    const viewer = await stack.createKey(tenant.tenantId, 'viewer');
    expect((await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: viewer })).status).toBe(403);
    const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: member });
    expect(resumed.status).toBe(200);
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  });
});

describe('pause SLA timeouts', () => {
  async function timedOut(behavior: 'TERMINATE' | 'CONTINUE' | 'ESCALATE') {
    const tenant = await approvalTenant({ sla: 2, warning: 1, behavior });
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    const done = await stack.waitForPhase(runId, 'terminal', 30_000);
    return { runId, done, events: await controlEvents(stack.db, runId) };
  }

  it('TERMINATE: warns before the SLA, then fails the run with an incident', async () => {
    const { runId, done, events } = await timedOut('TERMINATE');
    expect(done).toMatchObject({ phase: 'FAILED', status: 'failed_policy', errorCode: 'PAUSE_TIMEOUT', stepsCompleted: 0 });
    expect(events.map((e) => e.kind)).toEqual(['pause', 'pause_expiring', 'pause_timeout']);
    const [pause, warning, timeout] = events;
    expect(warning!.createdAt.getTime() - pause!.createdAt.getTime()).toBeGreaterThanOrEqual(900);
    expect(timeout!.createdAt.getTime() - warning!.createdAt.getTime()).toBeGreaterThanOrEqual(900);
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.incidents.find((i) => i.dedupeKey === 'outcome')).toMatchObject({ kind: 'failure', errorCode: 'PAUSE_TIMEOUT' });
  });

  it('CONTINUE: warns, then resumes automatically and completes', async () => {
    const { done, events } = await timedOut('CONTINUE');
    expect(done.phase).toBe('COMPLETED');
    expect(events.map((e) => e.kind)).toEqual(['pause', 'pause_expiring', 'pause_timeout', 'resume']);
    expect(events.at(-1)).toMatchObject({ actor: 'system', authority: 'SYSTEM_AUTO' });
    expect(events.at(-1)!.detail).toMatch(/automatically/);
  });

  it('ESCALATE: a high-severity incident, one more SLA period, then TERMINATE', async () => {
    const { runId, done, events } = await timedOut('ESCALATE');
    expect(done).toMatchObject({ status: 'failed_policy', errorCode: 'PAUSE_TIMEOUT' });
    expect(done.errorMessage).toMatch(/escalation period/);
    expect(events.map((e) => e.kind)).toEqual(['pause', 'pause_expiring', 'pause_timeout', 'pause_expiring', 'pause_timeout']);
    const escalations = await stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'escalation')));
    expect(escalations).toHaveLength(1);
    expect(escalations[0]).toMatchObject({ severity: 'HIGH', errorCode: 'PAUSE_SLA_EXPIRED' });
    await expectFullGovernanceRecords(stack.db, runId);
  });
});

describe('cancellation', () => {
  it('cancelling the workflow of a paused run ends it like a stop', async () => {
    const tenant = await approvalTenant();
    const { runId } = await pausedRun(tenant);
    await stack.client.workflow.getHandle(runId).cancel();
    const done = await stack.waitForPhase(runId, 'terminal');
    expect(done).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED', pauseReason: null });
    await expectFullGovernanceRecords(stack.db, runId);
    // Temporal tells the two apart (Canceled here, Failed with type STOPPED for a stop); the run's
    // RunStatus search attribute, which README's list query uses, is `cancelled` for both.
    const cancelled = await stack.client.workflow.getHandle(runId).describe();
    expect(cancelled.status.name).toBe('CANCELLED');
    expect(cancelled.typedSearchAttributes.get(RUN_STATUS)).toBe('cancelled');

    const { runId: stopped } = await pausedRun(tenant);
    expect((await stack.request('POST', `/api/v1/runs/${stopped}/stop`, { apiKey: tenant.apiKey })).status).toBe(202);
    expect(await stack.waitForPhase(stopped, 'terminal')).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED' });
    await waitFor('the stopped workflow to close', async () => (await stack.client.workflow.getHandle(stopped).describe()).status.name !== 'RUNNING');
    const stoppedWorkflow = await stack.client.workflow.getHandle(stopped).describe();
    expect(stoppedWorkflow.status.name).toBe('FAILED');
    expect(stoppedWorkflow.typedSearchAttributes.get(RUN_STATUS)).toBe('cancelled');
  });
});

describe('history size', () => {
  it('a 20-step run with 3 pauses stays a small history', async () => {
    const tenant = await stack.createTenant({ policy: { checkIntervalSeconds: 3600 } });
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(20, { latencyMs: 150 }) });
    for (let i = 1; i <= 3; i += 1) {
      await stack.request('POST', `/api/v1/runs/${runId}/pause`, { apiKey: tenant.apiKey });
      await waitFor(`pause ${i}`, async () => (await stack.client.workflow.getHandle(runId).query(runStateQuery)).pause?.number === i);
      const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey });
      expect(resumed.status).toBe(200);
    }
    expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
    const handle = stack.client.workflow.getHandle(runId);
    await handle.result();
    const { historyLength } = await handle.describe();
    console.log(`history events for a 20-step run with 3 pauses: ${historyLength}`);
    // Measured 408: 60 activities (40 of them the steps' skill call and trace write) at 3 events
    // each, 67 workflow tasks at 3 each, 3 signals, 3 updates, search attribute upserts.
    expect(historyLength).toBeLessThan(450);
    const events = await controlEvents(stack.db, runId);
    expect(events.filter((e) => e.kind === 'pause')).toHaveLength(3);
  });
});

describe('pause metrics', () => {
  it('counts checks by decision, pauses by reason, their durations and timeouts by behaviour', async () => {
    const metrics = await stack.workerMetrics.registry.metrics();
    expect(metrics).toMatch(/governed_policy_checks_total\{decision="PAUSE"\} [1-9]/);
    expect(metrics).toMatch(/governed_policy_check_duration_seconds_count [1-9]/);
    expect(metrics).toMatch(/governed_run_pauses_total\{reason="APPROVAL_REQUIRED"\} [1-9]/);
    expect(metrics).toMatch(/governed_run_pauses_total\{reason="MANUAL_PAUSE"\} [1-9]/);
    expect(metrics).toMatch(/governed_run_pause_duration_seconds_count\{reason="APPROVAL_REQUIRED",ended_by="operator"\} [1-9]/);
    expect(metrics).toMatch(/governed_run_pause_duration_seconds_count\{reason="APPROVAL_REQUIRED",ended_by="timeout"\} 1/);
    // The TERMINATE and ESCALATE timeouts failed their runs; two runs stopped and one cancelled while paused ended theirs.
    expect(metrics).toMatch(/governed_run_pause_duration_seconds_count\{reason="APPROVAL_REQUIRED",ended_by="terminated"\} 2/);
    expect(metrics).toMatch(/governed_run_pause_duration_seconds_count\{reason="APPROVAL_REQUIRED",ended_by="stopped"\} 3/);
    for (const behavior of ['TERMINATE', 'CONTINUE']) expect(metrics).toMatch(new RegExp(`governed_run_pause_timeouts_total\\{behavior="${behavior}"\\} 1`));
    expect(metrics).toMatch(/governed_run_pause_timeouts_total\{behavior="ESCALATE"\} 2/);
  });
});
