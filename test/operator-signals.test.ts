/**
 * What an operator sends with the real `temporal` CLI: an approval as a plain `resume` signal with
 * the arguments' hash, and a signal whose payload the SDK cannot decode, which the run records as
 * refused instead of failing its workflow tasks for ever.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { agentPolicy, filesystemServer, scriptedModel, tempFolder, toolResults } from './helpers/agent';
import { startLlmStub } from './helpers/llm-stub';
import { controlEvents, storedRun } from './helpers/runs';
import { startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

const run = promisify(execFile);
const temporal = (...args: string[]) => run(inject('temporalCliPath'), [...args, '--address', inject('temporalAddress')]);

const files = tempFolder('governed-operator-');
let stack: Stack;
let stub: Awaited<ReturnType<typeof startLlmStub>>;

beforeAll(async () => {
  const target = path.join(files.folder, 'approved-by-cli.txt');
  stub = await startLlmStub({
    reply: scriptedModel([
      () => ({ content: null, toolCalls: [{ name: 'fs__write_file', arguments: JSON.stringify({ path: target, content: 'by the operator' }) }] }),
      (messages) => ({ content: `done: ${toolResults(messages)[0]}` }),
    ]),
  });
  stack = await startStack({ llmBaseUrl: stub.baseUrl, toolServers: filesystemServer(files.folder) });
});
afterAll(async () => {
  await stack?.close();
  await stub?.close();
  files.remove();
});

describe('signals an operator sends with temporal', () => {
  it('approves a tool call with the resume signal quoting the hash', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'], requireApproval: ['fs.write_file'] }) });
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'agent', input: { instructions: 'write it', maxTurns: 4 } }] });
    const pending = await waitFor('the approval', async () => (await stack.request('GET', '/api/v1/approvals', { apiKey: tenant.apiKey })).body.approvals[0]);
    // Without the hash, the signal is refused and recorded, and the file stays unwritten.
    await temporal('workflow', 'signal', '--workflow-id', runId, '--name', 'resume', '--input', '{"actor":"ops","authority":"TENANT_ADMIN"}');
    await waitFor('the refusal', async () => (await controlEvents(stack.db, runId)).find((e) => e.kind === 'resume' && !e.accepted));
    expect(existsSync(path.join(files.folder, 'approved-by-cli.txt'))).toBe(false);
    await temporal('workflow', 'signal', '--workflow-id', runId, '--name', 'resume', '--input', JSON.stringify({ actor: 'ops', authority: 'TENANT_ADMIN', argsSha256: pending.argsSha256 }));
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    expect(readFileSync(path.join(files.folder, 'approved-by-cli.txt'), 'utf8')).toBe('by the operator');
  });

  it('records a signal it cannot decode as refused, and the run goes on', async () => {
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'slow', latencyMs: 1500 } }, { skill: 'sim.llm', input: { prompt: 'then' } }] });
    await stack.waitForPhase(runId, ['EXECUTING']);
    await temporal('workflow', 'signal', '--workflow-id', runId, '--name', 'pause', '--input', '"opaque"', '--input-meta', 'encoding=binary/encrypted');
    const finished = await stack.waitForPhase(runId, 'terminal');
    expect(finished).toMatchObject({ phase: 'COMPLETED', stepsCompleted: 2 });
    const refused = (await controlEvents(stack.db, runId)).filter((e) => !e.accepted);
    expect(refused).toEqual([expect.objectContaining({ kind: 'pause', detail: expect.stringMatching(/cannot be decoded/) })]);
    expect((await storedRun(stack.db, runId)).pauseReason).toBeNull();
  });
});
