import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ConfigError, loadConfig } from '../lib/config';
import { workerVersioning } from '../compose/worker';
import { createWorker } from '../worker/create-worker';
import { waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * Issue 19 item 3: worker versioning. A run started on build A stays on build A (PINNED) when build
 * B arrives and becomes the deployment's current build; a run started after that goes to B.
 */

const deploymentName = `governed-test-${randomUUID().slice(0, 8)}`;
const versioningOf = (buildId: string) => workerVersioning(loadConfig({ TEMPORAL_WORKER_DEPLOYMENT_NAME: deploymentName, TEMPORAL_WORKER_BUILD_ID: buildId }))!;

let stack: Stack;
let connection: NativeConnection;
let workerB: Worker | undefined;
let workerBRun: Promise<void> | undefined;

beforeAll(async () => {
  stack = await startStack({ deployment: versioningOf('build-a') });
  connection = await NativeConnection.connect({ address: inject('temporalAddress') });
});

afterAll(async () => {
  if (workerB?.getState() === 'RUNNING') workerB.shutdown();
  await workerBRun;
  await connection?.close();
  await stack?.close();
});

/** What an operator does with `temporal worker deployment set-current-version` once a build's workers poll. */
async function makeCurrent(client: Client, buildId: string): Promise<void> {
  await waitFor(`build ${buildId} to be registered and made current`, async () => {
    try {
      await client.workflowService.setWorkerDeploymentCurrentVersion({ namespace: 'default', deploymentName, buildId, identity: 'worker-versioning test' });
      return true;
    } catch (err) {
      // NotFound until the version's first poll has registered it; FailedPrecondition until its
      // workers have polled every task queue (workflow and activity) the current version has.
      if (/not found|NOT_FOUND|5 NOT_FOUND/i.test(String(err))) return false;
      if (/missing active task queues/i.test(String(err))) return false;
      throw err;
    }
  });
}

/** The build id that completed each of the run's workflow tasks, in order. */
async function buildsThatRan(client: Client, runId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(runId).fetchHistory();
  return (history.events ?? []).flatMap((e) => (e.workflowTaskCompletedEventAttributes ? [e.workflowTaskCompletedEventAttributes.deploymentVersion?.buildId ?? '(none)'] : []));
}

describe('worker versioning', () => {
  it('keeps a run on the build it started on when a new build becomes current, and starts new runs on the new one', { timeout: 120_000 }, async () => {
    await makeCurrent(stack.client, 'build-a');
    const approving = await stack.createTenant({ policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 600, pauseWarningSeconds: 60 } });
    const oldRun = await stack.submitRun(approving.apiKey, { plan: simPlan(1) });
    await waitForPause(stack.db, oldRun);

    workerB = await createWorker({
      connection,
      namespace: 'default',
      taskQueue: stack.taskQueue,
      workflowBundlePath: inject('workflowBundlePath'),
      deps: stack.activityDeps,
      deployment: versioningOf('build-b'),
    });
    workerBRun = workerB.run();
    await makeCurrent(stack.client, 'build-b');

    const plain = await stack.createTenant();
    const newRun = await stack.submitRun(plain.apiKey, { plan: simPlan(2) });
    expect(await stack.waitForPhase(newRun, 'terminal')).toMatchObject({ phase: 'COMPLETED' });

    // Build A's worker is still up: the paused run's next tasks must go to it, not to the current B.
    const resumed = await stack.request('POST', `/api/v1/runs/${oldRun}/resume`, { apiKey: approving.apiKey });
    expect(resumed.status).toBe(200);
    expect(await stack.waitForPhase(oldRun, 'terminal')).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 1 });

    const oldBuilds = await buildsThatRan(stack.client, oldRun);
    const newBuilds = await buildsThatRan(stack.client, newRun);
    expect(oldBuilds.length).toBeGreaterThan(1);
    expect(new Set(oldBuilds)).toEqual(new Set(['build-a']));
    expect(new Set(newBuilds)).toEqual(new Set(['build-b']));
    const described = await stack.client.workflow.getHandle(oldRun).describe();
    expect(described.raw.workflowExecutionInfo?.versioningInfo?.behavior).toBe(1); // VERSIONING_BEHAVIOR_PINNED
  });

  it('takes both variables or neither', () => {
    expect(workerVersioning(loadConfig({}))).toBeUndefined();
    expect(() => workerVersioning(loadConfig({ TEMPORAL_WORKER_BUILD_ID: 'b1' }))).toThrow(ConfigError);
    expect(() => workerVersioning(loadConfig({ TEMPORAL_WORKER_BUILD_ID: 'b1' }))).toThrow(/TEMPORAL_WORKER_DEPLOYMENT_NAME/);
    expect(() => workerVersioning(loadConfig({ TEMPORAL_WORKER_DEPLOYMENT_NAME: 'governed' }))).toThrow(/TEMPORAL_WORKER_BUILD_ID/);
    expect(workerVersioning(loadConfig({ TEMPORAL_WORKER_DEPLOYMENT_NAME: 'governed', TEMPORAL_WORKER_BUILD_ID: 'b1', TEMPORAL_WORKER_VERSIONING_BEHAVIOR: 'AUTO_UPGRADE' }))).toEqual({
      version: { deploymentName: 'governed', buildId: 'b1' },
      useWorkerVersioning: true,
      defaultVersioningBehavior: 'AUTO_UPGRADE',
    });
  });
});
