import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { and, asc, desc, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalContent, type EvidenceRecordLine } from '../core/evidence';
import { insertIncidentOnce } from '../db/incidents';
import { auditFindings, auditReconciliations, evidenceLinks, incidents, outbox, runControlEvents, stepOutputs, tenantEvidenceLinks, traceSteps } from '../db/schema';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { freshDatabase } from './helpers/fresh-database';
import { governed } from './helpers/governed-cli';
import { waitForPause } from './helpers/runs';
import { simPlan, startStack, type Stack, type TestTenant } from './helpers/stack';

/**
 * Tamper-evident evidence (issue 20, item 2), on the real stack: every record the audit contract
 * covers is chained in the transaction that writes it; the export of a clean run verifies offline;
 * an edit of one row behind the product's back (a step's cost, a control's actor, a stored output)
 * makes the offline check fail at that record and the reconciler report `tampered`, and putting
 * the row back mends both. Legitimate later moves (an incident resolved) are chained as new links.
 */

let database: Awaited<ReturnType<typeof freshDatabase>>;
let stack: Stack;
let tenant: TestTenant;
let runId: string;
const dir = mkdtempSync(path.join(os.tmpdir(), 'governed-evidence-'));

beforeAll(async () => {
  database = await freshDatabase('evidence');
  stack = await startStack({ databaseUrl: database.url });
  // Every sim.llm step waits for a person: the run records a pause and a resume with their actor.
  tenant = await stack.createTenant({ policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 600, pauseWarningSeconds: 60 } });
  runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
  await waitForPause(stack.db, runId);
  const resumed = await stack.request('POST', `/api/v1/runs/${runId}/resume`, { apiKey: tenant.apiKey, body: { reason: 'checked by a person' } });
  expect(resumed.status).toBe(200);
  await stack.waitForPhase(runId, ['COMPLETED']);
  await stack.client.workflow.getHandle(runId).result();
});
afterAll(async () => {
  await stack?.close();
  await database?.drop();
});

const cli = (...args: string[]) => governed([...args, '--api-url', stack.baseUrl, '--api-key', tenant.apiKey]);

/** One reconciliation pass, through the real workflow on the stack's worker. */
function pass() {
  return stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `audit-pass-${randomUUID()}`, args: [{}] });
}

/** `governed runs evidence RUN > file`, then `governed evidence verify file`. */
async function exportAndVerify(label: string) {
  const exported = await cli('runs', 'evidence', runId);
  expect(exported.code, exported.stderr).toBe(0);
  const file = path.join(dir, `${label}.jsonl`);
  writeFileSync(file, exported.stdout);
  const verified = await governed(['evidence', 'verify', file]);
  const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string } & Partial<EvidenceRecordLine>);
  return { verified, lines, file };
}

/** The seq of the record's latest link. */
async function latestSeqOf(kind: string, key: string): Promise<number> {
  const [link] = await stack.db
    .select({ seq: evidenceLinks.seq })
    .from(evidenceLinks)
    .where(and(eq(evidenceLinks.runId, runId), eq(evidenceLinks.recordKind, kind), eq(evidenceLinks.recordKey, key)))
    .orderBy(desc(evidenceLinks.seq))
    .limit(1);
  return link!.seq;
}

async function tamperedFinding() {
  const [row] = await stack.db.select().from(auditFindings).where(and(eq(auditFindings.runId, runId), eq(auditFindings.check, 'tampered')));
  return row;
}

