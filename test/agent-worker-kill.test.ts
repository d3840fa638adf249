/**
 * A worker SIGKILLed in the middle of a tool call, with real MCP servers: a call to a tool with side
 * effects is never run a second time because of us (it ends OUTCOME_UNKNOWN with an incident, and
 * the model is told); a call to a tool its server marks idempotent is retried and recorded once.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApp } from '../api/app';
import { domainAcks, incidents, stepOutputs, traceSteps } from '../db/schema';
import { freePort } from '../lib/listen';
import { startWorkerProcess as startProcess, type WorkerProcess } from '../testing/worker-process';
import { agentPolicy, everythingServerCommand, filesystemServer, scriptedModel, tempFolder, toolResults } from './helpers/agent';
import { startLlmStub, type StubMessage, type StubReply } from './helpers/llm-stub';
import { isListening, processesWithEnv } from './helpers/processes';
import { startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

const files = tempFolder('governed-kill-');
/** Every tool server process a worker of this file starts carries it, so the test can find them after the kill. */
const MARK = randomUUID();
const scripts = new Map<string, (body: { messages: StubMessage[] }) => StubReply>();

let stack: Stack;
let stub: Awaited<ReturnType<typeof startLlmStub>>;
let everything: ChildProcess;
let everythingUrl: string;
let server: Server;
let apiUrl: string;
const taskQueue = `agent-kill-${randomUUID()}`;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  stub = await startLlmStub({ reply: (body) => scripts.get(body.messages[0]?.content ?? '')?.(body) ?? { content: 'no script' } });
  stack = await startStack({ llmBaseUrl: stub.baseUrl });
  const port = await freePort();
  const { command, args, env } = everythingServerCommand(port);
  everything = spawn(command, args, { env: { ...process.env, ...env }, stdio: 'ignore' });
  await waitFor('the everything server', async () => isListening(port));
  everythingUrl = `http://127.0.0.1:${port}/mcp`;
  const app = createApp({ ...stack.apiDeps, taskQueue });
  server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  for (const w of workers) await w.kill();
  for (const { pid } of processesWithEnv('GOVERNED_KILL_TEST', MARK)) process.kill(pid, 'SIGKILL');
  server?.close();
  everything?.kill('SIGKILL');
  await stack?.close();
  await stub?.close();
  files.remove();
});

function startWorker(): Promise<WorkerProcess> {
  const fs = filesystemServer(files.folder).fs!;
  const toolServers = { fs: { ...fs, env: { GOVERNED_KILL_TEST: MARK } }, everything: { url: everythingUrl } };
  return startProcess({
    DATABASE_URL: inject('databaseUrl'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_TASK_QUEUE: taskQueue,
    WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
    WORKER_METRICS_PORT: '0',
    WORKER_SDK_METRICS_PORT: '0',
    EVENTS_IN_WORKER: 'false',
    LOG_LEVEL: 'info',
    LLM_BASE_URL: stub.baseUrl,
    LLM_API_KEY: 'test-key',
    TOOL_SERVERS: JSON.stringify(toolServers),
  }).then((w) => {
    workers.push(w);
    return w;
  });
}

async function submit(apiKey: string, instructions: string, script: ((messages: StubMessage[]) => StubReply)[]): Promise<string> {
  scripts.set(instructions, scriptedModel(script));
  const res = await fetch(`${apiUrl}/api/v1/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ plan: [{ skill: 'agent', input: { instructions, maxTurns: 5, maxTokens: 100 } }] }),
  });
  return ((await res.json()) as { runId: string }).runId;
}

const call = (name: string, args: Record<string, unknown>): StubReply => ({ content: null, toolCalls: [{ name, arguments: JSON.stringify(args) }] });

/** The call's trace row once an attempt has marked it sent. */
function callSent(runId: string) {
  return waitFor(
    'the tool call to be sent',
    async () => (await stack.db.select().from(traceSteps).where(and(eq(traceSteps.runId, runId), eq(traceSteps.kind, 'tool_call'), eq(traceSteps.status, 'started'))))[0],
    60_000,
  );
}

describe('a worker killed during a tool call', () => {
  it('does not repeat a call to a tool with side effects: OUTCOME_UNKNOWN, an incident, and the model told', async () => {
    // edit_file (not idempotent) of a FIFO nobody writes blocks in the server: the call is in flight.
    const fifo = path.join(files.folder, 'pipe.txt');
    execFileSync('mkfifo', [fifo]);
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'] }) });
    const first = await startWorker();
    const runId = await submit(tenant.apiKey, 'edit the pipe', [
      () => call('fs__edit_file', { path: fifo, edits: [{ oldText: 'a', newText: 'b' }] }),
      (messages) => ({ content: `what happened: ${toolResults(messages)[0]}` }),
    ]);
    await callSent(runId);
    await first.kill();
    // Its tool servers were its children: a machine that dies takes them with it.
    for (const { pid } of processesWithEnv('GOVERNED_KILL_TEST', MARK)) process.kill(pid, 'SIGKILL');
    await startWorker();

    const run = await stack.waitForPhase(runId, 'terminal', 120_000);
    expect(run).toMatchObject({ phase: 'COMPLETED', toolCalls: 1 });
    const rows = await stack.db.select().from(traceSteps).where(and(eq(traceSteps.runId, runId), eq(traceSteps.kind, 'tool_call')));
    expect(rows).toEqual([expect.objectContaining({ tool: 'fs.edit_file', status: 'outcome_unknown' })]);
    const [incident] = await stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'tool')));
    expect(incident).toMatchObject({ errorCode: 'OUTCOME_UNKNOWN', severity: 'HIGH' });
    const answer = (await stack.db.select().from(stepOutputs).where(and(eq(stepOutputs.runId, runId), eq(stepOutputs.kind, 'step'))))[0]!;
    expect(answer.content).toMatch(/outcome is unknown\. It was not repeated, because fs\.edit_file is not marked read-only or idempotent/);
    const acks = await stack.db.select().from(domainAcks).where(and(eq(domainAcks.runId, runId), eq(domainAcks.domain, 'tools')));
    expect(acks).toHaveLength(1);
    // Were the call repeated, the new worker's server would block on the FIFO again and the run never end.
  }, 180_000);

  it('retries a call to a tool its server marks idempotent, and records it once', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['everything.*'] }) });
    const first = await startWorker();
    const runId = await submit(tenant.apiKey, 'run the long operation', [
      () => call('everything__trigger-long-running-operation', { duration: 4, steps: 2 }),
      (messages) => ({ content: toolResults(messages)[0]! }),
    ]);
    await callSent(runId);
    await first.kill();
    await startWorker();
    const run = await stack.waitForPhase(runId, 'terminal', 120_000);
    expect(run).toMatchObject({ phase: 'COMPLETED', toolCalls: 1 });
    const rows = await stack.db.select().from(traceSteps).where(and(eq(traceSteps.runId, runId), eq(traceSteps.kind, 'tool_call')));
    expect(rows).toEqual([expect.objectContaining({ tool: 'everything.trigger-long-running-operation', status: 'ok' })]);
    const answer = (await stack.db.select().from(stepOutputs).where(and(eq(stepOutputs.runId, runId), eq(stepOutputs.kind, 'step'))))[0]!;
    expect(answer.content).toMatch(/Long running operation completed/);
    expect(await stack.db.select().from(incidents).where(and(eq(incidents.runId, runId), eq(incidents.kind, 'tool')))).toHaveLength(0);
    expect(await stack.db.select().from(domainAcks).where(and(eq(domainAcks.runId, runId), eq(domainAcks.domain, 'tools')))).toHaveLength(1);
  }, 180_000);
});
