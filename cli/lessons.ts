import type { Command } from 'commander';
import { contextOf } from './context';
import { fields, table, truncate, when } from './format';
import { wholeNumber } from './parsers';

interface Lesson {
  id: string;
  runId: string;
  kind: string;
  code: string;
  phase: string | null;
  stepIndex: number | null;
  skill: string | null;
  tool: string | null;
  policyRule: string | null;
  spendUsd: number | null;
  patternKey: string;
  createdAt: string;
}

interface Pattern {
  patternKey: string;
  code: string;
  tool: string | null;
  stepIndex: number | null;
  skill: string | null;
  count: number;
  firstSeen: string;
  lastSeen: string;
}

interface Proposal {
  id: string;
  kind: string;
  status: string;
  reason: string;
  patternKey: string;
  currentVersion: number;
  diffText: string;
  applicable: boolean;
  acceptedVersion: number | null;
  createdAt: string;
}

interface Accepted {
  proposal: Proposal;
  policy: { version: number };
  push?: string;
  signalledRuns?: number;
}

/** Where a lesson happened, as a person reads it: step 2 (sim.llm), or the tool. */
function where(l: { stepIndex: number | null; skill: string | null; tool: string | null }): string {
  const step = l.stepIndex === null ? '' : `step ${l.stepIndex + 1}${l.skill ? ` (${l.skill})` : ''}`;
  return [step, l.tool ?? ''].filter(Boolean).join(' ');
}

export function registerLessonCommands(program: Command): void {
  const lessons = program.command('lessons').description('what failed and near-miss runs taught: lessons, patterns, policy proposals');

  lessons
    .command('list')
    .description('lessons, newest first, one per run')
    .option('--code <code>', 'one code: BUDGET_EXCEEDED, TOOL_DENIED, …')
    .option('--pattern <key>', "one pattern's lessons (as `lessons patterns` prints it)")
    .option('--run <id>', "one run's lesson")
    .option('--limit <n>', 'lessons per page (1-200)', wholeNumber(1, 200))
    .option('--cursor <cursor>', 'the next page, as printed under the previous one')
    .action(async (options: { code?: string; pattern?: string; run?: string; limit?: number; cursor?: string }, command: Command) => {
      const ctx = contextOf(command);
      const { run, ...query } = options;
      const page = await ctx.api.get<{ lessons: Lesson[]; nextCursor: string | null }>('/lessons', { ...query, runId: run });
      ctx.print(page, () => {
        if (page.lessons.length === 0) return 'no lessons';
        const body = table(
          ['RUN', 'KIND', 'CODE', 'WHERE', 'RULE', 'SPENT', 'WHEN'],
          page.lessons.map((l) => [l.runId, l.kind, l.code, where(l), l.policyRule ?? '', l.spendUsd === null ? '' : `$${l.spendUsd.toFixed(6)}`, when(l.createdAt)]),
        );
        return page.nextCursor ? `${body}\nmore: --cursor ${page.nextCursor}` : body;
      });
    });

  lessons
    .command('patterns')
    .description('lessons grouped by pattern (the same code at the same tool, or step), most frequent first')
    .option('--min-count <n>', 'only patterns seen at least this often', wholeNumber(1, 1_000_000))
    .option('--limit <n>', 'patterns (1-200)', wholeNumber(1, 200))
    .action(async (options: { minCount?: number; limit?: number }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.api.get<{ patterns: Pattern[] }>('/lessons/patterns', options);
      ctx.print(answer, () =>
        answer.patterns.length === 0
          ? 'no patterns'
          : table(
              ['COUNT', 'CODE', 'WHERE', 'FIRST SEEN', 'LAST SEEN', 'PATTERN'],
              answer.patterns.map((p) => [String(p.count), p.code, where(p), when(p.firstSeen), when(p.lastSeen), p.patternKey]),
            ),
      );
    });

  lessons
    .command('proposals')
    .description('policy changes the patterns propose, each with its diff against the current policy (admin keys)')
    .option('--status <status>', 'open, accepted or dismissed')
    .action(async (options: { status?: string }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.api.get<{ proposals: Proposal[] }>('/lessons/proposals', options);
      ctx.print(answer, () =>
        answer.proposals.length === 0
          ? 'no proposals'
          : answer.proposals
              .map((p) =>
                [
                  fields([
                    ['proposal', p.id],
                    ['status', p.acceptedVersion ? `${p.status} (policy version ${p.acceptedVersion})` : p.status],
                    ['kind', p.kind],
                    ['why', truncate(p.reason, 200)],
                  ]),
                  p.status === 'open' ? (p.applicable ? `against policy version ${p.currentVersion}:\n${p.diffText}` : `policy version ${p.currentVersion} already says this`) : '',
                ]
                  .filter(Boolean)
                  .join('\n'),
              )
              .join('\n\n'),
      );
    });

  lessons
    .command('accept <proposal>')
    .description('accept a proposal: the next policy version, pushed to your live runs (admin keys)')
    .option('--note <text>', 'said with the push')
    .action(async (id: string, options: { note?: string }, command: Command) => {
      const ctx = contextOf(command);
      const accepted = await ctx.api.post<Accepted>(`/lessons/proposals/${encodeURIComponent(id)}/accept`, options.note ? { note: options.note } : {});
      ctx.print(accepted, () => `proposal ${accepted.proposal.id} accepted: policy version ${accepted.policy.version} saved; ${accepted.push === 'pushed' ? `live runs told: ${accepted.signalledRuns ?? 0}` : 'live runs will be told'}`);
    });

  lessons
    .command('dismiss <proposal>')
    .description('dismiss a proposal: the policy stays as it is (admin keys)')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const dismissed = await ctx.api.post<{ proposal: Proposal }>(`/lessons/proposals/${encodeURIComponent(id)}/dismiss`, {});
      ctx.print(dismissed, () => `proposal ${dismissed.proposal.id} dismissed; the policy is unchanged`);
    });
}