describe('evidence of a run', () => {
  it('chains every covered record once, in the order written, and anchors the run in its tenant chain', async () => {
    const links = await stack.db.select().from(evidenceLinks).where(eq(evidenceLinks.runId, runId)).orderBy(asc(evidenceLinks.seq));
    expect(links.map((l) => l.seq)).toEqual(links.map((_, i) => i + 1));
    expect(links[0]).toMatchObject({ recordKind: 'run', recordKey: runId, prevHash: '0'.repeat(64), tenantId: tenant.tenantId });
    for (let i = 1; i < links.length; i += 1) expect(links[i]!.prevHash).toBe(links[i - 1]!.hash);
    const kinds = new Set(links.map((l) => l.recordKind));
    for (const kind of ['run', 'trace', 'trace_step', 'output', 'incident', 'evaluation', 'log', 'ack', 'control']) expect(kinds, kind).toContain(kind);
    // Insert-once records are chained once however often their activity ran: one link per ack row.
    const [acks] = await stack.db.execute<{ n: number }>(sql`select count(*)::int as n from domain_acks where run_id = ${runId}`);
    expect(links.filter((l) => l.recordKind === 'ack')).toHaveLength(acks!.n);
    expect(new Set(links.filter((l) => l.recordKind === 'ack').map((l) => l.recordKey)).size).toBe(acks!.n);
    // Two controls (the pause and the resume), with the resume's actor in its record.
    expect(links.filter((l) => l.recordKind === 'control')).toHaveLength(2);
    const [anchor] = await stack.db.select().from(tenantEvidenceLinks).where(eq(tenantEvidenceLinks.runId, runId));
    const anchored = links.find((l) => l.seq === anchor!.runSeq)!;
    expect(anchored).toMatchObject({ recordKind: 'ack', hash: anchor!.runHash });
  });

  it('exports a clean run that verifies offline, and the reconciler finds it COMPLETE', async () => {
    const { verified, lines } = await exportAndVerify('clean');
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toContain(`evidence of run ${runId} holds`);
    expect(verified.stdout).toContain("anchored in its tenant's chain");
    expect(lines[0]).toMatchObject({ type: 'evidence', format: 'governed-evidence/1', runId, tenantId: tenant.tenantId });
    expect(lines.at(-1)).toMatchObject({ type: 'tenant_link', tenantId: tenant.tenantId });
    const control = lines.find((l) => l.kind === 'control' && l.content?.kind === 'resume')!;
    expect(control.content).toMatchObject({ accepted: 'true', detail: 'checked by a person' });
    expect(control.content!.actor).toMatch(/\S/);

    await pass();
    const [row] = await stack.db.select().from(auditReconciliations).where(eq(auditReconciliations.runId, runId));
    expect(row!.verdict).toBe('COMPLETE');
    expect(await tamperedFinding()).toBeUndefined();
  });

  it('answers 409 for a run that has not ended, and 404 for another tenant', async () => {
    const other = await stack.createTenant();
    const missing = await stack.request('GET', `/api/v1/runs/${runId}/evidence`, { apiKey: other.apiKey });
    expect(missing.status).toBe(404);
    const live = await stack.submitRun(tenant.apiKey, { plan: simPlan(1) });
    await waitForPause(stack.db, live);
    const early = await stack.request('GET', `/api/v1/runs/${live}/evidence`, { apiKey: tenant.apiKey });
    expect(early.status).toBe(409);
    expect(early.body).toMatchObject({ code: 'RUN_NOT_FINISHED' });
    await stack.request('POST', `/api/v1/runs/${live}/stop`, { apiKey: tenant.apiKey, body: { reason: 'not needed' } });
    await stack.waitForPhase(live, 'terminal');
  });

  const edits = [
    {
      what: "a step's cost",
      kind: 'trace_step',
      async target() {
        const [step] = await stack.db.select().from(traceSteps).where(eq(traceSteps.runId, runId));
        return step!.id;
      },
      edit: (id: string) => sql`update trace_steps set cost_usd = cost_usd + 0.01 where id = ${id}`,
      restore: (id: string, before: Record<string, unknown>) => sql`update trace_steps set cost_usd = ${before.cost_usd as number} where id = ${id}`,
    },
    {
      what: "a control's actor",
      kind: 'control',
      async target() {
        const [control] = await stack.db.select().from(runControlEvents).where(and(eq(runControlEvents.runId, runId), eq(runControlEvents.kind, 'resume')));
        return control!.id;
      },
      edit: (id: string) => sql`update run_control_events set actor = 'someone-else' where id = ${id}`,
      restore: (id: string, before: Record<string, unknown>) => sql`update run_control_events set actor = ${before.actor as string} where id = ${id}`,
    },
    {
      what: 'a stored output',
      kind: 'output',
      async target() {
        const [output] = await stack.db.select().from(stepOutputs).where(eq(stepOutputs.runId, runId));
        return output!.id;
      },
      edit: (id: string) => sql`update step_outputs set content = content || ' (edited)' where id = ${id}`,
      restore: (id: string, before: Record<string, unknown>) => sql`update step_outputs set content = ${before.content as string} where id = ${id}`,
    },
  ];

  for (const e of edits) {
    it(`fails at the record when ${e.what} is edited in Postgres, the reconciler reports tampered, and putting it back mends both`, async () => {
      const id = await e.target();
      const table = { trace_step: 'trace_steps', control: 'run_control_events', output: 'step_outputs' }[e.kind]!;
      const [before] = await stack.db.execute<Record<string, unknown>>(sql`select * from ${sql.identifier(table)} where id = ${id}`);
      const seq = await latestSeqOf(e.kind, id);

      await stack.db.execute(e.edit(id));
      const broken = await exportAndVerify(`${e.kind}-edited`);
      expect(broken.verified.code).toBe(1);
      expect(broken.verified.stderr).toContain(`record #${seq} (${e.kind} ${id})`);
      expect(broken.verified.stderr).toContain('changed after it was chained');
      const json = await governed(['--json', 'evidence', 'verify', broken.file]);
      expect(json.code).toBe(1);
      expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, runId, break: { seq, kind: e.kind, key: id, because: 'CONTENT_CHANGED' } });

      // The edit made the reconciled run due (a trigger); the next pass finds the broken chain.
      await pass();
      const finding = await tamperedFinding();
      expect(finding).toMatchObject({ severity: 'HIGH', subjects: [`${e.kind}:${id}`], resolvedAt: null });
      expect(finding!.summary).toContain(`record #${seq}`);
      const [verdict] = await stack.db.select().from(auditReconciliations).where(eq(auditReconciliations.runId, runId));
      expect(verdict!.verdict).toBe('INCOMPLETE');
      const [incident] = await stack.db.select().from(incidents).where(eq(incidents.id, finding!.incidentId!));
      expect(incident).toMatchObject({ kind: 'audit', severity: 'HIGH', errorCode: 'AUDIT_TAMPERED', status: 'open' });
      const events = await stack.db.select().from(outbox).where(and(eq(outbox.runId, runId), eq(outbox.topic, 'audit.reconciliation.tampered')));
      expect(events.length).toBeGreaterThanOrEqual(1);

      await stack.db.execute(e.restore(id, before!));
      const mended = await exportAndVerify(`${e.kind}-restored`);
      expect(mended.verified.code, mended.verified.stderr).toBe(0);
      await pass();
      expect((await tamperedFinding())!.resolvedAt).not.toBeNull();
      // The finding's incident, resolved by the system, is a legitimate move: chained, so the export still holds.
      const [resolved] = await stack.db.select().from(incidents).where(eq(incidents.id, finding!.incidentId!));
      expect(resolved!.status).toBe('resolved');
      const after = await exportAndVerify(`${e.kind}-after-resolution`);
      expect(after.verified.code, after.verified.stderr).toBe(0);
      const incidentLines = after.lines.filter((l) => l.kind === 'incident' && l.key === incident!.id);
      expect(incidentLines.map((l) => l.superseded)).toEqual([true, false]);
    });
  }

  it('fails at the link when a link is removed from the chain, and at the record when a row is deleted', async () => {
    const { lines, file } = await exportAndVerify('for-cuts');
    const records = lines.filter((l) => l.type === 'record');
    const cutAt = 3;
    const cut = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => !(l.includes('"type":"record"') && (JSON.parse(l) as EvidenceRecordLine).seq === cutAt))
      .join('\n');
    const cutFile = path.join(dir, 'cut.jsonl');
    writeFileSync(cutFile, cut);
    const verified = await governed(['--json', 'evidence', 'verify', cutFile]);
    expect(verified.code).toBe(1);
    expect(JSON.parse(verified.stdout).break).toMatchObject({ seq: cutAt + 1, kind: records[cutAt]!.kind, because: 'LINK_BROKEN' });

    // The pause's control row deleted: its link stays, and names it gone.
    const [pause] = await stack.db.select().from(runControlEvents).where(and(eq(runControlEvents.runId, runId), eq(runControlEvents.kind, 'pause')));
    const seq = await latestSeqOf('control', pause!.id);
    await stack.db.delete(runControlEvents).where(eq(runControlEvents.id, pause!.id));
    try {
      const gone = await exportAndVerify('row-deleted');
      expect(gone.verified.code).toBe(1);
      expect(gone.verified.stderr).toContain(`record #${seq} (control ${pause!.id})`);
      expect(gone.verified.stderr).toContain('deleted after it was chained');
    } finally {
      // Put back as it was: the insert is chained as a new version with the same content.
      await stack.db.insert(runControlEvents).values(pause!);
    }
    const restored = await exportAndVerify('row-restored');
    expect(restored.verified.code, restored.verified.stderr).toBe(0);
  });

  it('writes no second link for an insert-once record written again, and chains a new one', async () => {
    const count = async () => (await stack.db.select().from(evidenceLinks).where(eq(evidenceLinks.runId, runId))).length;
    const before = await count();
    const row = { runId, tenantId: tenant.tenantId, dedupeKey: `evidence-test:${randomUUID()}`, kind: 'tool' as const, severity: 'LOW' as const, message: 'a test incident' };
    const first = await stack.db.transaction((tx) => insertIncidentOnce(tx, row));
    const again = await stack.db.transaction((tx) => insertIncidentOnce(tx, row));
    expect(first.inserted && !again.inserted).toBe(true);
    expect(await count()).toBe(before + 1);
    expect(await latestSeqOf('incident', first.id)).toBe(before + 1);
  });

  it("writes a record's content in Postgres exactly as the offline check re-writes it", async () => {
    const values = {
      plain: 'abc',
      escapes: 'quote " backslash \\ newline \n tab \t control \u0001 delete \u007f',
      unicode: 'é 日本 😀 </script>',
      empty: '',
      nothing: null,
      Zupper: '1e-07',
    };
    const [row] = await stack.db.execute<{ text: string }>(sql`select evidence_canonical(${JSON.stringify(values)}::jsonb) as text`);
    expect(row!.text).toBe(canonicalContent(values));
  });
});
