import { createHash } from 'node:crypto';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainAcks, stepOutputs, traceSteps } from '../db/schema';
import { startLlmStub, type StubMessage } from './helpers/llm-stub';
import { startStack, type Stack, type TestTenant } from './helpers/stack';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const MiB = 1024 * 1024;

let stack: Stack;
let tenant: TestTenant;
let stub: Awaited<ReturnType<typeof startLlmStub>>;

beforeAll(async () => {
  // The provider echoes what it was asked, so a test sees what a step's resolved input was.
  stub = await startLlmStub({ reply: (body) => ({ content: `echo: ${body.messages.map((m: StubMessage) => m.content).join(' | ')}` }) });
  stack = await startStack({ llmBaseUrl: stub.baseUrl });
  tenant = await stack.createTenant();
});
afterAll(async () => {
  await stack?.close();
  await stub?.close();
});

async function outputOf(runId: string) {
  const res = await stack.request('GET', `/api/v1/runs/${runId}/output`, { apiKey: tenant.apiKey });
  expect(res.status).toBe(200);
  return res.body;
}

describe('whole outputs', () => {
  it('stores every step\'s whole output with its trace row and ack, and serves the run\'s output', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'first' } }, { skill: 'sim.llm', input: { prompt: 'second', outputBytes: 5000 } }] });
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const body = await outputOf(runId);
    expect(body.steps).toHaveLength(2);
    expect(body.output).toMatchObject({ stepIndex: 1, bytes: 5000, sha256: sha256(body.output.content) });
    expect(body.output.content).toHaveLength(5000);
    const rows = await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId)).orderBy(asc(traceSteps.stepIndex));
    const outputs = await stack.db.select().from(stepOutputs).where(eq(stepOutputs.runId, runId));
    expect(rows.map((r) => r.outputId).sort()).toEqual(outputs.map((o) => o.id).sort());
    const acks = await stack.db.select().from(domainAcks).where(and(eq(domainAcks.runId, runId), eq(domainAcks.domain, 'logs')));
    expect(acks.filter((a) => a.action.startsWith('record_step:')).map((a) => [a.action, a.status, a.resultId])).toEqual(
      expect.arrayContaining(outputs.map((o) => [`record_step:${o.stepIndex}`, 'OK', o.id])),
    );
    const single = await stack.request('GET', `/api/v1/runs/${runId}/steps/0/output`, { apiKey: tenant.apiKey });
    expect(single.body).toMatchObject({ stepIndex: 0, content: body.steps[0].content });
  });

  it("is another tenant's run: 404, like a missing one", async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'mine' } }] });
    await stack.waitForPhase(runId, 'terminal');
    const other = await stack.createTenant();
    expect((await stack.request('GET', `/api/v1/runs/${runId}/output`, { apiKey: other.apiKey })).status).toBe(404);
    expect((await stack.request('GET', `/api/v1/runs/${runId}/steps/0/output`, { apiKey: other.apiKey })).status).toBe(404);
  });

  it('stores and serves a 1 MiB output whole, while no event of its history carries more than 256 KiB', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'big', outputBytes: MiB } }] });
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const raw = await fetch(`${stack.baseUrl}/api/v1/runs/${runId}/steps/0/output?raw=1`, { headers: { authorization: `Bearer ${tenant.apiKey}` } });
    const text = await raw.text();
    expect(text).toHaveLength(MiB);
    expect(sha256(text)).toBe((await outputOf(runId)).output.sha256);
    const history = await stack.client.workflow.getHandle(runId).fetchHistory();
    const largest = Math.max(...history.events!.map((e) => JSON.stringify(e).length));
    expect(largest).toBeLessThan(256 * 1024);
  });

  it('fails a step whose output is over the limit with OUTPUT_TOO_LARGE, never truncating it', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'too big', outputBytes: MiB + 1 } }, { skill: 'sim.llm', input: { prompt: 'never' } }] });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'OUTPUT_TOO_LARGE', stepsCompleted: 0 });
    expect(run.errorMessage).toMatch(/1048577 bytes, over the limit of 1048576/);
    expect(await stack.db.select().from(stepOutputs).where(eq(stepOutputs.runId, runId))).toHaveLength(0);
    const [row] = await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId));
    // The step ran and was paid for: its cost stands in the record.
    expect(row).toMatchObject({ status: 'failed', errorCode: 'OUTPUT_TOO_LARGE' });
    expect(row!.costUsd).toBeGreaterThan(0);
    expect(run.costUsd).toBe(row!.costUsd);
  });
});

