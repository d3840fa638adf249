import { WorkflowFailedError } from '@temporalio/client';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINALIZE_RUN } from '../core/audit';
import { auditExpectations, auditReconciliations } from '../db/schema';
import { pauseSignal, resumeSignal, runStateQuery, stopSignal } from '../workflows/messages';
import { expectFullGovernanceRecords, governanceRecords } from './helpers/records';
import { controlEvents, storedRun, waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack } from './helpers/stack';

// Signals are sent straight to Temporal, as `temporal`/`tctl` would: the API refuses such text itself.
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ maxDomainAttempts: 2 });
});
afterAll(() => stack?.close());

const slowPlan = () => simPlan(3, { latencyMs: 400 });
const signal = (runId: string) => stack.client.workflow.getHandle(runId);

describe('whatever a control signal carries', () => {
  it('a stop whose reason holds a NUL character stops the run cleanly', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan() });
    await stack.waitForPhase(runId, ['EXECUTING']);
    await signal(runId).signal(stopSignal, { actor: 'ops\u0000', reason: 'enough\u0000now' });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED', sagaPhase: 'EVENTS_PUBLISHED' });
    expect(run.errorMessage).toContain('enough\uFFFDnow');
    await expectFullGovernanceRecords(stack.db, runId);
  });

  it('a stop whose reason holds an unpaired surrogate commits its governance, not a rollback', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan() });
    await stack.waitForPhase(runId, ['EXECUTING']);
    await signal(runId).signal(stopSignal, { reason: 'half a pair: \uD83D end' });

    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ errorCode: 'STOPPED', sagaPhase: 'EVENTS_PUBLISHED' });
    expect(run.errorMessage).toContain('half a pair: \uFFFD end');
    await expectFullGovernanceRecords(stack.db, runId);
  });

  it('a pause with a NUL reason and payloads of the wrong shape neither fail nor wedge the run', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2, { latencyMs: 300 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const handle = signal(runId);
    // Shapes no typed client sends, and `--input` happily does.
    await handle.signal('resume' as never, { authorities: 5, reason: ['x'] } as never);
    await handle.signal(pauseSignal, { pauseReason: 'MANUAL_PAUSE\u0000' as never, reason: 'r' });
    await handle.signal(pauseSignal, { reason: 'hold\u0000it', allowedAuthorities: ['NOBODY' as never, 'TENANT_ADMIN'] });
    await handle.signal('pause' as never, 'not an object' as never);

    const paused = await waitForPause(stack.db, runId);
    expect(paused.pauseReason).toBe('MANUAL_PAUSE');
    // Unknown names are dropped; the tenant's admin and the founder may always lift a pause.
    expect((await handle.query(runStateQuery)).pause?.allowedAuthorities).toEqual(['TENANT_ADMIN', 'FOUNDER_ONLY']);
    await handle.signal(resumeSignal, { authority: 'TENANT_ADMIN', reason: 'go\u0000on' });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2 });

    const events = await controlEvents(stack.db, runId);
    const refused = events.filter((e) => !e.accepted).map((e) => e.detail);
    expect(refused).toEqual(expect.arrayContaining(["unknown pause reason 'MANUAL_PAUSE\uFFFD'", 'run is already paused']));
    expect(events.filter((e) => e.kind === 'resume' && !e.accepted)).toHaveLength(1);
    expect(events.find((e) => e.kind === 'pause' && e.accepted)?.detail).toBe('MANUAL_PAUSE: hold\uFFFDit');
  });

  it('a redelivered control request with the same requestId is acted on once', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2, { latencyMs: 300 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    const handle = signal(runId);
    await handle.signal(pauseSignal, { reason: 'once', requestId: 'req-1' });
    await waitForPause(stack.db, runId);
    await handle.signal(pauseSignal, { reason: 'once', requestId: 'req-1' });
    await handle.signal(resumeSignal, { authority: 'TENANT_ADMIN', requestId: 'req-2' });
    await stack.waitForPhase(runId, 'terminal');
    const events = await controlEvents(stack.db, runId);
    // The second delivery of req-1 would otherwise be refused as "already paused".
    expect(events.filter((e) => e.kind === 'pause')).toHaveLength(1);
    expect(events.filter((e) => !e.accepted)).toHaveLength(0);
  });
});

describe('a write that fails for good', () => {
  it('while recording a step fails the run with RECORDING_FAILED and its governance written', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: slowPlan() });
    // A real fault, in Postgres: every write of this run's step outputs is refused, as a bug or bad data would be.
    await stack.db.execute(sql.raw(`
      create or replace function refuse_step_output() returns trigger language plpgsql as $$
      begin raise exception 'injected fault: step outputs of this run are refused'; end $$;
      create trigger refuse_step_output_${runId.replaceAll('-', '_')} before insert on step_outputs
        for each row when (new.run_id = '${runId}') execute function refuse_step_output();`));
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'RECORDING_FAILED' });
    expect(run.errorMessage).toContain('injected fault: step outputs of this run are refused');
    const records = await expectFullGovernanceRecords(stack.db, runId);
    expect(records.incidents[0]).toMatchObject({ errorCode: 'RECORDING_FAILED', severity: 'CRITICAL' });
  });

  it('while finalizing leaves a run that says so, with its audit contract closed for the reconciler', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    stack.faults.add({ activity: 'finalizeRun', runId, mode: 'fail' });

    const outcome = await signal(runId).result().catch((err: unknown) => err);
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    expect((outcome as WorkflowFailedError).cause?.message).toMatch(/^the run could not be finalized: .*finalizeRun/);

    const run = await storedRun(stack.db, runId);
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'RUN_NOT_FINALIZED' });
    const records = await governanceRecords(stack.db, runId);
    expect(records.acks.some((a) => a.action === FINALIZE_RUN.action)).toBe(false);

    const [finalize] = (await stack.db.select().from(auditExpectations).where(eq(auditExpectations.runId, runId))).filter(
      (e) => e.action === FINALIZE_RUN.action,
    );
    expect(finalize!.deadlineAt!.getTime()).toBeLessThanOrEqual(Date.now());
    const [audit] = await stack.db.select().from(auditReconciliations).where(eq(auditReconciliations.runId, runId));
    expect(audit!.dueAt!.getTime()).toBeLessThanOrEqual(Date.now());

    // The reconciliation rules (here computed live by the API) report the missing finalization.
    const report = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(report.status).toBe(200);
    expect(JSON.stringify(report.body.findings)).toContain('finalize_run');
  });
});
