import type { PolicyCheckRequest, PolicyCheckResponse } from '../core/contracts';
import { and, eq } from 'drizzle-orm';
import { EVALUATE_POLICY } from '../core/audit';
import type { RunOutcome } from '../core/outcome';
import { decidePolicy, summarizeViolations, type PolicyDecision, type Violation } from '../core/policy-check';
import { currentPolicy, policyVersion, tenantStatus } from '../db/tenancy';
import type { DbOrTx } from '../db/client';
import { policyEvaluations } from '../db/schema';
import { recordAck } from '../db/acks';
import { ackRollback, type CompensationInput } from './compensation';
import type { ActivityDeps } from './deps';
import { recordMoves, submittedPolicyVersion } from '../db/runs';
import { countMoves } from './runs';

/** Outcomes that are themselves policy violations; others are compliant as far as policy goes. */
const POLICY_VIOLATIONS = new Set(['AUTHORIZATION_DENIED', 'BUDGET_EXCEEDED', 'POLICY_TERMINATED', 'PAUSE_TIMEOUT', 'TOOL_CALL_LIMIT', 'TOOL_DENIED']);

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

async function recordedCheck(tx: DbOrTx, input: PolicyCheckRequest): Promise<PolicyCheckResponse | null> {
  const [recorded] = await tx
    .select()
    .from(policyEvaluations)
    .where(and(eq(policyEvaluations.runId, input.runId), eq(policyEvaluations.dedupeKey, `check:${input.checkNumber}`)));
  if (!recorded) return null;
  const rules = (await policyVersion(tx, input.tenantId, recorded.policyVersion))?.rules ?? (await currentPolicy(tx, input.tenantId)).rules;
  const violations = recorded.violations as Violation[];
  return {
    decision: recorded.decision as PolicyDecision,
    reason: recorded.reason,
    violations,
    pauseReason: recorded.decision === 'SKIP' ? null : summarizeViolations(violations).pauseReason,
    policyVersion: recorded.policyVersion,
    rules,
  };
}

export function createPolicyActivities({ db, metrics }: ActivityDeps) {
  /**
   * A fresh decision from the current policy, tenant status and the run's spend, recorded as a
   * mid-run policy evaluation with its reason and violations.
   */
  async function checkPolicy(input: PolicyCheckRequest): Promise<PolicyCheckResponse> {
    const end = metrics.policyCheckDuration.startTimer();
    let made: Awaited<ReturnType<typeof recordMoves>> = [];
    const response = await db.transaction(async (tx): Promise<PolicyCheckResponse> => {
      made = await recordMoves(tx, input.transitions);
      const current = await currentPolicy(tx, input.tenantId);
      // A retry of a check that already committed returns the recorded decision, not a new one:
      // the run must act on exactly what the evaluation row says.
      const recorded = await recordedCheck(tx, input);
      if (recorded) return recorded;
      const known = (await policyVersion(tx, input.tenantId, input.knownPolicyVersion)) ?? current;
      const result = decidePolicy({
        current,
        known,
        tenantStatus: await tenantStatus(tx, input.tenantId),
        stopRequested: input.stopRequested,
        runBudgetUsd: input.runBudgetUsd,
        costUsd: input.costUsd,
        tokens: input.tokens,
        stepsCompleted: input.stepsCompleted,
        remainingSkills: input.remainingSkills,
        nextStepApproved: input.nextStepApproved,
        actionsCompleted: input.actionsCompleted,
      });
      const inserted = await tx
        .insert(policyEvaluations)
        .values({
          runId: input.runId,
          tenantId: input.tenantId,
          dedupeKey: `check:${input.checkNumber}`,
          kind: 'mid_run',
          stepIndex: input.stepIndex,
          decision: result.decision,
          reason: result.reason,
          violations: result.violations,
          policyVersion: current.version,
        })
        .onConflictDoNothing()
        .returning({ id: policyEvaluations.id });
      // Lost a race with a concurrent attempt of the same check: its row is the decision.
      if (!inserted.length) return (await recordedCheck(tx, input))!;
      metrics.policyChecks.inc({ decision: result.decision });
      return { ...result, policyVersion: current.version, rules: current.rules };
    });
    countMoves(metrics, made);
    end();
    return response;
  }

  /** `policyVersion`: the version the run holds at its end (it may have accepted a newer one mid-run); the stored run's submit-time version otherwise. */
  async function evaluatePolicy(input: { runId: string; tenantId: string; outcome: RunOutcome; policyVersion?: number }): Promise<{ evaluationId: string }> {
    const evaluation = finalEvaluation(input.outcome);
    return db.transaction(async (tx) => {
      const submitted = await submittedPolicyVersion(tx, input.runId);
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
          policyVersion: input.policyVersion ?? submitted ?? 0,
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

  return { checkPolicy, evaluatePolicy, rollbackPolicyEvaluation };
}
