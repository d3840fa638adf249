/**
 * Lessons learned end to end: the real workflow and its governance saga, Postgres, Temporal, the
 * filesystem MCP server from npm and the loopback model stub. A failed or near-miss run records
 * one lesson in its saga (once, and rolled back with the saga); lessons group into patterns; a
 * pattern past its threshold proposes a policy change that only an admin's accept makes.
 */
import path from 'node:path';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { verifyEvidence, type EvidenceRecordLine } from '../core/evidence';
import { PROPOSAL_THRESHOLDS } from '../core/lessons';
import { controlPushDeliveries, domainAcks, lessons, outbox, policyEvaluations } from '../db/schema';
import { agentPolicy, filesystemServer, scriptedModel, tempFolder } from './helpers/agent';
import { governed } from './helpers/governed-cli';
import { startLlmStub, type StubMessage, type StubReply } from './helpers/llm-stub';
import { waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';
import { waitFor } from './helpers/wait';

const files = tempFolder('governed-lessons-');

/** The run's evidence export (README, "Evidence"), verified offline, and its lesson's links. */
async function lessonEvidence(runId: string, apiKey: string) {
  const response = await fetch(`${stack.baseUrl}/api/v1/runs/${runId}/evidence`, { headers: { authorization: `Bearer ${apiKey}` } });
  expect(response.status).toBe(200);
  const body = await response.text();
  const verdict = verifyEvidence(body, (text) => createHash('sha256').update(text).digest('hex'));
  const links = body
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string } & Partial<EvidenceRecordLine>)
    .filter((l) => l.type === 'record' && l.kind === 'lesson');
  return { verdict, links };
}
const scripts = new Map<string, (body: { messages: StubMessage[] }) => StubReply>();
let stack: Stack;
let stub: Awaited<ReturnType<typeof startLlmStub>>;

beforeAll(async () => {
  stub = await startLlmStub({
    reply: (body) => {
      const script = scripts.get(body.messages[0]?.content ?? '');
      return script ? script(body) : { content: 'no script for these instructions' };
    },
  });
  stack = await startStack({ llmBaseUrl: stub.baseUrl, toolServers: filesystemServer(files.folder), maxDomainAttempts: 3 });
});
afterAll(async () => {
  await stack?.close();
  await stub?.close();
  files.remove();
});

const LESSON_KEY = 'lessons/record_lesson';

async function lessonRecords(runId: string) {
  const [rows, acks] = await Promise.all([
    stack.db.select().from(lessons).where(eq(lessons.runId, runId)),
    stack.db
      .select()
      .from(domainAcks)
      .where(and(eq(domainAcks.runId, runId), eq(domainAcks.domain, 'lessons'))),
  ]);
  return { rows, acks };
}

async function audit(runId: string, apiKey: string) {
  const answer = await stack.request('GET', `/api/v1/runs/${runId}/audit`, { apiKey });
  expect(answer.status).toBe(200);
  return answer.body as { verdict: string; missing: { domain: string; action: string; because: string }[]; drift: unknown[]; expectations: { domain: string; action: string; satisfied: boolean }[] };
}

/** A run that fails before its first step: its budget is far below what the step is predicted to cost. */
const overBudget = { plan: simPlan(1), budgetUsd: 0.000001 };

