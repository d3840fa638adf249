/**
 * The product on a real Temporal cluster (`./temporal-cluster.sh`: frontend, matching, worker and
 * two history services as separate processes over Postgres, 8 shards), brought up from empty by the
 * `cluster` project's setup (test/setup/cluster.ts). The same helpers as the dev-server suite, with
 * the cluster's address: a run to COMPLETED with every record, an operator's pause and resume
 * through the CLIs, the worker-kill drill with two worker processes and two relays and reactors,
 * one history process killed mid-batch, one of two API processes killed while submits go to both,
 * and the one of two relay-and-reactor processes holding the relay's lock killed.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runDrill } from '../../drill/run';
import { controlEvents, storedRun } from '../helpers/runs';
import { waitFor } from '../helpers/wait';
import { expectFullGovernanceRecords } from '../helpers/records';
import { simPlan, startStack, type Stack } from '../helpers/stack';

const run = promisify(execFile);
const missing = inject('clusterMissing');
const temporal = (...args: string[]) => run(inject('temporalCliPath'), [...args, '--address', inject('clusterAddress')]);

describe.skipIf(missing !== '')(`on the Temporal cluster${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let stack: Stack;
  beforeAll(async () => {
    console.info(`cluster started from empty databases in ${inject('clusterStartSeconds').toFixed(1)}s`);
    stack = await startStack({ temporalAddress: inject('clusterAddress') });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('runs a 3-step run submitted through the API to COMPLETED, with every record', async () => {
    const tenant = await stack.createTenant();
    const latencies: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const submittedAt = Date.now();
      const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(3) });
      const done = await stack.waitForPhase(runId, 'terminal');
      latencies.push((Date.now() - submittedAt) / 1000);
      expect(done).toMatchObject({ phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 3 });
      await expectFullGovernanceRecords(stack.db, runId);
      const { status } = await stack.client.workflow.getHandle(runId).describe();
      expect(status.name).toBe('COMPLETED');
    }
    console.info(`3-step runs on the cluster, submit to COMPLETED: ${latencies.map((s) => `${s.toFixed(2)}s`).join(', ')}`);
  });

  it('is paused and resumed by an operator through the CLIs', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(3, { latencyMs: 700 }) });
    await stack.waitForPhase(runId, ['EXECUTING']);
    await temporal('workflow', 'signal', '--workflow-id', runId, '--name', 'pause', '--input', '{"actor":"ops@acme","authority":"TENANT_ADMIN","reason":"on the cluster"}');
    const paused = await waitFor('the pause to be recorded', async () => {
      const stored = await storedRun(stack.db, runId);
      return stored.pauseReason ? stored : undefined;
    });
    expect(paused).toMatchObject({ phase: 'EXECUTING', pauseReason: 'MANUAL_PAUSE' });
    const resume = '{"actor":"ops@acme","authority":"TENANT_ADMIN"}';
    const tctl = inject('tctlPath');
    if (tctl) {
      await run(tctl, ['--address', inject('clusterAddress'), 'workflow', 'signal', '--workflow_id', runId, '--name', 'resume', '--input', resume]);
    } else {
      await temporal('workflow', 'signal', '--workflow-id', runId, '--name', 'resume', '--input', resume);
    }
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 3, pauseReason: null });
    expect((await controlEvents(stack.db, runId)).map((e) => [e.kind, e.accepted, e.actor])).toEqual([
      ['pause', true, 'ops@acme'],
      ['resume', true, 'ops@acme'],
    ]);
    await expectFullGovernanceRecords(stack.db, runId);
  });

  it(
    'loses, doubles and strands nothing when one of two worker processes is SIGKILLed mid-run; two relays and reactors publish in order and handle each event once',
    { timeout: 300_000 },
    async () => {
      const result = await runDrill('worker-kill', {
        runs: 6,
        steps: 8,
        stepMs: 0,
        kills: 1,
        workers: 2,
        eventServices: 2,
        outageSeconds: 0,
        spareSkillSteps: true,
        timeoutSeconds: 100,
        temporalAddress: inject('clusterAddress'),
        workflowBundlePath: inject('workflowBundlePath'),
        postgresUrl: inject('databaseUrl'),
        redisUrl: inject('redisUrl'),
      });
      expect(result.counts, result.report).toEqual({ completed: 6, lost: 0, duplicated: 0, stuck: 0 });
      expect(result.events.problems, result.report).toEqual([]);
      expect(result.events.handledOnce, result.report).toBe(result.events.committed);
      expect(result.events.outOfOrderRuns, result.report).toBe(0);
      expect(result.timeline.filter((e) => e.what.startsWith('SIGKILL worker')), result.report).toHaveLength(1);
      expect(result.passed, result.report).toBe(true);
      console.info(result.report);
    },
  );

  it('loses, doubles and strands nothing when one of the two history processes is SIGKILLed mid-batch: its shards move', { timeout: 300_000 }, async () => {
    const result = await runDrill('history-kill', {
      runs: 8,
      steps: 6,
      stepMs: 400,
      kills: 0,
      outageSeconds: 0,
      spareSkillSteps: false,
      timeoutSeconds: 150,
      temporalAddress: inject('clusterAddress'),
      clusterEnv: inject('clusterEnv'),
      workflowBundlePath: inject('workflowBundlePath'),
      postgresUrl: inject('databaseUrl'),
      redisUrl: inject('redisUrl'),
    });
    expect(result.counts, result.report).toEqual({ completed: 8, lost: 0, duplicated: 0, stuck: 0 });
    expect(result.events.problems, result.report).toEqual([]);
    expect(result.timeline.map((e) => e.what), result.report).toEqual(
      expect.arrayContaining([expect.stringMatching(/^SIGKILL history-2 with [1-8] runs in flight/), expect.stringMatching(/^recovered: /), 'history-2 started again (./temporal-cluster.sh start)']),
    );
    expect(result.passed, result.report).toBe(true);
    console.info(result.report);
  });

  const clusterDrill = {
    kills: 0,
    outageSeconds: 0,
    spareSkillSteps: false,
    temporalAddress: inject('clusterAddress'),
    workflowBundlePath: inject('workflowBundlePath'),
    postgresUrl: inject('databaseUrl'),
    redisUrl: inject('redisUrl'),
  };

  it('loses and doubles no run when one of two API processes is SIGKILLed while submits go to both: a retry with the same Idempotency-Key finds the run', { timeout: 300_000 }, async () => {
    const result = await runDrill('api-kill', { ...clusterDrill, runs: 8, steps: 3, stepMs: 200, apis: 2, timeoutSeconds: 120 });
    expect(result.counts, result.report).toEqual({ completed: 8, lost: 0, duplicated: 0, stuck: 0 });
    expect(result.events.problems, result.report).toEqual([]);
    expect(result.timeline.map((e) => e.what), result.report).toContainEqual(expect.stringMatching(/^SIGKILL api-1 \(pid \d+\) after [4-8] of 8 submits sent/));
    // Four submits at least went out after the kill, every other one to the dead API first.
    expect(result.submits.connectionErrors, result.report).toBeGreaterThan(0);
    expect(result.submits.requests, result.report).toBe(8 + result.submits.connectionErrors);
    expect(result.passed, result.report).toBe(true);
    console.info(result.report);
  });

  it(
    "hands the relay and the reactor to the other process when the one of two holding the relay's lock is SIGKILLed in a batch: every event published and handled once",
    { timeout: 300_000 },
    async () => {
      const result = await runDrill('events-kill', { ...clusterDrill, runs: 8, steps: 3, stepMs: 300, timeoutSeconds: 150 });
      expect(result.counts, result.report).toEqual({ completed: 8, lost: 0, duplicated: 0, stuck: 0 });
      expect(result.events.problems, result.report).toEqual([]);
      expect(result.events.handledOnce, result.report).toBe(result.events.committed);
      expect(result.timeline.map((e) => e.what), result.report).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^SIGKILL events-[01] \(pid \d+\) holding the relay's lock in a batch/),
          expect.stringMatching(/^taken over by events-[01]: the \d+ events waiting at the kill published within \d+\.\ds/),
        ]),
      );
      expect(result.passed, result.report).toBe(true);
      console.info(result.report);
    },
  );
});
