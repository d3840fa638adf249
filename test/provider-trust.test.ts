/**
 * What a provider (and a tool server) sends is not trusted: a key it echoes never reaches Temporal
 * history, a table, the outbox or an output; usage that is no token count fails the step with a
 * code of its own; a billed model the price table does not know is priced at the dearest known rate
 * and the step's record says so. The real workflow and activities, Postgres and Temporal; the model
 * is the loopback stub, scripted by the first message's text.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRICE_TABLE, costUsd, dearestPrice } from '../core/pricing';
import { domainAcks, stepOutputs, traceSteps } from '../db/schema';
import { agentPolicy, filesystemServer, scriptedModel, tempFolder, toolResults } from './helpers/agent';
import { governanceRecords } from './helpers/records';
import { startLlmStub, type StubMessage, type StubReply, type StubRequest } from './helpers/llm-stub';
import { startStack, type Stack, type TestTenant } from './helpers/stack';

/** The worker's LLM key in this file: distinctive, so that any trace of it anywhere is found. */
const KEY = 'sk-test-SECRET-1234567890abcdef';
/** What would betray the key even cut or re-encoded: its tail. */
const FRAGMENTS = ['SECRET-1234567890abcdef', '1234567890abcdef'];

const files = tempFolder('governed-provider-trust-');
const scripts = new Map<string, (body: { messages: StubMessage[] }, request: StubRequest) => StubReply>();
let stub: Awaited<ReturnType<typeof startLlmStub>>;
let stack: Stack;
let tenant: TestTenant;

beforeAll(async () => {
  writeFileSync(path.join(files.folder, 'config.txt'), `api_key used by the worker: ${KEY}\n`);
  stub = await startLlmStub({
    reply: (body, _n, request) => {
      const script = scripts.get(body.messages[0]?.content ?? '');
      return script ? script(body, request) : { content: 'no script for this prompt' };
    },
  });
  stack = await startStack({ llmBaseUrl: stub.baseUrl, llmApiKey: KEY, toolServers: filesystemServer(files.folder) });
  tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'] }) });
});
afterAll(async () => {
  await stack?.close();
  await stub?.close();
  files.remove();
});

function chatRun(prompt: string, script: (body: { messages: StubMessage[] }, request: StubRequest) => StubReply, input: Record<string, unknown> = {}) {
  scripts.set(prompt, script);
  return { plan: [{ skill: 'llm.chat', input: { messages: [{ role: 'user', content: prompt }], maxTokens: 100, ...input } }] };
}

/** Every string in the run's workflow history, its payloads decoded. */
async function historyText(runId: string): Promise<string> {
  const history = await stack.client.workflow.getHandle(runId).fetchHistory();
  const texts: string[] = [];
  const pending: unknown[] = [history];
  const decoder = new TextDecoder();
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (typeof next === 'string') texts.push(next);
    else if (next instanceof Uint8Array) texts.push(decoder.decode(next));
    else if (next !== null && typeof next === 'object') pending.push(...Object.values(next));
  }
  return texts.join('\n');
}

/** The tables that hold a row with `text` anywhere in it (the whole row as text: jsonb included). */
async function tablesHolding(text: string): Promise<string[]> {
  const sql = stack.database.sql;
  const tables = await sql<{ table_name: string }[]>`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`;
  const holding: string[] = [];
  for (const { table_name } of tables) {
    const [found] = await sql<{ n: number }[]>`select count(*)::int as n from ${sql(table_name)} t where t::text like ${`%${text}%`}`;
    if (found!.n > 0) holding.push(table_name);
  }
  return holding;
}

async function expectNoTraceOfTheKey(runId: string): Promise<void> {
  const history = await historyText(runId);
  for (const fragment of FRAGMENTS) {
    expect(history, 'workflow history').not.toContain(fragment);
    expect(await tablesHolding(fragment), 'tables').toEqual([]);
  }
}