describe('a run that fails', () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await stack.createTenant();
  });

  it('records one structured lesson, acked once and expected by its contract, even when the step is retried after it committed', async () => {
    const runId = await stack.submitRun(tenant.apiKey, overBudget);
    stack.faults.add({ activity: 'recordLesson', runId, mode: 'failAfter', times: 1 });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'BUDGET_EXCEEDED', sagaPhase: 'EVENTS_PUBLISHED' });
    // The first attempt committed and its answer was lost: the retry found the lesson and wrote nothing twice.
    expect(stack.faults.hits('recordLesson', runId)).toBe(1);

    const { rows, acks } = await lessonRecords(runId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      kind: 'failure',
      code: 'BUDGET_EXCEEDED',
      phase: 'EXECUTING',
      stepIndex: 0,
      skill: 'sim.llm',
      tool: null,
      policyRule: 'budgetPerRunUsd',
      spendUsd: 0,
      patternKey: 'BUDGET_EXCEEDED:step:0:sim.llm',
      rolledBack: false,
    });
    expect(acks.map((a) => [a.action, a.status, a.resultId])).toEqual([['record_lesson', 'OK', rows[0]!.id]]);

    const report = await audit(runId, tenant.apiKey);
    expect(report.expectations.map((e) => `${e.domain}/${e.action}`)).toContain(LESSON_KEY);
    expect(report).toMatchObject({ verdict: 'COMPLETE', missing: [], drift: [] });

    // Announced once, with the saga's last write.
    const events = await stack.db.select().from(outbox).where(and(eq(outbox.runId, runId), eq(outbox.topic, 'lesson.recorded')));
    expect(events.map((e) => e.payload)).toEqual([expect.objectContaining({ lessonId: rows[0]!.id, code: 'BUDGET_EXCEEDED', kind: 'failure' })]);

    const listed = await stack.request('GET', `/api/v1/lessons?runId=${runId}`, { apiKey: tenant.apiKey });
    expect(listed.body.lessons).toEqual([expect.objectContaining({ id: rows[0]!.id, code: 'BUDGET_EXCEEDED' })]);
    // The lesson is part of the run's evidence, chained once like the incident and the evaluation.
    const evidence = await lessonEvidence(runId, tenant.apiKey);
    expect(evidence.verdict).toMatchObject({ ok: true, runId });
    expect(evidence.links.map((l) => [l.key, l.superseded, l.content?.code])).toEqual([[rows[0]!.id, false, 'BUDGET_EXCEEDED']]);
  });

  it('a run that succeeds cleanly records no lesson and owes none', async () => {
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1), budgetUsd: 1 });
    expect(await stack.waitForPhase(runId, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const { rows, acks } = await lessonRecords(runId);
    expect(rows).toHaveLength(0);
    expect(acks).toHaveLength(0);
    const report = await audit(runId, tenant.apiKey);
    expect(report.expectations.map((e) => `${e.domain}/${e.action}`)).not.toContain(LESSON_KEY);
    expect(report.verdict).toBe('COMPLETE');
  });

  it('a rolled-back saga rolls its lesson back (marked, never deleted), and the audit reports it missing', async () => {
    const runId = await stack.submitRun(tenant.apiKey, overBudget);
    stack.faults.add({ activity: 'completeTrace', runId, mode: 'fail' });
    const run = await stack.waitForPhase(runId, 'terminal');
    expect(run).toMatchObject({ phase: 'FAILED', errorCode: 'GOVERNANCE_ERROR', sagaPhase: 'ROLLED_BACK' });
    expect(run.errorMessage).toContain('governance saga failed after LESSON_RECORDED');

    const { rows, acks } = await lessonRecords(runId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.rolledBack).toBe(true);
    expect(acks.map((a) => a.status).sort()).toEqual(['OK', 'ROLLED_BACK']);
    expect(acks.find((a) => a.status === 'ROLLED_BACK')!.metadata).toMatchObject({ rollbackPhase: 'LESSON_RECORDED' });

    const report = await audit(runId, tenant.apiKey);
    expect(report.missing).toContainEqual({ domain: 'lessons', action: 'record_lesson', because: 'ROLLED_BACK' });
    // Its lesson was never announced, and it is no longer part of any pattern.
    expect(await stack.db.select().from(outbox).where(and(eq(outbox.runId, runId), eq(outbox.topic, 'lesson.recorded')))).toEqual([]);
    const listed = await stack.request('GET', `/api/v1/lessons?runId=${runId}`, { apiKey: tenant.apiKey });
    expect(listed.body.lessons).toEqual([]);
    // Its rollback is a move of the record the evidence chains: two links, the latest rolled back.
    const evidence = await lessonEvidence(runId, tenant.apiKey);
    expect(evidence.verdict).toMatchObject({ ok: true, runId });
    expect(evidence.links.map((l) => [l.superseded, l.content?.rolled_back ?? null])).toEqual([[true, null], [false, 'true']]);
  });
});

