import { afterAll, beforeAll, expect, it } from 'vitest';
import { governed } from './helpers/governed-cli';
import { startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * A pause or a stop is answered 202 when it is sent; whether the run takes it is known only at its
 * next step boundary. The CLI waits for that by default and says what happened, with an exit code a
 * script can trust; the API shows the run's refusals with its other controls.
 */
let stack: Stack;
let tenant: TestTenant;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startStack();
  tenant = await stack.createTenant();
  env = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey };
});
afterAll(() => stack?.close());

const slowSteps = (steps: number, latencyMs: number) => Array.from({ length: steps }, (_, i) => ({ skill: 'sim.llm', input: { prompt: `step ${i + 1}`, latencyMs } }));

it('a pause sent during the last step: the CLI says the run ended first and exits 1; the API and runs get show the refusal', { timeout: 120_000 }, async () => {
  const runId = await stack.submitRun(tenant.apiKey, { plan: slowSteps(1, 3000) });
  await stack.waitForPhase(runId, ['EXECUTING']);
  const paused = await governed(['runs', 'pause', runId, '--reason', 'look first'], env);
  expect(paused.code, paused.stdout + paused.stderr).toBe(1);
  expect(paused.stdout).toMatch(new RegExp(`run ${runId} (refused the pause: .+|ended COMPLETED \\(succeeded\\) before its next step: the pause was not applied)`));

  expect((await stack.waitForPhase(runId, 'terminal')).phase).toBe('COMPLETED');
  const detail = await stack.request('GET', `/api/v1/runs/${runId}`, { apiKey: tenant.apiKey });
  expect(detail.body.controls).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'pause', accepted: false, detail: expect.stringMatching(/paused/) })]));
  const shown = await governed(['runs', 'get', runId], env);
  expect(shown.stdout).toMatch(/refused\s+\S+ \S+ pause by .+: .*paused/);
});

it('a pause the run takes at its next step: the CLI says so and exits 0; --no-wait answers at once', { timeout: 120_000 }, async () => {
  const runId = await stack.submitRun(tenant.apiKey, { plan: slowSteps(3, 1500) });
  await stack.waitForPhase(runId, ['EXECUTING']);
  const paused = await governed(['runs', 'pause', runId], env);
  expect(paused.code, paused.stdout + paused.stderr).toBe(0);
  expect(paused.stdout).toContain(`run ${runId} paused (MANUAL_PAUSE)`);

  const stopped = await governed(['runs', 'stop', runId, '--no-wait'], env);
  expect(stopped.code, stopped.stderr).toBe(0);
  expect(stopped.stdout).toContain(`stop requested for run ${runId}`);
  expect(stopped.stdout).not.toContain('stopped:');
  expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'FAILED', errorCode: 'STOPPED' });
});

it('a stop: the CLI waits for the run to end stopped', { timeout: 120_000 }, async () => {
  const runId = await stack.submitRun(tenant.apiKey, { plan: slowSteps(3, 1500) });
  await stack.waitForPhase(runId, ['EXECUTING']);
  const stopped = await governed(['runs', 'stop', runId], env);
  expect(stopped.code, stopped.stdout + stopped.stderr).toBe(0);
  expect(stopped.stdout).toContain(`run ${runId} stopped: FAILED (cancelled)`);
});
