import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { costUsd } from '../core/pricing';
import { governanceRecords } from './helpers/records';
import { startLlmStub } from './helpers/llm-stub';
import { startStack, type Stack, type TestTenant } from './helpers/stack';

let stack: Stack;
let stub: Awaited<ReturnType<typeof startLlmStub>>;
let refusingStub: Awaited<ReturnType<typeof startLlmStub>>;
let tenant: TestTenant;

beforeAll(async () => {
  stub = await startLlmStub();
  refusingStub = await startLlmStub({ failWith: 400 });
  stack = await startStack({ llmBaseUrl: stub.baseUrl });
  tenant = await stack.createTenant();
});
afterAll(async () => {
  await stack?.close();
  await stub?.close();
  await refusingStub?.close();
});

describe('llm.chat against an OpenAI-compatible endpoint', () => {
  it("records the provider's token usage and prices it", async () => {
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'what is a saga?' },
    ];
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'llm.chat', input: { messages, model: 'gpt-4o-mini', maxTokens: 64 } }] });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 1 });

    const sent = stub.requests.find((r) => r.body?.messages?.[1]?.content === 'what is a saga?');
    expect(sent).toBeDefined();
    expect(sent!.authorization).toBe('Bearer test-key');
    expect(sent!.body).toMatchObject({ model: 'gpt-4o-mini', max_tokens: 64 });

    const promptTokens = 7 + 'be brief'.length + 'what is a saga?'.length;
    const { steps } = await governanceRecords(stack.db, runId);
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatchObject({ skill: 'llm.chat', model: 'gpt-4o-mini', tokensIn: promptTokens, tokensOut: 42 });
    expect(steps[0]!.outputPreview).toMatch(/^stub answer/);
    expect(steps[0]!.costUsd).toBeCloseTo(costUsd('gpt-4o-mini', promptTokens, 42), 9);
    expect(run.tokens).toBe(promptTokens + 42);
  });
});

describe('llm.chat and the budget', () => {
  it('stops a run after an unbounded step (no maxTokens) that crossed the budget: the hard limit behind the reservation', async () => {
    const messages = [{ role: 'user', content: 'unbounded' }];
    const plan = [0, 1, 2].map(() => ({ skill: 'llm.chat', input: { messages, model: 'gpt-4o' } }));
    // The stub bills 16 prompt and 42 completion tokens: $0.00046 at gpt-4o prices.
    const runId = await stack.submitRun(tenant.apiKey, { plan, budgetUsd: 0.0003 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed_policy', errorCode: 'BUDGET_EXCEEDED', stepsCompleted: 1 });
    expect(run.costUsd).toBeGreaterThan(0.0003);
  });

  it('reserves a step with maxTokens against the budget before calling the provider', async () => {
    const messages = [{ role: 'user', content: 'bounded' }];
    const before = stub.requests.length;
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'llm.chat', input: { messages, maxTokens: 100_000 } }], budgetUsd: 0.5 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'BUDGET_EXCEEDED', stepsCompleted: 0, costUsd: 0 });
    expect(stub.requests.slice(before).some((r) => r.body?.messages?.[0]?.content === 'bounded')).toBe(false);
  });
});

describe('llm.chat when the provider refuses the request', () => {
  let refusing: Stack;
  beforeAll(async () => {
    refusing = await startStack({ llmBaseUrl: refusingStub.baseUrl });
  });
  afterAll(() => refusing?.close());

  it('fails the step at once on a 4xx, without retrying', async () => {
    const owner = await refusing.createTenant();
    const runId = await refusing.submitRun(owner.apiKey, { plan: [{ skill: 'llm.chat', input: { messages: [{ role: 'user', content: 'refuse me' }] } }] });
    const run = await refusing.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'STEP_FAILED' });
    expect(run.errorMessage).toMatch(/answered 400/);
    expect(refusingStub.requests.filter((r) => r.body?.messages?.[0]?.content === 'refuse me')).toHaveLength(1);
  });
});
