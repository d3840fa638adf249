/**
 * Agents end to end: the real workflow and activities, Postgres, Temporal, and the filesystem MCP
 * server from npm, unmodified, over stdio. The model is the loopback stub, scripted per test by the
 * agent's instructions.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainAcks, incidents, stepOutputs, toolApprovals, traceSteps } from '../db/schema';
import { agentPolicy, filesystemServer, scriptedModel, tempFolder, toolResults } from './helpers/agent';
import { governed } from './helpers/governed-cli';
import { startLlmStub, type StubMessage, type StubReply } from './helpers/llm-stub';
import { storedRun } from './helpers/runs';
import { startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

const files = tempFolder('governed-agent-');
const NOTES = 'The launch code is 4-8-15-16. Do not share it.';

/** Each test's model, by the agent's instructions. */
const scripts = new Map<string, (body: { messages: StubMessage[] }) => StubReply>();
let stack: Stack;
let stub: Awaited<ReturnType<typeof startLlmStub>>;

beforeAll(async () => {
  writeFileSync(path.join(files.folder, 'notes.txt'), NOTES);
  stub = await startLlmStub({
    reply: (body) => {
      const script = scripts.get(body.messages[0]?.content ?? '');
      return script ? script(body) : { content: 'no script for these instructions' };
    },
  });
  stack = await startStack({ llmBaseUrl: stub.baseUrl, toolServers: filesystemServer(files.folder) });
});
afterAll(async () => {
  await stack?.close();
  await stub?.close();
  files.remove();
});

function agentRun(instructions: string, script: ((messages: StubMessage[]) => StubReply)[], input: Record<string, unknown> = {}) {
  scripts.set(instructions, scriptedModel(script));
  return { plan: [{ skill: 'agent', name: 'agent', input: { instructions, maxTurns: 10, maxTokens: 200, ...input } }] };
}

const call = (name: string, args: Record<string, unknown>): StubReply => ({ content: null, toolCalls: [{ name, arguments: JSON.stringify(args) }] });

async function itemsOf(runId: string) {
  const [rows, acks, outputs] = await Promise.all([
    stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId)).orderBy(asc(traceSteps.createdAt)),
    stack.db.select().from(domainAcks).where(eq(domainAcks.runId, runId)),
    stack.db.select().from(stepOutputs).where(eq(stepOutputs.runId, runId)),
  ]);
  return { rows, acks, outputs };
}