describe('20 denials of one tool', () => {
  const N = PROPOSAL_THRESHOLDS.toolDenials;
  const INSTRUCTIONS = 'write the report to a file';
  let tenant: TestTenant;
  let viewerKey: string;
  let runIds: string[];

  beforeAll(async () => {
    // The agent may list the folder, not write to it; a refused call fails the run.
    tenant = await stack.createTenant({ policy: agentPolicy({ allow: ['fs.list_directory'], onDenied: 'FAIL_RUN' }) });
    viewerKey = await stack.createKey(tenant.tenantId, 'viewer');
    scripts.set(
      INSTRUCTIONS,
      scriptedModel([() => ({ content: null, toolCalls: [{ name: 'fs__write_file', arguments: JSON.stringify({ path: path.join(files.folder, 'r.txt'), content: 'x' }) }] })]),
    );
    const body = { plan: [{ skill: 'agent', name: 'agent', input: { instructions: INSTRUCTIONS, maxTurns: 3, maxTokens: 200 } }] };
    runIds = await Promise.all(Array.from({ length: N }, () => stack.submitRun(tenant.apiKey, body)));
    for (const runId of runIds) expect(await stack.waitForPhase(runId, 'terminal', 120_000)).toMatchObject({ phase: 'FAILED', errorCode: 'TOOL_DENIED' });
  }, 240_000);

  it('make one pattern with its count, first and last seen, and one proposal with a diff of the policy', async () => {
    const patterns = await stack.request('GET', '/api/v1/lessons/patterns', { apiKey: viewerKey });
    expect(patterns.status).toBe(200);
    expect(patterns.body.patterns).toHaveLength(1);
    const [pattern] = patterns.body.patterns;
    expect(pattern).toMatchObject({ patternKey: 'TOOL_DENIED:tool:fs.write_file', code: 'TOOL_DENIED', tool: 'fs.write_file', stepIndex: 0, skill: 'agent', count: N });
    expect(Date.parse(pattern.firstSeen)).toBeLessThanOrEqual(Date.parse(pattern.lastSeen));
    const env = { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: viewerKey };
    const cliPatterns = await governed(['lessons', 'patterns'], env);
    expect(cliPatterns.code).toBe(0);
    expect(cliPatterns.stdout).toMatch(new RegExp(`^${N}\\s+TOOL_DENIED\\s+step 1 \\(agent\\) fs\\.write_file\\s.*TOOL_DENIED:tool:fs\\.write_file$`, 'm'));
    const cliList = await governed(['lessons', 'list', '--code', 'TOOL_DENIED', '--limit', '1', '--json'], env);
    expect(JSON.parse(cliList.stdout).lessons).toEqual([expect.objectContaining({ code: 'TOOL_DENIED', tool: 'fs.write_file', kind: 'failure', policyRule: 'tools.allow' })]);

    // Proposals quote the policy, which only admins read.
    expect((await stack.request('GET', '/api/v1/lessons/proposals', { apiKey: viewerKey })).status).toBe(403);
    const proposals = await stack.request('GET', '/api/v1/lessons/proposals', { apiKey: tenant.apiKey });
    expect(proposals.body.proposals).toHaveLength(1);
    const [proposal] = proposals.body.proposals;
    expect(proposal).toMatchObject({ kind: 'allow_tool_with_approval', status: 'open', patternKey: pattern.patternKey, applicable: true, basedOnVersion: 1, currentVersion: 1 });
    expect(proposal.diffText).toBe(
      ['- tools.allow: ["fs.list_directory"]', '+ tools.allow: ["fs.list_directory","fs.write_file"]', '- tools.requireApproval: []', '+ tools.requireApproval: ["fs.write_file"]'].join('\n'),
    );
    // Announced once through the outbox; the policy itself is untouched.
    const announced = await stack.db.select().from(outbox).where(and(eq(outbox.tenantId, tenant.tenantId), eq(outbox.topic, 'policy.proposed')));
    expect(announced).toHaveLength(1);
    const policy = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    expect(policy.body.version).toBe(1);

    // Each run owed its lesson and recorded it.
    for (const runId of runIds.slice(0, 3)) expect((await audit(runId, tenant.apiKey)).verdict).toBe('COMPLETE');
  });

  it('accepting it (admins only; other tenants cannot see it) makes the next policy version and reaches a live run', async () => {
    const [proposal] = (await stack.request('GET', '/api/v1/lessons/proposals?status=open', { apiKey: tenant.apiKey })).body.proposals;
    const other = await stack.createTenant();
    expect((await stack.request('GET', '/api/v1/lessons/proposals', { apiKey: other.apiKey })).body.proposals).toEqual([]);
    expect((await stack.request('POST', `/api/v1/lessons/proposals/${proposal.id}/accept`, { apiKey: other.apiKey, body: {} })).status).toBe(404);
    expect((await stack.request('POST', `/api/v1/lessons/proposals/${proposal.id}/accept`, { apiKey: viewerKey, body: {} })).status).toBe(403);

    // A live run, held in a pause while the policy changes.
    const live = await stack.submitRun(tenant.apiKey, { plan: simPlan(2, { latencyMs: 500 }), budgetUsd: 1 });
    await stack.waitForPhase(live, ['EXECUTING']);
    expect((await stack.request('POST', `/api/v1/runs/${live}/pause`, { apiKey: tenant.apiKey, body: { reason: 'hold while the policy changes' } })).status).toBe(202);
    await waitForPause(stack.db, live);

    const cli = await governed(['lessons', 'accept', proposal.id], { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`proposal ${proposal.id} accepted: policy version 2 saved`);

    const policy = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    expect(policy.body.version).toBe(2);
    expect(policy.body.rules.tools).toMatchObject({ allow: ['fs.list_directory', 'fs.write_file'], requireApproval: ['fs.write_file'], onDenied: 'FAIL_RUN' });

    // The push reached the live run, which checks the new version before its next step.
    await waitFor('the push to reach the live run', async () => {
      const [delivery] = await stack.db.select().from(controlPushDeliveries).where(eq(controlPushDeliveries.runId, live));
      return delivery?.outcome === 'signalled';
    });
    expect((await stack.request('POST', `/api/v1/runs/${live}/resume`, { apiKey: tenant.apiKey, body: { reason: 'go on' } })).status).toBeLessThan(300);
    expect(await stack.waitForPhase(live, 'terminal')).toMatchObject({ phase: 'COMPLETED' });
    const checks = await stack.db.select().from(policyEvaluations).where(and(eq(policyEvaluations.runId, live), eq(policyEvaluations.kind, 'mid_run')));
    expect(checks.map((c) => c.policyVersion)).toContain(2);

    const again = await stack.request('POST', `/api/v1/lessons/proposals/${proposal.id}/accept`, { apiKey: tenant.apiKey, body: {} });
    expect(again.status).toBe(409);
    expect((await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey })).body.version).toBe(2);
  }, 120_000);
});

