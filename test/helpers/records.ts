import { asc, eq } from 'drizzle-orm';
import { expect } from 'vitest';
import { RECORD_LESSON, RUN_EXPECTATIONS, itemActionKind } from '../../core/audit';
import type { Db } from '../../db/client';
import { auditExpectations, domainAcks, incidents, outbox, policyEvaluations, runLogs, traceSteps, traces } from '../../db/schema';

export async function governanceRecords(db: Db, runId: string) {
  const [incidentRows, evaluations, traceRows, steps, logs, acks, expectations, events] = await Promise.all([
    db.select().from(incidents).where(eq(incidents.runId, runId)).orderBy(asc(incidents.createdAt)),
    db.select().from(policyEvaluations).where(eq(policyEvaluations.runId, runId)).orderBy(asc(policyEvaluations.createdAt)),
    db.select().from(traces).where(eq(traces.runId, runId)),
    db.select().from(traceSteps).where(eq(traceSteps.runId, runId)).orderBy(asc(traceSteps.stepIndex)),
    db.select().from(runLogs).where(eq(runLogs.runId, runId)),
    db.select().from(domainAcks).where(eq(domainAcks.runId, runId)).orderBy(asc(domainAcks.createdAt)),
    db.select().from(auditExpectations).where(eq(auditExpectations.runId, runId)),
    db.select().from(outbox).where(eq(outbox.runId, runId)).orderBy(asc(outbox.id)),
  ]);
  // The contract's own acks apart from each step's, turn's and call's (`core/audit.ts` RunItem).
  const itemAcks = acks.filter((a) => itemActionKind(a));
  return { incidents: incidentRows, evaluations, traces: traceRows, steps, logs, acks: acks.filter((a) => !itemActionKind(a)), itemAcks, expectations, events };
}

/** The closing invariant: one of each domain record, and exactly one OK ack per expectation. */
export async function expectFullGovernanceRecords(db: Db, runId: string) {
  const records = await governanceRecords(db, runId);
  expect(records.incidents.filter((i) => i.dedupeKey === 'outcome')).toHaveLength(1);
  expect(records.evaluations.filter((e) => e.kind === 'final')).toHaveLength(1);
  expect(records.traces).toHaveLength(1);
  expect(records.traces[0]!.status).toBe('completed');
  expect(records.logs).toHaveLength(1);
  const okAcks = records.acks.filter((a) => a.status === 'OK').map((a) => `${a.domain}/${a.action}`);
  // The contract of T0, and the run's lesson when its outcome or near misses gave it one to learn.
  const declared = records.expectations.filter((e) => !itemActionKind(e)).map((e) => `${e.domain}/${e.action}`);
  const contract = RUN_EXPECTATIONS.map((e) => `${e.domain}/${e.action}`);
  const lesson = `${RECORD_LESSON.domain}/${RECORD_LESSON.action}`;
  expect(declared.sort()).toEqual((declared.includes(lesson) ? [...contract, lesson] : contract).sort());
  expect(okAcks.sort()).toEqual(declared.sort());
  expect(records.expectations.every((e) => e.deadlineAt !== null)).toBe(true);
  // Each step recorded is acked once, naming its stored output.
  for (const step of records.steps.filter((s) => s.kind === 'step' && s.status === 'ok')) {
    const acked = records.itemAcks.filter((a) => a.action === `record_step:${step.stepIndex}` && a.status === 'OK');
    expect(acked.map((a) => a.resultId)).toEqual([step.outputId]);
  }
  return records;
}