describe('an agent with a filesystem tool', () => {
  it('lists the folder, reads a file and answers quoting it: every turn and call recorded and acked once, audit COMPLETE', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'] }) });
    const body = agentRun('read the notes', [
      () => call('fs__list_directory', { path: files.folder }),
      () => call('fs__read_text_file', { path: path.join(files.folder, 'notes.txt') }),
      (messages) => ({ content: `The notes say: ${toolResults(messages).at(-1)}` }),
    ]);
    const runId = await stack.submitRun(tenant.apiKey, body);
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'COMPLETED', turns: 3, toolCalls: 2, stepsCompleted: 1 });

    const output = await stack.request('GET', `/api/v1/runs/${runId}/output`, { apiKey: tenant.apiKey });
    expect(output.body.output.content).toBe(`The notes say: ${NOTES}`);
    const cli = await governed(['runs', 'output', runId], { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey });
    expect(cli).toMatchObject({ code: 0, stdout: `The notes say: ${NOTES}\n` });

    // The model was offered the tools the policy allows, and saw what they returned.
    const offered = stub.requests.find((r) => r.body?.messages?.[0]?.content === 'read the notes')!.body.tools.map((t: { function: { name: string } }) => t.function.name);
    expect(offered).toEqual(expect.arrayContaining(['fs__list_directory', 'fs__read_text_file']));

    const { rows, acks, outputs } = await itemsOf(runId);
    expect(rows.map((r) => [r.kind, r.turn, r.callIndex, r.tool, r.status])).toEqual([
      ['turn', 0, null, null, 'ok'],
      ['tool_call', 0, 0, 'fs.list_directory', 'ok'],
      ['turn', 1, null, null, 'ok'],
      ['tool_call', 1, 0, 'fs.read_text_file', 'ok'],
      ['turn', 2, null, null, 'ok'],
    ]);
    const itemActions = acks.filter((a) => a.action.includes(':')).map((a) => `${a.domain}/${a.action}/${a.status}`).sort();
    expect(itemActions).toEqual(
      ['logs/model_turn:0.0/OK', 'logs/model_turn:0.1/OK', 'logs/model_turn:0.2/OK', 'tools/tool_call:0.0.0/OK', 'tools/tool_call:0.1.0/OK', 'logs/record_step:0/OK'].sort(),
    );
    expect(outputs.find((o) => o.turn === 1 && o.callIndex === 0)!.content).toBe(NOTES);
    const audit = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(audit.body).toMatchObject({ verdict: 'COMPLETE', missing: [], drift: [], phantom: [] });
    expect(audit.body.expectations.filter((e: { domain: string }) => e.domain === 'tools')).toHaveLength(2);
  });

  it('offers no tool the policy does not allow, and refuses a call to one, telling the model', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.read_text_file'] }) });
    const body = agentRun('try to write', [
      () => call('fs__write_file', { path: path.join(files.folder, 'evil.txt'), content: 'x' }),
      (messages) => ({ content: `told: ${toolResults(messages)[0]}` }),
    ]);
    const runId = await stack.submitRun(tenant.apiKey, body);
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const first = stub.requests.find((r) => r.body?.messages?.[0]?.content === 'try to write')!;
    expect(first.body.tools.map((t: { function: { name: string } }) => t.function.name)).toEqual(['fs__read_text_file']);
    expect(existsSync(path.join(files.folder, 'evil.txt'))).toBe(false);
    const output = await stack.request('GET', `/api/v1/runs/${runId}/output`, { apiKey: tenant.apiKey });
    expect(output.body.output.content).toMatch(/^told: The call to fs\.write_file was not run: the tenant's policy does not allow it/);
  });

  it('sends arguments that break the tool\'s schema back to the model, without calling the tool', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'] }) });
    const body = agentRun('bad args', [() => call('fs__read_text_file', { file: 'notes.txt' }), (messages) => ({ content: toolResults(messages)[0]! })]);
    const runId = await stack.submitRun(tenant.apiKey, body);
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const { rows } = await itemsOf(runId);
    expect(rows.find((r) => r.kind === 'tool_call')).toMatchObject({ status: 'invalid_arguments', costUsd: 0 });
    const output = await stack.request('GET', `/api/v1/runs/${runId}/output`, { apiKey: tenant.apiKey });
    expect(output.body.output.content).toMatch(/do not match its schema: .*path/);
  });
});

