import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { traceSteps } from '../db/schema';
import { expectFullGovernanceRecords } from './helpers/records';
import { startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';
import { startWorkerProcess } from './helpers/worker-process';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.close());

describe('a worker SIGKILLed in the middle of a step', () => {
  it('costs the run about a heartbeat timeout, not the step\'s ten-minute start-to-close', async () => {
    const taskQueue = `crash-${randomUUID()}`;
    const first = await startWorkerProcess({ databaseUrl: inject('databaseUrl'), taskQueue });
    const app = createApp({ ...stack.apiDeps, taskQueue });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    let second: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
    try {
      const tenant = await stack.createTenant();
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plan: [{ skill: 'sim.llm', input: { prompt: 'long', latencyMs: 4000 } }, { skill: 'sim.llm', input: { prompt: 'short' } }] }),
      });
      const { runId } = (await response.json()) as { runId: string };
      await stack.waitForPhase(runId, ['EXECUTING']);
      await new Promise((r) => setTimeout(r, 1000));
      await first.kill();
      const killedAt = Date.now();
      second = await startWorkerProcess({ databaseUrl: inject('databaseUrl'), taskQueue });

      const run = await stack.waitForPhase(runId, 'terminal', 120_000);
      const lostMs = Date.now() - killedAt;
      expect(run.phase).toBe('COMPLETED');
      // 15 s heartbeat timeout + 0.5 s retry + the step's 4 s again + a sticky workflow task's
      // 10 s hand-over, with slack for a loaded machine; before heartbeats this was 10 minutes.
      expect(lostMs).toBeLessThan(45_000);
      await expectFullGovernanceRecords(stack.db, runId);
      await waitFor('both steps recorded once', async () => (await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId))).length === 2);
    } finally {
      server.close();
      await first.kill();
      await second?.kill();
    }
  }, 150_000);
});
