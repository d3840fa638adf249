import { describe, expect, it } from 'vitest';
import {
  PROPOSAL_THRESHOLDS,
  applyChanges,
  diffText,
  lessonOf,
  owesLesson,
  patternKeyOf,
  policyDiff,
  proposeForBudget,
  proposeForToolApprovals,
  proposeForToolDenials,
  type NearMissFacts,
} from '../../core/lessons';
import type { RunOutcome } from '../../core/outcome';
import { DEFAULT_POLICY, DEFAULT_TOOL_POLICY, type PolicyRules } from '../../core/policy';

const NONE: NearMissFacts = { toolCalls: [], budgetWarning: null, pauseTimeouts: [] };
const SUCCEEDED: RunOutcome = { kind: 'succeeded' };
const failed = (code: Extract<RunOutcome, { kind: 'failed' }>['code']): RunOutcome => ({ kind: 'failed', status: 'failed_policy', code, message: code });
const END = { phase: 'EXECUTING' as const, stepIndex: 1, costUsd: 0.42, skills: ['sim.llm', 'agent', 'sim.llm'] };
const policy = (tools: Partial<PolicyRules['tools']> = {}, rules: Partial<PolicyRules> = {}): PolicyRules => ({
  ...DEFAULT_POLICY,
  ...rules,
  tools: { ...DEFAULT_TOOL_POLICY, ...tools },
});

describe("a run's lesson", () => {
  it('a clean success teaches nothing and owes nothing; a stop by a person neither', () => {
    expect(lessonOf(SUCCEEDED, END, NONE)).toBeNull();
    expect(owesLesson(SUCCEEDED, NONE)).toBe(false);
    expect(lessonOf(failed('STOPPED'), END, NONE)).toBeNull();
    expect(owesLesson(failed('STOPPED'), NONE)).toBe(false);
  });

  it('a failure is filed with its code, phase, step, skill, policy rule and spend', () => {
    const lesson = lessonOf(failed('BUDGET_EXCEEDED'), END, NONE)!;
    expect(lesson.kind).toBe('failure');
    expect(lesson.primary).toEqual({
      code: 'BUDGET_EXCEEDED',
      phase: 'EXECUTING',
      stepIndex: 1,
      skill: 'agent',
      tool: null,
      policyRule: 'budgetPerRunUsd',
      spendUsd: 0.42,
      detail: null,
    });
    expect(owesLesson(failed('BUDGET_EXCEEDED'), NONE)).toBe(true);
    // A run that never executed (denied at submit) has no step.
    expect(lessonOf(failed('AUTHORIZATION_DENIED'), { ...END, phase: 'CREATED', stepIndex: 3 }, NONE)!.primary).toMatchObject({ phase: 'CREATED', stepIndex: null, skill: null });
  });

  it('near misses of a run that succeeded make a lesson: a refused call, a warning, a pause that ran out, an unknown outcome', () => {
    const facts: NearMissFacts = {
      toolCalls: [
        { stepIndex: 1, tool: 'fs.write_file', resolution: 'not_allowed', spendUsd: 0.1 },
        { stepIndex: 1, tool: 'fs.delete', resolution: 'outcome_unknown', spendUsd: 0.2 },
        // Resolutions that are not near misses are not lessons.
        { stepIndex: 1, tool: 'fs.read', resolution: 'ok', spendUsd: 0.3 },
      ],
      budgetWarning: { stepIndex: 2, spendUsd: 0.4 },
      pauseTimeouts: [{ detail: 'MANUAL_PAUSE pause ran out its SLA of 60s' }],
    };
    const lesson = lessonOf(SUCCEEDED, END, facts)!;
    expect(lesson.kind).toBe('near_miss');
    expect(lesson.observations.map((o) => o.code)).toEqual(['TOOL_DENIED', 'OUTCOME_UNKNOWN', 'BUDGET_WARNING', 'PAUSE_TIMEOUT']);
    expect(lesson.primary).toMatchObject({ code: 'TOOL_DENIED', tool: 'fs.write_file', stepIndex: 1, skill: 'agent', policyRule: 'tools.allow', spendUsd: 0.1, detail: 'not_allowed' });
    expect(lesson.observations[2]).toMatchObject({ skill: 'sim.llm', policyRule: 'warningThresholdPct', spendUsd: 0.4 });
    expect(owesLesson(SUCCEEDED, facts)).toBe(true);
    // A person's denial names the approval rule.
    const denied = lessonOf(SUCCEEDED, END, { ...NONE, toolCalls: [{ stepIndex: 0, tool: 'fs.x', resolution: 'denied', spendUsd: 0 }] })!;
    expect(denied.primary.policyRule).toBe('tools.requireApproval');
  });

  it('a failure a tool call caused is filed under that tool, so it joins the tool pattern of near misses', () => {
    const facts: NearMissFacts = { ...NONE, toolCalls: [{ stepIndex: 0, tool: 'fs.write_file', resolution: 'not_allowed', spendUsd: 0.05 }] };
    const lesson = lessonOf(failed('TOOL_DENIED'), { ...END, stepIndex: 0 }, facts)!;
    expect(lesson.primary).toMatchObject({ code: 'TOOL_DENIED', tool: 'fs.write_file', detail: 'not_allowed', spendUsd: 0.42 });
    expect(patternKeyOf(lesson.primary)).toBe(patternKeyOf(lessonOf(SUCCEEDED, END, facts)!.primary));
    expect(patternKeyOf(lesson.primary)).toBe('TOOL_DENIED:tool:fs.write_file');
    expect(patternKeyOf({ code: 'STEP_FAILED', stepIndex: 2, skill: 'chat', tool: null })).toBe('STEP_FAILED:step:2:chat');
  });
});