describe('a tool call that needs approval', () => {
  const writeScript = (file: string) => [() => call('fs__write_file', { path: file, content: 'approved content' }), (messages: StubMessage[]) => ({ content: `result: ${toolResults(messages)[0]}` })];

  it('pauses with the tool and its exact arguments; a stale hash is refused (409); the approval from the CLI runs the call', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], requireApproval: ['fs.write_file'] }) });
    const target = path.join(files.folder, 'approved.txt');
    const runId = await stack.submitRun(tenant.apiKey, agentRun('write with approval', writeScript(target)));
    const pending = await waitFor('the approval', async () => {
      const res = await stack.request('GET', '/api/v1/approvals', { apiKey: tenant.apiKey });
      return res.body.approvals.find((a: { runId: string }) => a.runId === runId);
    });
    expect(pending).toMatchObject({ status: 'pending', tool: 'fs.write_file', arguments: JSON.stringify({ path: target, content: 'approved content' }) });
    expect((await storedRun(stack.db, runId)).pauseReason).toBe('TOOL_APPROVAL');
    expect(existsSync(target)).toBe(false);

    const stale = await stack.request('POST', `/api/v1/runs/${runId}/approve`, { apiKey: tenant.apiKey, body: { argsSha256: '0'.repeat(64) } });
    expect(stale.status).toBe(409);
    expect(stale.body.error).toMatch(/is not the pending call's/);

    const cli = await governed(['approvals', 'approve', runId, pending.argsSha256, '--reason', 'looks right'], { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey });
    expect(cli.code, cli.stderr).toBe(0);
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    expect(readFileSync(target, 'utf8')).toBe('approved content');
    const [row] = await stack.db.select().from(toolApprovals).where(eq(toolApprovals.runId, runId));
    expect(row).toMatchObject({ status: 'approved', decidedBy: expect.stringMatching(/^api-key:/), authority: 'TENANT_ADMIN', reason: 'looks right', argsSha256: pending.argsSha256 });
    expect(row!.decidedAt).toBeInstanceOf(Date);
  });

  it('is denied: the model is told and goes on, and the file is never written', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], requireApproval: ['fs.*'] }) });
    const target = path.join(files.folder, 'denied.txt');
    const runId = await stack.submitRun(tenant.apiKey, agentRun('write, to be denied', writeScript(target)));
    const pending = await waitFor('the approval', async () => (await stack.request('GET', '/api/v1/approvals', { apiKey: tenant.apiKey })).body.approvals[0]);
    const denied = await stack.request('POST', `/api/v1/runs/${runId}/deny`, { apiKey: tenant.apiKey, body: { argsSha256: pending.argsSha256, reason: 'not in production' } });
    expect(denied.status).toBeLessThan(300);
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    expect(existsSync(target)).toBe(false);
    const output = await stack.request('GET', `/api/v1/runs/${runId}/output`, { apiKey: tenant.apiKey });
    expect(output.body.output.content).toMatch(/was not run: its approval was denied \(denied by api-key:.*: not in production\)/);
    expect((await stack.db.select().from(toolApprovals).where(eq(toolApprovals.runId, runId)))[0]).toMatchObject({ status: 'denied' });
  });

  it('runs out its SLA under TERMINATE: the run fails PAUSE_TIMEOUT, the call unrun and resolved', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], requireApproval: ['fs.*'] }, { pauseSlaSeconds: 2, pauseWarningSeconds: 1 }) });
    const target = path.join(files.folder, 'expired.txt');
    const runId = await stack.submitRun(tenant.apiKey, agentRun('write, to expire', writeScript(target)));
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'PAUSE_TIMEOUT' });
    expect(existsSync(target)).toBe(false);
    expect((await stack.db.select().from(toolApprovals).where(eq(toolApprovals.runId, runId)))[0]).toMatchObject({ status: 'expired' });
    const audit = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(audit.body).toMatchObject({ verdict: 'COMPLETE', missing: [] });
  });
});

