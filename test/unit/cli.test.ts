import { describe, expect, it } from 'vitest';
import { UsageError } from '../../cli/exit-codes';
import { withChanges } from '../../cli/policies';
import { stepFromFlag, submitBodyOf } from '../../cli/plan-input';
import { progressBar, runViewOf, stepText, watchFrame, watchLine, type StoredRun } from '../../cli/run-view';
import type { ForTenant } from '../../core/authority-words';
import type { RunState } from '../../workflows/messages';

describe('--step', () => {
  it('reads plain text as the skill\'s natural input, and a JSON object as the input itself', () => {
    expect(stepFromFlag('sim.llm:plan a trip: day one')).toEqual({ skill: 'sim.llm', input: { prompt: 'plan a trip: day one' } });
    expect(stepFromFlag('llm.chat:hello')).toEqual({ skill: 'llm.chat', input: { messages: [{ role: 'user', content: 'hello' }] } });
    expect(stepFromFlag('sim.llm:{"prompt":"x","fail":true}')).toEqual({ skill: 'sim.llm', input: { prompt: 'x', fail: true } });
  });

  it('refuses what it cannot read as a usage error', () => {
    expect(() => stepFromFlag('sim.llm')).toThrow(UsageError);
    expect(() => stepFromFlag(':text')).toThrow(UsageError);
    expect(() => stepFromFlag('other.skill:text')).toThrow(/give this skill's input as JSON/);
    expect(() => stepFromFlag('sim.llm:{not json')).toThrow(/not valid JSON/);
    expect(() => submitBodyOf({ step: [] })).toThrow(/no plan/);
    expect(() => submitBodyOf({ file: 'p.json', step: ['sim.llm:x'] })).toThrow(/not both/);
  });

  it('puts --budget on the body', () => {
    expect(submitBodyOf({ step: ['sim.llm:x'], budget: 2 })).toEqual({ plan: [{ skill: 'sim.llm', input: { prompt: 'x' } }], budgetUsd: 2 });
  });
});

describe('policies set --set', () => {
  const current = { budgetPerRunUsd: 5, enabled: true, allowedSkills: ['sim.llm', 'llm.chat'], observabilityMode: null, pauseTimeoutBehavior: 'TERMINATE' };

  it('reads JSON values, plain text, and comma lists for list rules', () => {
    expect(
      withChanges(current, ['budgetPerRunUsd=2.5', 'enabled=false', 'allowedSkills=sim.llm', 'observabilityMode=STRICT', 'pauseTimeoutBehavior="ESCALATE"']),
    ).toEqual({ budgetPerRunUsd: 2.5, enabled: false, allowedSkills: ['sim.llm'], observabilityMode: 'STRICT', pauseTimeoutBehavior: 'ESCALATE' });
    expect(withChanges(current, ['allowedSkills=', 'observabilityMode=null'])).toMatchObject({ allowedSkills: [], observabilityMode: null });
  });

  it('refuses a rule the policy does not have', () => {
    expect(() => withChanges(current, ['budget=1'])).toThrow(/no rule 'budget'/);
    expect(() => withChanges(current, ['=1'])).toThrow(/rule=value/);
  });
});

const stored: StoredRun = {
  id: 'run-1',
  phase: 'EXECUTING',
  status: 'running',
  plan: [{ skill: 'sim.llm' }, { skill: 'sim.llm' }, { skill: 'sim.llm' }, { skill: 'sim.llm' }],
  budgetUsd: 2,
  costUsd: 0.001,
  tokens: 40,
  stepsCompleted: 1,
  authorizationDecision: 'ALLOWED',
  errorCode: null,
  createdAt: '2026-01-01T10:00:00.000Z',
  startedAt: '2026-01-01T10:00:01.000Z',
  finishedAt: null,
};

/** A live state as the API answers it (`stateForTenant`). */
const live: ForTenant<RunState> = {
  runId: 'run-1',
  tenantId: 't',
  phase: 'EXECUTING',
  status: 'running',
  totalSteps: 4,
  stepsCompleted: 2,
  costUsd: 0.5,
  tokens: 900,
  budgetUsd: 2,
  observabilityStatus: 'OK',
  sagaPhase: 'NOT_STARTED',
  error: null,
  pause: {
    number: 1,
    reason: 'MANUAL_PAUSE',
    detail: 'look first',
    resumableBy: ['an admin key', 'a member key'],
    since: '2026-01-01T10:00:05.000Z',
    expiresAt: '2026-01-01T11:00:05.000Z',
    escalated: false,
  },
};

describe('the watch screen', () => {
  it('prefers the live state, and shows step, bar, spend and the pause with its expiry', () => {
    const view = runViewOf({ run: stored, live });
    const frame = watchFrame(view, new Date('2026-01-01T10:30:05.000Z')).join('\n');
    expect(frame).toContain(`progress  ${progressBar(2, 4)} step 3 of 4`);
    expect(progressBar(2, 4)).toBe(`[${'█'.repeat(12)}${'░'.repeat(12)}]`);
    expect(frame).toContain('spend     $0.5000 of $2.00 budget (25%) · 900 tokens');
    expect(frame).toContain('paused    MANUAL_PAUSE since 2026-01-01 10:00:05Z, expires 2026-01-01 11:00:05Z (in 30m 00s)');
    expect(frame).toContain('          resumable by an admin key, a member key · look first');
    expect(frame).not.toContain('result');
  });

  it('uses the stored record when there is no live state, and ends with the error', () => {
    const failed = { ...stored, phase: 'FAILED', status: 'failed', errorCode: 'STEP_FAILED', errorMessage: 'step 1 failed', finishedAt: '2026-01-01T10:00:09.000Z' };
    const view = runViewOf({ run: failed, live: null });
    expect(stepText(view)).toBe('1 of 4 steps done');
    expect(watchFrame(view, new Date()).at(-1)).toBe('result    FAILED (failed) STEP_FAILED: step 1 failed');
    // A live state older than the record's ending does not bring the run back to life.
    expect(runViewOf({ run: failed, live }).phase).toBe('FAILED');
  });

  it('waits for the stored record to end the run, when the workflow answered COMPLETED first', () => {
    const finalizing = { ...stored, phase: 'FINALIZING', stepsCompleted: 4 };
    const ahead = runViewOf({ run: finalizing, live: { ...live, phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 4, pause: null } });
    expect(ahead).toMatchObject({ phase: 'COMPLETED', terminal: false });
  });

  it("shows an agent's turns, its latest tool calls and the approval it waits for, with the command that gives it", () => {
    const agentLive: ForTenant<RunState> = {
      ...live,
      turns: 3,
      toolCalls: 2,
      agent: {
        stepIndex: 0,
        turn: 2,
        recentCalls: [
          { turn: 0, callIndex: 0, tool: 'fs.list_directory', args: '{"path":"/data"}', resolution: 'ok', durationMs: 12, costUsd: 0 },
          { turn: 1, callIndex: 0, tool: 'fs.write_file', args: '{"path":"/data/out.txt","content":"x"}', resolution: 'running', durationMs: 0, costUsd: 0 },
        ],
      },
      pause: {
        ...live.pause!,
        reason: 'TOOL_APPROVAL',
        approval: { stepIndex: 0, turn: 1, callIndex: 0, tool: 'fs.write_file', argsSha256: 'ab'.repeat(32), argsPreview: '{"path":"/data/out.txt","content":"x"}' },
      },
    };
    const view = runViewOf({ run: stored, live: agentLive });
    const frame = watchFrame(view, new Date('2026-01-01T10:30:05.000Z'));
    expect(frame).toContain('agent     step 1, turn 3 · 3 turn(s), 2 tool call(s)');
    expect(frame).toContain('calls     fs.list_directory({"path":"/data"}) ok 12ms $0.0000');
    expect(frame).toContain('          fs.write_file({"path":"/data/out.txt","content":"x"}) running');
    expect(frame).toContain(`          governed approvals approve run-1 ${'ab'.repeat(32)}   (or: approvals deny)`);
    expect(watchLine(view)).toContain(`waiting for approval of fs.write_file (sha256 ${'ab'.repeat(32)})`);
  });

  it('keeps the clock out of plain lines, so time passing alone writes nothing', () => {
    const view = runViewOf({ run: stored, live });
    expect(watchLine(view)).toBe('EXECUTING · step 3 of 4 · $0.5000 of $2.00 · paused MANUAL_PAUSE since 2026-01-01 10:00:05Z, expires 2026-01-01 11:00:05Z');
    const done = runViewOf({ run: { ...stored, phase: 'COMPLETED', status: 'succeeded', stepsCompleted: 4, finishedAt: '2026-01-01T10:01:01.000Z' }, live: null });
    expect(watchLine(done)).toBe('COMPLETED in 1m 00s · 4 of 4 steps done · $0.0010 of $2.00');
  });
});