describe('steps that use earlier results', () => {
  it("gives step 2 step 1's output, resolved in the activity, and records the resolved input's hash", async () => {
    const plan = [
      { skill: 'llm.chat', name: 'plan', input: { messages: [{ role: 'user', content: 'make a plan' }], maxTokens: 50 } },
      { skill: 'llm.chat', name: 'review', input: { messages: [{ role: 'user', content: 'review this: {{steps.plan.output}}' }], maxTokens: 50 } },
    ];
    const runId = await stack.submitRun(tenant.apiKey, { plan });
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const { steps } = await outputOf(runId);
    expect(steps[0].content).toBe('echo: make a plan');
    expect(steps[1].content).toBe('echo: review this: echo: make a plan');
    const rows = await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId)).orderBy(asc(traceSteps.stepIndex));
    const resolved = { messages: [{ role: 'user', content: 'review this: echo: make a plan' }], maxTokens: 50 };
    expect(rows[1]!.inputSha256).toBe(sha256(JSON.stringify(resolved)));
    // The history holds the template, never the text it became.
    const history = JSON.stringify((await stack.client.workflow.getHandle(runId).fetchHistory()).events);
    expect(history).not.toContain(Buffer.from('review this: echo').toString('base64'));
  });

  it('resolves a JSON pointer into an earlier JSON output, and fails REFERENCE_UNRESOLVED when nothing is there', async () => {
    const json = { messages: [{ role: 'user', content: 'x' }], maxTokens: 20 };
    const jsonStub = await startLlmStub({ reply: (body) => ({ content: body.messages[0]!.content === 'x' ? '{"items":[{"title":"first"}]}' : `got ${body.messages[0]!.content}` }) });
    const local = await startStack({ llmBaseUrl: jsonStub.baseUrl });
    try {
      const owner = await local.createTenant();
      const good = await local.submitRun(owner.apiKey, {
        plan: [{ skill: 'llm.chat', name: 'list', input: json }, { skill: 'llm.chat', input: { messages: [{ role: 'user', content: '{{steps.list.output#/items/0/title}}' }] } }],
      });
      expect(await local.waitForPhase(good, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
      const [, second] = (await local.db.select().from(stepOutputs).where(eq(stepOutputs.runId, good)).orderBy(asc(stepOutputs.stepIndex)));
      expect(second!.content).toBe('got first');
      const missing = await local.submitRun(owner.apiKey, {
        plan: [{ skill: 'llm.chat', name: 'list', input: json }, { skill: 'llm.chat', input: { messages: [{ role: 'user', content: '{{steps.list.output#/items/9}}' }] } }],
      });
      expect(await local.waitForPhase(missing, 'terminal')).toMatchObject({ phase: 'FAILED', errorCode: 'REFERENCE_UNRESOLVED', stepsCompleted: 1 });
    } finally {
      await local.close();
      await jsonStub.close();
    }
  });

  it('refuses at submit a reference forward, to itself or to no step, naming where it is (400, nothing written)', async () => {
    const cases: [unknown[], RegExp][] = [
      [[{ skill: 'sim.llm', input: { prompt: '{{steps.later.output}}' } }, { skill: 'sim.llm', name: 'later', input: { prompt: 'x' } }], /plan\.0\.input\.prompt: \{\{steps\.later\.output\}\} refers to step 'later': step 2 comes after this one/],
      [[{ skill: 'sim.llm', name: 'me', input: { prompt: '{{steps.me.output}}' } }], /a step cannot use its own output/],
      [[{ skill: 'sim.llm', input: { prompt: '{{steps.nobody.output}}' } }], /no step has that name/],
      [[{ skill: 'sim.llm', name: 'a', input: { prompt: 'x' } }, { skill: 'sim.llm', name: 'a', input: { prompt: 'y' } }], /plan\.1\.name: name 'a' is already step 1's/],
      [[{ skill: 'sim.llm', name: 'a', input: { prompt: 'x' } }, { skill: 'sim.llm', input: { prompt: '{{steps.a.output#items}}' } }], /must start with '\/'/],
      [[{ skill: 'sim.llm', name: '1bad', input: { prompt: 'x' } }], /plan\.0\.name/],
    ];
    for (const [plan, reason] of cases) {
      const res = await stack.request('POST', '/api/v1/runs', { apiKey: tenant.apiKey, body: { plan } });
      expect(res.status, JSON.stringify(plan)).toBe(400);
      expect(res.body.error).toMatch(reason);
    }
  });
});
