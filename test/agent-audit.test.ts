/**
 * The reconciler over agent runs, through its real workflow on a database of the file's own: clean
 * agent runs (turns, tool calls declared and resolved, outputs stored) make no finding at all, and
 * an executed call whose expectation was removed behind the system's back is found in one pass.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditExpectations, auditFindings } from '../db/schema';
import { mapLimit } from '../lib/map-limit';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { agentPolicy, filesystemServer, scriptedModel, tempFolder, toolResults } from './helpers/agent';
import { freshDatabase } from './helpers/fresh-database';
import { startLlmStub } from './helpers/llm-stub';
import { startStack, type Stack } from './helpers/stack';

const files = tempFolder('governed-agent-audit-');
let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;
let stub: Awaited<ReturnType<typeof startLlmStub>>;

beforeAll(async () => {
  writeFileSync(path.join(files.folder, 'notes.txt'), 'audited notes');
  stub = await startLlmStub({
    reply: scriptedModel([
      () => ({ content: null, toolCalls: [{ name: 'fs__read_text_file', arguments: JSON.stringify({ path: path.join(files.folder, 'notes.txt') }) }] }),
      (messages) => ({ content: `read: ${toolResults(messages)[0]}` }),
    ]),
  });
  database = await freshDatabase('agent_audit');
  stack = await startStack({ databaseUrl: database.url, llmBaseUrl: stub.baseUrl, toolServers: filesystemServer(files.folder) });
}, 120_000);
afterAll(async () => {
  await stack?.close();
  await database?.drop();
  await stub?.close();
  files.remove();
});

function pass() {
  return stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `audit-pass-${randomUUID()}`, args: [{}] });
}

describe('reconciling agent runs', () => {
  it('finds nothing in 200 clean agent runs, and an undeclared call in one pass', async () => {
    const tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.*'] }) });
    const body = { plan: [{ skill: 'agent', input: { instructions: 'read the notes', maxTurns: 4, maxTokens: 100 } }] };
    const runIds = await mapLimit(Array.from({ length: 200 }), 10, () => stack.submitRun(tenant.apiKey, body));
    await mapLimit(runIds, 10, async (runId) => expect(await stack.waitForPhase(runId, 'terminal', 120_000)).toMatchObject({ phase: 'COMPLETED', toolCalls: 1 }));

    const clean = await pass();
    expect(clean.runs).toBe(200);
    expect(clean.verdicts).toEqual({ COMPLETE: 200 });
    expect(clean.findingsOpened).toBe(0);
    const declared = await stack.db.select({ n: sql<number>`count(*)::int` }).from(auditExpectations).where(eq(auditExpectations.domain, 'tools'));
    expect(declared[0]!.n).toBe(200);

    const tampered = runIds[7]!;
    await stack.db.delete(auditExpectations).where(and(eq(auditExpectations.runId, tampered), eq(auditExpectations.domain, 'tools')));
    const next = await pass();
    expect(next).toMatchObject({ runs: 1, findingsOpened: 1 });
    const findings = await stack.db.select().from(auditFindings).where(eq(auditFindings.runId, tampered));
    expect(findings).toEqual([expect.objectContaining({ check: 'drift', subjects: [expect.stringMatching(/^ack:tools\/tool_call:0\.0\.0:/)] })]);
  }, 240_000);
});
