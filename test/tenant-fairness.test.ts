import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { runs } from '../db/schema';
import { startWorkerProcess, type WorkerProcess } from '../testing/worker-process';
import { freshDatabase } from './helpers/fresh-database';
import { startOwnDevServer, type OwnDevServer } from './helpers/own-dev-server';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * One tenant's burst must not starve another tenant's runs (issue 19, item 5). Each run's workflow
 * carries its tenant as its fairness key (dispatch/run-starter.ts), and its activities inherit it;
 * a Temporal server with fairness on (`matching.enableFairness`, which temporal-dev.sh and the
 * cluster's dynamic config turn on) dispatches a backlog's tasks key by key, not first in first
 * out. Here the backlog is made on purpose: a burst of one tenant's runs, then a few of another's,
 * all queued while no worker polls; then one worker doing a few tasks at a time drains it.
 */

const BURST = 40;
const FEW = 3;

let server: OwnDevServer;
let stack: Stack;
let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let address: string;

beforeAll(async () => {
  // A server of this file's own: its task queues hold only this file's backlog.
  server = await startOwnDevServer();
  address = server.address;
  fresh = await freshDatabase('fairness');
  stack = await startStack({ temporalAddress: address, databaseUrl: fresh.url });
}, 120_000);
afterAll(async () => {
  await stack?.close();
  server?.stop();
  await fresh?.drop();
});

it(`runs a tenant's ${FEW} runs among the first, not after another tenant's burst of ${BURST} queued before them`, { timeout: 300_000 }, async () => {
  const taskQueue = `fairness-${randomUUID()}`;
  // The product's API starting runs on a queue no worker polls yet: the runs wait in Temporal's backlog.
  const app = createApp({ ...stack.apiDeps, taskQueue });
  const api: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const submit = async (apiKey: string, prompt: string): Promise<string> => {
    const res = await fetch(`${base}/api/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      // Steps long against a run's governance writes (local activities, in its workflow tasks), so
      // that the activity queue, where fairness acts, is what the runs wait on.
      body: JSON.stringify({ plan: simPlan(2, { latencyMs: 400, prompt }) }),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { runId: string }).runId;
  };
  let worker: WorkerProcess | undefined;
  try {
    const bursting = await stack.createTenant();
    const quiet = await stack.createTenant();
    const burst: string[] = [];
    for (let i = 0; i < BURST; i += 1) burst.push(await submit(bursting.apiKey, `burst ${i}`));
    const few: string[] = [];
    for (let i = 0; i < FEW; i += 1) few.push(await submit(quiet.apiKey, `few ${i}`));

    // One worker that runs two activities at a time: the activity queue's backlog is what orders the
    // runs. (Its workflow tasks after a run's first go to the worker's sticky queue, which the server
    // keeps first in first out; the worker takes those as fast as they come.)
    worker = await startWorkerProcess({
      DATABASE_URL: fresh.url,
      TEMPORAL_ADDRESS: address,
      TEMPORAL_TASK_QUEUE: taskQueue,
      WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
      WORKER_METRICS_PORT: '0',
      WORKER_SDK_METRICS_PORT: '0',
      EVENTS_IN_WORKER: 'false',
      WORKER_MAX_CONCURRENT_ACTIVITIES: '2',
      LOG_LEVEL: 'info',
    });

    const completed = (ids: string[]) =>
      stack.db.select({ id: runs.id }).from(runs).where(and(inArray(runs.id, ids), eq(runs.phase, 'COMPLETED')));
    let burstDoneWhenFewDone = -1;
    await waitFor(
      "the quiet tenant's runs to complete",
      async () => {
        if ((await completed(few)).length < FEW) return false;
        burstDoneWhenFewDone = (await completed(burst)).length;
        return true;
      },
      240_000,
    );
    // First in, first out, they would finish after nearly all of the burst; key by key, among its first.
    expect(burstDoneWhenFewDone, `${burstDoneWhenFewDone} of the burst's ${BURST} runs had completed first`).toBeLessThan(BURST / 2);
    await waitFor('the burst to complete', async () => (await completed(burst)).length === BURST, 240_000);
  } finally {
    await worker?.kill();
    await new Promise((resolve) => api.close(resolve));
  }
});