describe('proposals', () => {
  const N = PROPOSAL_THRESHOLDS.toolDenials;

  it('a tool the policy refused N times proposes allowing it behind an approval; N-1 times proposes nothing', () => {
    const rules = policy({ allow: ['fs.read_file'] });
    expect(proposeForToolDenials({ tool: 'fs.write_file', byPolicy: N - 1, byPerson: 0, approved: 0 }, rules)).toBeNull();
    const draft = proposeForToolDenials({ tool: 'fs.write_file', byPolicy: N, byPerson: 0, approved: 0 }, rules)!;
    expect(draft.kind).toBe('allow_tool_with_approval');
    const after = applyChanges(rules, draft.changes)!;
    expect(after.tools.allow).toEqual(['fs.read_file', 'fs.write_file']);
    expect(after.tools.requireApproval).toEqual(['fs.write_file']);
    expect(diffText(policyDiff(rules, after))).toBe(
      ['- tools.allow: ["fs.read_file"]', '+ tools.allow: ["fs.read_file","fs.write_file"]', '- tools.requireApproval: []', '+ tools.requireApproval: ["fs.write_file"]'].join('\n'),
    );
    // Allowed since (by a pattern): nothing to propose.
    expect(proposeForToolDenials({ tool: 'fs.write_file', byPolicy: N, byPerson: 0, approved: 0 }, policy({ allow: ['fs.*'] }))).toBeNull();
  });

  it('a tool people denied N times and never approved proposes no longer offering it', () => {
    const rules = policy({ allow: ['fs.read_file', 'fs.rm'], requireApproval: ['fs.rm'] });
    const draft = proposeForToolDenials({ tool: 'fs.rm', byPolicy: 0, byPerson: N, approved: 0 }, rules)!;
    expect(draft.kind).toBe('disallow_tool');
    expect(applyChanges(rules, draft.changes)!.tools).toMatchObject({ allow: ['fs.read_file'], requireApproval: [] });
    // One approval says people do want it sometimes.
    expect(proposeForToolDenials({ tool: 'fs.rm', byPolicy: 0, byPerson: N, approved: 1 }, rules)).toBeNull();
  });

  it('a tool approved N of N times proposes dropping its approval; one denial or expiry proposes nothing', () => {
    const rules = policy({ allow: ['fs.*'], requireApproval: ['fs.write_file'] });
    const n = PROPOSAL_THRESHOLDS.toolApprovals;
    const draft = proposeForToolApprovals({ tool: 'fs.write_file', approved: n, denied: 0, expired: 0 }, rules)!;
    expect(draft.kind).toBe('drop_tool_approval');
    expect(applyChanges(rules, draft.changes)!.tools.requireApproval).toEqual([]);
    expect(proposeForToolApprovals({ tool: 'fs.write_file', approved: n - 1, denied: 0, expired: 0 }, rules)).toBeNull();
    expect(proposeForToolApprovals({ tool: 'fs.write_file', approved: n, denied: 1, expired: 0 }, rules)).toBeNull();
    expect(proposeForToolApprovals({ tool: 'fs.write_file', approved: n, denied: 0, expired: 1 }, rules)).toBeNull();
  });

  it('30% of a plan’s runs out of budget (of at least 10) proposes a higher budget; less does not', () => {
    const rules = policy({}, { budgetPerRunUsd: 2 });
    const draft = proposeForBudget({ planKey: 'sim.llm>sim.llm', runs: 10, budgetExceeded: 3, highestSpendUsd: 1.9 }, rules)!;
    expect(draft.kind).toBe('raise_budget');
    expect(draft.changes).toEqual([{ op: 'set', path: 'budgetPerRunUsd', value: 3 }]);
    expect(policyDiff(rules, applyChanges(rules, draft.changes)!)).toEqual([{ path: 'budgetPerRunUsd', before: 2, after: 3 }]);
    expect(proposeForBudget({ planKey: 'p', runs: 10, budgetExceeded: 2, highestSpendUsd: 1.9 }, rules)).toBeNull();
    expect(proposeForBudget({ planKey: 'p', runs: 9, budgetExceeded: 9, highestSpendUsd: 1.9 }, rules)).toBeNull();
  });

  it('changes re-applied to a policy that already says them change nothing', () => {
    const rules = policy({ allow: ['fs.a'] });
    expect(applyChanges(rules, [{ op: 'add', path: 'tools.allow', value: 'fs.a' }])).toBeNull();
    expect(applyChanges(rules, [{ op: 'remove', path: 'tools.requireApproval', value: 'fs.a' }])).toBeNull();
    expect(applyChanges(rules, [{ op: 'set', path: 'budgetPerRunUsd', value: rules.budgetPerRunUsd }])).toBeNull();
  });
});