describe('a plan that keeps running out of budget', () => {
  it('proposes a higher budget; dismissing it keeps the policy', async () => {
    const tenant = await stack.createTenant({ policy: { budgetPerRunUsd: 2 } });
    const { budgetExceededMinRuns } = PROPOSAL_THRESHOLDS;
    // The share is of finished runs: all but the last finish before it records its lesson.
    const first = await Promise.all(Array.from({ length: budgetExceededMinRuns - 1 }, () => stack.submitRun(tenant.apiKey, overBudget)));
    for (const runId of first) await stack.waitForPhase(runId, 'terminal');
    expect((await stack.request('GET', '/api/v1/lessons/proposals', { apiKey: tenant.apiKey })).body.proposals).toEqual([]);
    await stack.waitForPhase(await stack.submitRun(tenant.apiKey, overBudget), 'terminal');

    const [proposal] = (await stack.request('GET', '/api/v1/lessons/proposals', { apiKey: tenant.apiKey })).body.proposals;
    expect(proposal).toMatchObject({ kind: 'raise_budget', status: 'open', diffText: '- budgetPerRunUsd: 2\n+ budgetPerRunUsd: 3' });

    const listed = await governed(['lessons', 'proposals'], { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey });
    expect(listed.stdout).toContain('+ budgetPerRunUsd: 3');
    const dismissed = await governed(['lessons', 'dismiss', proposal.id], { GOVERNED_API_URL: stack.baseUrl, GOVERNED_API_KEY: tenant.apiKey });
    expect(dismissed).toMatchObject({ code: 0, stdout: `proposal ${proposal.id} dismissed; the policy is unchanged\n` });

    const policy = await stack.request('GET', '/api/v1/policies', { apiKey: tenant.apiKey });
    expect(policy.body).toMatchObject({ version: 1, rules: { budgetPerRunUsd: 2 } });
    expect((await stack.request('POST', `/api/v1/lessons/proposals/${proposal.id}/accept`, { apiKey: tenant.apiKey, body: {} })).status).toBe(409);
    // A dismissal stands: another run of the same pattern does not propose it again.
    await stack.waitForPhase(await stack.submitRun(tenant.apiKey, overBudget), 'terminal');
    const after = (await stack.request('GET', '/api/v1/lessons/proposals', { apiKey: tenant.apiKey })).body.proposals;
    expect(after.map((p: { status: string }) => p.status)).toEqual(['dismissed']);
    const patterns = (await stack.request('GET', '/api/v1/lessons/patterns', { apiKey: tenant.apiKey })).body.patterns;
    expect(patterns).toEqual([expect.objectContaining({ patternKey: 'BUDGET_EXCEEDED:step:0:sim.llm', count: budgetExceededMinRuns + 1 })]);
  }, 120_000);
});