describe('a provider that echoes the API key', () => {
  it('fails the step on its 401 with the key redacted from the message, the history, every table and the outbox', async () => {
    const before = stub.requests.length;
    const runId = await stack.submitRun(
      tenant.apiKey,
      chatRun('echo my key back', (_body, request) => ({
        status: 401,
        // As a careless provider might: the header quoted, the key alone, and a header dump.
        errorBody: JSON.stringify({
          error: { message: `Incorrect API key provided: ${request.authorization}. You passed ${KEY}.`, type: 'invalid_request_error' },
          headers: { authorization: request.authorization, 'x-api-key': KEY },
        }),
      })),
    );
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'STEP_FAILED' });
    expect(run.errorMessage).toMatch(/answered 401/);
    expect(run.errorMessage).toContain('Incorrect API key provided: Bearer [REDACTED]');
    expect(run.errorMessage).not.toContain('sk-test');
    // The stub did receive the key: what it echoed was the real thing, and the call was not retried.
    const sent = stub.requests.slice(before).filter((r) => r.body?.messages?.[0]?.content === 'echo my key back');
    expect(sent.map((r) => r.authorization)).toEqual([`Bearer ${KEY}`]);

    const records = await governanceRecords(stack.db, runId);
    expect(records.incidents.length).toBeGreaterThan(0);
    expect(records.incidents.some((i) => i.message.includes('[REDACTED]'))).toBe(true);
    expect(records.events.length).toBeGreaterThan(0);
    expect(JSON.stringify(records)).not.toContain('SECRET');
    expect(await historyText(runId)).toContain('Bearer [REDACTED]');
    await expectNoTraceOfTheKey(runId);
  });

  it("takes the worker's key out of a model's reply, and leaves the rest of it (an sk- example included) as the model wrote it", async () => {
    const example = 'sk-proj-EXAMPLEexampleEXAMPLE0000';
    const runId = await stack.submitRun(tenant.apiKey, chatRun('leak it in the reply', () => ({ content: `Your key is ${KEY}; an example key looks like ${example}.` })));
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED' });
    const [output] = await stack.db.select().from(stepOutputs).where(eq(stepOutputs.runId, runId));
    expect(output!.content).toBe(`Your key is [REDACTED]; an example key looks like ${example}.`);
    const [ack] = await stack.db.select().from(domainAcks).where(and(eq(domainAcks.runId, runId), eq(domainAcks.action, 'record_step:0')));
    expect(ack!.metadata).toMatchObject({ redactedSecrets: 1 });
    await expectNoTraceOfTheKey(runId);
  });

  it("takes the worker's key out of a tool's result before the model or any record sees it", async () => {
    const instructions = 'read the config file';
    scripts.set(
      instructions,
      scriptedModel([
        () => ({ content: null, toolCalls: [{ name: 'fs__read_text_file', arguments: JSON.stringify({ path: path.join(files.folder, 'config.txt') }) }] }),
        (messages) => ({ content: `The file says: ${toolResults(messages).at(-1)}` }),
      ]),
    );
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'agent', input: { instructions, maxTurns: 4, maxTokens: 100 } }] });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', toolCalls: 1 });
    const seen = stub.requests.filter((r) => r.body?.messages?.[0]?.content === instructions).flatMap((r) => toolResults(r.body.messages));
    expect(seen.at(-1)).toBe('api_key used by the worker: [REDACTED]\n');
    await expectNoTraceOfTheKey(runId);
  });
});

describe("a provider's usage", () => {
  const odd: [string, StubReply['usage'], RegExp][] = [
    ['negative', { prompt_tokens: -5, completion_tokens: 3 }, /usage\.prompt_tokens is -5: a token count must be a whole number from 0 to 10000000/],
    ['fractional', { prompt_tokens: 12, completion_tokens: 2.5 }, /usage\.completion_tokens is 2\.5:/],
    ['absurd', { prompt_tokens: 20_000_000_000, completion_tokens: 1 }, /usage\.prompt_tokens is 20000000000:/],
    ['a string', { prompt_tokens: '12; drop table runs', completion_tokens: 1 }, /usage\.prompt_tokens is a string, not a number/],
    ['missing', null, /no token usage \(usage is missing\)/],
  ];

  for (const [name, usage, message] of odd) {
    it(`that is ${name} fails the step LLM_USAGE_INVALID, naming the field, without a retry or a write`, async () => {
      const prompt = `usage ${name}`;
      const runId = await stack.submitRun(tenant.apiKey, chatRun(prompt, () => ({ content: 'answer', usage })));
      const run = await stack.waitForPhase(runId, 'terminal');
      expect(run).toMatchObject({ phase: 'FAILED', status: 'failed', errorCode: 'LLM_USAGE_INVALID', stepsCompleted: 0, costUsd: 0, tokens: 0 });
      expect(run.errorMessage).toMatch(message);
      expect(run.errorMessage).not.toMatch(/insert|select|drop table|violates/i);
      expect(stub.requests.filter((r) => r.body?.messages?.[0]?.content === prompt)).toHaveLength(1);
      expect(await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId))).toEqual([]);
    });
  }

  it('of a model the price table does not know is priced at the dearest known rate, and the step record says so', async () => {
    const runId = await stack.submitRun(tenant.apiKey, chatRun('bill a mystery model', () => ({ content: 'answer', model: 'mystery-model-9', usage: { prompt_tokens: 1000, completion_tokens: 100 } }), { model: 'gpt-4o-mini' }));
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED' });
    const dearest = dearestPrice(PRICE_TABLE);
    const expected = Math.round(((1000 * dearest.inputPer1k + 100 * dearest.outputPer1k) / 1000) * 1e6) / 1e6;
    expect(expected).toBeGreaterThan(costUsd('gpt-4o-mini', 1000, 100));
    const [row] = await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId));
    expect(row).toMatchObject({ model: 'mystery-model-9', status: 'ok', errorCode: 'PRICED_AT_DEAREST_RATE', costUsd: expected, tokensIn: 1000, tokensOut: 100 });
    expect(run.costUsd).toBe(expected);
    const [ack] = await stack.db.select().from(domainAcks).where(and(eq(domainAcks.runId, runId), eq(domainAcks.action, 'record_step:0')));
    expect(ack).toMatchObject({ status: 'OK', metadata: expect.objectContaining({ billedModel: 'mystery-model-9', pricing: expect.stringMatching(/^dearest known rate/) }) });
  });

  it("of a dated snapshot of the requested model is priced as that model, without a note", async () => {
    const runId = await stack.submitRun(
      tenant.apiKey,
      chatRun('bill a snapshot', () => ({ content: 'answer', model: 'gpt-4o-mini-2024-07-18', usage: { prompt_tokens: 1000, completion_tokens: 100 } }), { model: 'gpt-4o-mini' }),
    );
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const [row] = await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId));
    expect(row).toMatchObject({ model: 'gpt-4o-mini-2024-07-18', errorCode: null, costUsd: costUsd('gpt-4o-mini', 1000, 100) });
  });
});
