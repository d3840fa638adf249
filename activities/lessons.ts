import { RECORD_LESSON, lessonOf, patternKeyOf, planKeyOf, proposeForBudget, proposeForToolApprovals, proposeForToolDenials, type ProposalDraft } from '../core/lessons';
import type { RunOutcome } from '../core/outcome';
import type { RunPhase } from '../core/phases';
import { recordAck } from '../db/acks';
import type { DbOrTx } from '../db/client';
import { insertLessonOnce, insertProposalOnce, lockPattern, markLessonRolledBack, nearMissFacts, planBudgetStats, planSkills, toolApprovalStats, toolDenialStats } from '../db/lessons';
import { writeEvents } from '../db/outbox';
import { currentPolicy } from '../db/tenancy';
import { ackRollback, type CompensationInput } from './compensation';
import type { ActivityDeps } from './deps';

export interface RecordLessonInput {
  runId: string;
  tenantId: string;
  outcome: RunOutcome;
  /** Where the run stood when its outcome was decided: the phase it ended in, the step it was at, its spend. */
  end: { phase: RunPhase; stepIndex: number; costUsd: number };
  policyVersion?: number;
}

/** What the saga's lesson step recorded: nothing (the run had nothing to teach), or the lesson it is filed under. */
export type RecordedLesson =
  | { lessonId: null }
  | { lessonId: string; kind: 'failure' | 'near_miss'; code: string; patternKey: string; stepIndex: number | null; tool: string | null };

/**
 * Stores a proposal the tenant has not had yet for this pattern and change, with its
 * `policy.proposed` event, in the caller's transaction. A proposal changes nothing by itself.
 */
export async function proposeOnce(tx: DbOrTx, scope: { runId: string; tenantId: string }, draft: ProposalDraft | null, basedOnVersion: number): Promise<string | null> {
  if (!draft) return null;
  const proposal = await insertProposalOnce(tx, scope.tenantId, draft, basedOnVersion);
  if (!proposal) return null;
  await writeEvents(tx, scope, [
    {
      topic: 'policy.proposed',
      dedupeKey: `policy.proposed:${proposal.id}`,
      payload: { proposalId: proposal.id, kind: proposal.kind, patternKey: proposal.patternKey, reason: proposal.reason, basedOnVersion },
    },
  ]);
  return proposal.id;
}

/** After a person approved a call of `tool`: every approval of it so far granted may propose dropping the approval. */
export async function proposeAfterApproval(tx: DbOrTx, scope: { runId: string; tenantId: string }, tool: string): Promise<string | null> {
  await lockPattern(tx, scope.tenantId, `APPROVED:tool:${tool}`);
  const policy = await currentPolicy(tx, scope.tenantId);
  return proposeOnce(tx, scope, proposeForToolApprovals(await toolApprovalStats(tx, scope.tenantId, tool), policy.rules), policy.version);
}

export function createLessonActivities({ db, metrics }: ActivityDeps) {
  /**
   * The governance saga's lesson step (seed FIX-002): what the run's outcome and its records say it
   * has to teach, stored once per run with its ack; nothing at all (no row, no ack) when it has
   * nothing to teach, as its audit contract expects (the incident step declared whether it owes
   * one). A new lesson whose pattern crosses a threshold proposes a policy change.
   */
  async function recordLesson(input: RecordLessonInput): Promise<RecordedLesson> {
    const { runId, tenantId } = input;
    return db.transaction(async (tx) => {
      const skills = await planSkills(tx, runId);
      const lesson = lessonOf(input.outcome, { ...input.end, skills }, await nearMissFacts(tx, runId));
      if (!lesson) {
        metrics.domainWrites.inc({ domain: 'lessons', action: 'record_lesson', result: 'none' });
        return { lessonId: null };
      }
      const { primary } = lesson;
      const patternKey = patternKeyOf(primary);
      const planKey = planKeyOf(skills);
      const { id, inserted } = await insertLessonOnce(tx, {
        runId,
        tenantId,
        kind: lesson.kind,
        code: primary.code,
        phase: primary.phase,
        stepIndex: primary.stepIndex,
        skill: primary.skill,
        tool: primary.tool,
        policyRule: primary.policyRule,
        spendUsd: primary.spendUsd,
        detail: primary.detail,
        patternKey,
        planKey,
        policyVersion: input.policyVersion ?? null,
        observations: lesson.observations,
      });
      await recordAck(tx, { runId, action: RECORD_LESSON, status: 'OK', resultId: id, metadata: { code: primary.code, patternKey } });
      // Only these patterns have a rule that may propose a change.
      if (inserted && ((primary.code === 'TOOL_DENIED' && primary.tool) || primary.code === 'BUDGET_EXCEEDED')) {
        const scope = { runId, tenantId };
        const proposalPattern = primary.code === 'BUDGET_EXCEEDED' ? `BUDGET_EXCEEDED:plan:${planKey}` : patternKey;
        await lockPattern(tx, tenantId, proposalPattern);
        const policy = await currentPolicy(tx, tenantId);
        if (primary.code === 'TOOL_DENIED' && primary.tool) {
          await proposeOnce(tx, scope, proposeForToolDenials(await toolDenialStats(tx, tenantId, patternKey, primary.tool), policy.rules), policy.version);
        }
        if (primary.code === 'BUDGET_EXCEEDED') {
          // This run is not final yet: it is counted here.
          const stats = await planBudgetStats(tx, tenantId, planKey);
          const withThis = { ...stats, runs: stats.runs + 1, budgetExceeded: stats.budgetExceeded + 1, highestSpendUsd: Math.max(stats.highestSpendUsd, input.end.costUsd) };
          await proposeOnce(tx, scope, proposeForBudget(withThis, policy.rules), policy.version);
        }
      }
      metrics.domainWrites.inc({ domain: 'lessons', action: 'record_lesson', result: inserted ? 'inserted' : 'existing' });
      return { lessonId: id, kind: lesson.kind, code: primary.code, patternKey, stepIndex: primary.stepIndex, tool: primary.tool };
    });
  }

  /** Compensation: the lesson is marked rolled back (it leaves the patterns), never deleted. */
  async function rollbackLesson(input: CompensationInput): Promise<{ undone: boolean }> {
    return db.transaction(async (tx) => ackRollback(tx, RECORD_LESSON, input, await markLessonRolledBack(tx, input.runId)));
  }

  return { recordLesson, rollbackLesson };
}
