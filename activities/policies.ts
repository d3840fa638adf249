import { and, eq } from 'drizzle-orm';
import { EVALUATE_POLICY } from '../core/audit';
import type { RunOutcome } from '../core/outcome';
import { policyEvaluations, runs } from '../db/schema';
import { recordAck } from './audit';
import { ackRollback, type CompensationInput } from './compensation';
import type { ActivityDeps } from './deps';

/** Outcomes that are themselves policy violations; others are compliant as far as policy goes. */
const POLICY_VIOLATIONS = new Set(['AUTHORIZATION_DENIED', 'BUDGET_EXCEEDED', 'POLICY_TERMINATED', 'PAUSE_TIMEOUT']);

export function finalEvaluation(outcome: RunOutcome): { decision: 'COMPLIANT' | 'VIOLATION'; reason: string; violations: string[] } {
  if (outcome.kind === 'failed' && POLICY_VIOLATIONS.has(outcome.code)) {
    return { decision: 'VIOLATION', reason: outcome.message, violations: [outcome.code] };
  }
  return {
    decision: 'COMPLIANT',
    reason: outcome.kind === 'succeeded' ? 'run completed within policy' : `run failed (${outcome.code}) without a policy violation`,
    violations: [],
  };
}

export function createPolicyActivities({ db, metrics }: ActivityDeps) {
  async function evaluatePolicy(input: { runId: string; tenantId: string; outcome: RunOutcome }): Promise<{ evaluationId: string }> {
    const evaluation = finalEvaluation(input.outcome);
    return db.transaction(async (tx) => {
      const [run] = await tx.select({ policyVersion: runs.policyVersion }).from(runs).where(eq(runs.id, input.runId));
      const inserted = await tx
        .insert(policyEvaluations)
        .values({
          runId: input.runId,
          tenantId: input.tenantId,
          dedupeKey: 'final',
          kind: 'final',
          decision: evaluation.decision,
          reason: evaluation.reason,
          violations: evaluation.violations,
          policyVersion: run?.policyVersion ?? 0,
        })
        .onConflictDoNothing()
        .returning({ id: policyEvaluations.id });
      const id =
        inserted[0]?.id ??
        (
          await tx
            .select({ id: policyEvaluations.id })
            .from(policyEvaluations)
            .where(and(eq(policyEvaluations.runId, input.runId), eq(policyEvaluations.dedupeKey, 'final')))
        )[0]!.id;
      await recordAck(tx, { runId: input.runId, action: EVALUATE_POLICY, status: 'OK', resultId: id });
      metrics.domainWrites.inc({ domain: 'policies', action: 'evaluate_policy', result: inserted.length ? 'inserted' : 'existing' });
      return { evaluationId: id };
    });
  }

  async function rollbackPolicyEvaluation(input: CompensationInput): Promise<{ undone: boolean }> {
    return db.transaction(async (tx) => {
      const [row] = await tx
        .update(policyEvaluations)
        .set({ rolledBack: true })
        .where(and(eq(policyEvaluations.runId, input.runId), eq(policyEvaluations.dedupeKey, 'final')))
        .returning({ id: policyEvaluations.id });
      return ackRollback(tx, EVALUATE_POLICY, input, row?.id);
    });
  }

  return { evaluatePolicy, rollbackPolicyEvaluation };
}