describe('a runaway agent', () => {
  const forever = () => [() => call('fs__read_text_file', { path: path.join(files.folder, 'notes.txt') })];

  it('is ended by maxCallsPerRun, nothing spent over the budget', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], maxCallsPerRun: 4 }) });
    const runId = await stack.submitRun(tenant.apiKey, { ...agentRun('loop on calls', forever(), { maxTurns: 100 }), budgetUsd: 1 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'failed_policy', errorCode: 'TOOL_CALL_LIMIT', toolCalls: 5 });
    const { rows } = await itemsOf(runId);
    expect(rows.filter((r) => r.kind === 'tool_call').map((r) => r.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'limit']);
    expect(run.costUsd).toBeLessThanOrEqual(1);
    const audit = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(audit.body).toMatchObject({ verdict: 'COMPLETE', missing: [] });
  });

  it('is ended by its budget before a turn that could overrun it: spend never passes the budget', async () => {
    // Each call costs $0.005 by policy; a turn's bound (the filesystem server's tool definitions are
    // most of its prompt; priced at the dearest known rate) lets more than one turn run, not many.
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], maxCallsPerRun: 1000, prices: [{ pattern: 'fs.*', usd: 0.005 }] }) });
    const runId = await stack.submitRun(tenant.apiKey, { ...agentRun('loop on budget', forever(), { maxTurns: 1000, model: 'gpt-4o-mini' }), budgetUsd: 0.03 });
    const run = await stack.waitForPhase(runId, 'terminal', 90_000);
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'BUDGET_EXCEEDED' });
    expect(run.errorMessage, run.errorMessage ?? '').toMatch(/predicted overrun/);
    expect(run.costUsd).toBeLessThanOrEqual(0.03);
    expect(run.turns).toBeGreaterThan(1);
    expect(run.toolCalls).toBe(run.turns);
  });

  it('is stopped in the middle of the loop, at once', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], maxCallsPerRun: 10_000 }, { maxSteps: 10_000 }) });
    const runId = await stack.submitRun(tenant.apiKey, agentRun('loop until stopped', forever(), { maxTurns: 1000 }));
    await waitFor('a few turns', async () => ((await storedRun(stack.db, runId)).turns >= 3 ? true : undefined));
    const stopped = await stack.request('POST', `/api/v1/runs/${runId}/stop`, { apiKey: tenant.apiKey, body: { reason: 'runaway' } });
    expect(stopped.status).toBe(202);
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', status: 'cancelled', errorCode: 'STOPPED' });
    const turnsAtStop = run.turns;
    await new Promise((r) => setTimeout(r, 500));
    expect((await storedRun(stack.db, runId)).turns).toBe(turnsAtStop);
    const audit = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey });
    expect(audit.body).toMatchObject({ verdict: 'COMPLETE', missing: [] });
  });
});

describe('the audit of an agent run', () => {
  async function cleanAgentRun() {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'] }) });
    const runId = await stack.submitRun(
      tenant.apiKey,
      agentRun(`audited ${Math.random()}`, [() => call('fs__read_text_file', { path: path.join(files.folder, 'notes.txt') }), () => ({ content: 'read' })]),
    );
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const audit = async () => (await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey: tenant.apiKey })).body;
    expect(await audit()).toMatchObject({ verdict: 'COMPLETE' });
    return { runId, audit };
  }

  it('reports a tool call acked without its expectation as drift', async () => {
    const { runId, audit } = await cleanAgentRun();
    await stack.db.execute(`delete from audit_expectations where run_id = '${runId}' and domain = 'tools'` as never);
    expect(await audit()).toMatchObject({ verdict: 'INCOMPLETE', drift: [expect.objectContaining({ domain: 'tools', action: 'tool_call:0.0.0', kind: 'UNDECLARED_ACK' })] });
  });

  it('reports an expected call never resolved as missing', async () => {
    const { runId, audit } = await cleanAgentRun();
    await stack.db.delete(domainAcks).where(and(eq(domainAcks.runId, runId), eq(domainAcks.domain, 'tools')));
    expect(await audit()).toMatchObject({ verdict: 'INCOMPLETE', missing: [{ domain: 'tools', action: 'tool_call:0.0.0', because: 'NO_ACK' }] });
  });

  it('reports an ack whose stored output is gone as phantom', async () => {
    const { runId, audit } = await cleanAgentRun();
    await stack.db.update(traceSteps).set({ outputId: null }).where(eq(traceSteps.runId, runId));
    await stack.db.delete(stepOutputs).where(and(eq(stepOutputs.runId, runId), eq(stepOutputs.callIndex, 0)));
    expect(await audit()).toMatchObject({ verdict: 'INCOMPLETE', phantom: [expect.objectContaining({ domain: 'tools', action: 'tool_call:0.0.0', because: 'ROW_MISSING' })] });
  });

  it('records no incident for a clean agent run', async () => {
    const { runId } = await cleanAgentRun();
    const rows = await stack.db.select().from(incidents).where(eq(incidents.runId, runId));
    expect(rows.map((r) => r.kind)).toEqual(['none']);
  });
});
