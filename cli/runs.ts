import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { RUN_PHASES, RUN_STATUSES, isTerminalPhase, type RunPhase } from '../core/phases';
import { PAUSE_REASONS } from '../core/policy-check';
import type { RunAuditReport } from '../core/audit-reconciliation';
import type { RunState } from '../workflows/messages';
import { ApiError, UnreachableError } from './api-client';
import { collect, contextOf, type Context } from './context';
import { printRunEvidence } from './evidence';
import { EXIT } from './exit-codes';
import { fields, money, table, truncate, when } from './format';
import { positiveNumber, wholeNumber } from './parsers';
import { submitBodyOf } from './plan-input';
import { describeRun, stepText, type RunDetail } from './run-view';
import { watchRun } from './run-watch';

interface SubmitAnswer {
  runId: string;
  authorizationDecision: 'ALLOWED' | 'DENIED';
  workflow?: 'started' | 'queued';
}

const pollInterval = () => new Option('--interval <ms>', 'how often to ask the API').argParser(wholeNumber(100, 60_000)).default(500);

const runPath = (id: string, action = '') => `/runs/${encodeURIComponent(id)}${action}`;

export function registerRunCommands(program: Command): void {
  const runs = program.command('runs').description('submit, follow and control runs');

  runs
    .command('submit')
    .description('submit a run and print its id (exit 1 when its authorization is DENIED: it is recorded and ends FAILED)')
    .option('--file <path>', 'the plan as JSON: {"plan": [...], "budgetUsd": n} or an array of steps')
    .option('--step <skill:input>', 'a step, repeated in order: sim.llm:"prompt text", or <skill>:<json input>', collect, [])
    .option('--budget <usd>', "the run's budget (default: the policy's budgetPerRunUsd)", positiveNumber)
    .option('--idempotency-key <key>', 'a retry with the same key and plan returns the same run')
    .option('--watch', 'follow the run until it ends, as runs watch does')
    .addOption(pollInterval())
    .action(async (options: { file?: string; step: string[]; budget?: number; idempotencyKey?: string; watch?: boolean; interval: number }, command: Command) => {
      const ctx = contextOf(command);
      const body = submitBodyOf(options);
      const answer = await ctx.api.post<SubmitAnswer>('/runs', body, options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : undefined);
      ctx.print(answer, () => answer.runId);
      // Notes go to stderr, so `RUN=$(governed runs submit …)` holds the id alone.
      if (!ctx.json && answer.workflow === 'queued') console.error('note: Temporal did not answer in time; the run is recorded and starts as soon as it does');
      if (answer.authorizationDecision === 'DENIED') {
        if (!ctx.json) console.error(`authorization DENIED: the run is recorded and ends FAILED (see: governed runs get ${answer.runId})`);
        process.exitCode = EXIT.FAILED;
      }
      if (options.watch) process.exitCode = await watchRun(ctx.api, answer.runId, { intervalMs: options.interval, json: ctx.json });
    });

  runs
    .command('get <id>')
    .description("a run: its record, live state, trace, incidents, evaluations and acks")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const detail = await ctx.api.get<RunDetail>(runPath(id));
      ctx.print(detail, () => describeRun(detail, new Date()));
    });

  runs
    .command('list')
    .description('runs of your tenant, newest first')
    .addOption(new Option('--phase <phase>').choices(RUN_PHASES))
    .addOption(new Option('--status <status>').choices(RUN_STATUSES))
    .option('--limit <n>', 'runs per page (1-200)', wholeNumber(1, 200))
    .option('--cursor <cursor>', 'the next page, as printed under the previous one')
    .action(async (options: { phase?: string; status?: string; limit?: number; cursor?: string }, command: Command) => {
      const ctx = contextOf(command);
      const page = await ctx.api.get<{ runs: ListedRun[]; nextCursor: string | null }>('/runs', options);
      ctx.print(page, () => listText(page.runs, page.nextCursor));
    });

  runs
    .command('watch <id>')
    .description('follow a run live until it ends; exits 0 only when it COMPLETED')
    .addOption(pollInterval())
    .action(async (id: string, options: { interval: number }, command: Command) => {
      const ctx = contextOf(command);
      process.exitCode = await watchRun(ctx.api, id, { intervalMs: options.interval, json: ctx.json });
    });

  runs
    .command('pause <id>')
    .description('pause a run before its next step')
    .option('--reason <text>', 'why, recorded with the pause')
    .addOption(new Option('--pause-reason <reason>', 'the kind of pause, which decides who may resume it').choices(PAUSE_REASONS).default('MANUAL_PAUSE'))
    .option('--idempotency-key <key>', IDEMPOTENCY_HELP)
    .option('--no-wait', 'answer once the pause is sent, without waiting to see the run take it')
    .option('--wait-timeout <seconds>', 'how long to wait for the run to take it or refuse it', positiveNumber, 60)
    .action(async (id: string, options: { reason?: string; pauseReason: string; idempotencyKey?: string; wait: boolean; waitTimeout: number }, command: Command) => {
      await control(contextOf(command), id, 'pause', { reason: options.reason, pauseReason: options.pauseReason }, options.idempotencyKey, undefined, options);
    });

  for (const [action, description] of [
    ['stop', 'stop a run before its next step (at once if paused); it ends FAILED (cancelled)'],
    ['resume', 'resume a paused run, if your key may lift its pause'],
  ] as const) {
    runs
      .command(`${action} <id>`)
      .description(description)
      .option('--reason <text>', 'why, recorded with the request')
      .option('--idempotency-key <key>', IDEMPOTENCY_HELP)
      .option('--no-wait', 'stop: answer once it is sent, without waiting to see the run end')
      .option('--wait-timeout <seconds>', 'stop: how long to wait for the run to end', positiveNumber, 60)
      .action(async (id: string, options: { reason?: string; idempotencyKey?: string; wait: boolean; waitTimeout: number }, command: Command) => {
        await control(contextOf(command), id, action, { reason: options.reason }, options.idempotencyKey, undefined, action === 'stop' ? options : { wait: false, waitTimeout: 0 });
      });
  }

  runs
    .command('output <id>')
    .description("a run's output (the last step's, once it COMPLETED), or one step's with --step; whole, never cut")
    .option('--step <n>', 'this step (1 is the first) instead of the run', wholeNumber(1, 100_000))
    .action(async (id: string, options: { step?: number }, command: Command) => {
      const ctx = contextOf(command);
      if (options.step !== undefined) {
        const step = await ctx.api.get<StepOutput>(runPath(id, `/steps/${options.step - 1}/output`));
        ctx.print(step, () => step.content);
        return;
      }
      const answer = await ctx.api.get<{ phase: string; output: StepOutput | null; steps: StepOutput[] }>(runPath(id, '/output'));
      if (!answer.output) {
        ctx.print(answer, () => `run ${id} has no output: it is ${answer.phase}${answer.steps.length ? ` (${answer.steps.length} step output(s): --step N)` : ''}`);
        process.exitCode = EXIT.FAILED;
        return;
      }
      ctx.print(answer, () => answer.output!.content);
    });

  runs
    .command('evidence <id>')
    .description("a run's tamper-evident evidence as JSONL, once it has ended: save it (> run.jsonl) and check it with 'governed evidence verify'")
    .action((id: string, _options: unknown, command: Command) => printRunEvidence(command, id));

  runs
    .command('audit <id>')
    .description("a run's audit: what its contract expected, what was acked, and what is missing")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const audit = await ctx.api.get<AuditAnswer>(runPath(id, '/audit'));
      ctx.print(audit, () => auditText(id, audit));
    });
}

const IDEMPOTENCY_HELP = 'repeat an earlier attempt safely: the run acts on one key once (default: a new key for each invocation)';

interface ControlAnswer {
  note?: string;
  state?: RunState;
  /** `signalled`, or why no signal was needed (`already_paused`, `coalesced`, `already_stopping`). */
  outcome?: string;
  resumed?: true | 'unknown';
}

/**
 * Sends a control with an Idempotency-Key, the caller's or a new one for this invocation. When the
 * outcome is unknown (no answer, a 5xx, a resume Temporal did not confirm in time) the message
 * names the key, so repeating the command with it cannot pause, stop or approve twice.
 */
export async function control(
  ctx: Context,
  id: string,
  action: 'pause' | 'stop' | 'resume' | 'approve' | 'deny',
  body: Record<string, string | undefined>,
  idempotencyKey?: string,
  command = `governed runs ${action} ${id}`,
  waiting: { wait: boolean; waitTimeout: number } = { wait: false, waitTimeout: 0 },
): Promise<void> {
  const key = idempotencyKey ?? randomUUID();
  // What the run had refused before this request, so a refusal of this one is told from older ones.
  const watchOutcome = waiting.wait && (action === 'pause' || action === 'stop');
  const refusedBefore = watchOutcome ? new Set(((await ctx.api.get<RunDetail>(runPath(id))).controls ?? []).map((c) => c.id)) : new Set<string>();
  const retry = `${command} --idempotency-key ${key}`;
  let answer: ControlAnswer;
  try {
    answer = await ctx.api.post<ControlAnswer>(runPath(id, `/${action}`), body, { 'idempotency-key': key });
  } catch (err) {
    if (err instanceof UnreachableError || (err instanceof ApiError && err.status >= 500)) err.message += `; the ${action} may or may not have been applied: to retry safely, run ${retry}`;
    throw err;
  }
  ctx.print(answer, () => {
    if (action === 'resume' && answer.state) return `run ${id} resumed: ${answer.state.phase}, ${stepText(answer.state)}`;
    if ((action === 'approve' || action === 'deny') && answer.resumed === true) return `${action === 'approve' ? 'approved' : 'denied'}: the tool call of run ${id}`;
    if (answer.resumed === 'unknown') return `resume of run ${id} sent, outcome unknown: ${answer.note ?? ''}\nto retry safely, run ${retry}`;
    if (answer.outcome && answer.outcome !== 'signalled') return `no ${action} sent to run ${id} (${answer.outcome}): ${answer.note ?? ''}`;
    return `${action} requested for run ${id}${answer.note ? `: ${answer.note}` : ''}`;
  });
  // Not a success a script may build on: it should look, or retry with the key.
  if (answer.resumed === 'unknown') process.exitCode = EXIT.FAILED;
  if (watchOutcome && answer.outcome === 'signalled' && !ctx.json) {
    const outcome = await outcomeOf(ctx, id, action as 'pause' | 'stop', refusedBefore, waiting.waitTimeout * 1000);
    console.log(outcome.text);
    if (!outcome.ok) process.exitCode = EXIT.FAILED;
  }
}

/**
 * A pause or a stop is answered 202 when it is sent; the run takes it at its next step boundary, or
 * refuses it (it ended first, or it refuses that control now). Waits to see which.
 */
async function outcomeOf(ctx: Context, id: string, action: 'pause' | 'stop', refusedBefore: ReadonlySet<string>, timeoutMs: number): Promise<{ ok: boolean; text: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const detail = await ctx.api.get<RunDetail>(runPath(id));
    const refusal = (detail.controls ?? []).find((c) => c.kind === action && !c.accepted && !refusedBefore.has(c.id));
    if (refusal) return { ok: false, text: `run ${id} refused the ${action}: ${refusal.detail ?? 'no reason given'}` };
    const { run } = detail;
    const ended = isTerminalPhase(run.phase as RunPhase);
    if (action === 'pause' && (detail.live?.pause || run.pauseReason)) return { ok: true, text: `run ${id} paused (${detail.live?.pause?.reason ?? run.pauseReason})` };
    if (action === 'stop' && ended && run.errorCode === 'STOPPED') return { ok: true, text: `run ${id} stopped: ${run.phase} (${run.status})` };
    if (ended) return { ok: false, text: `run ${id} ended ${run.phase} (${run.status}) before its next step: the ${action} was not applied` };
    if (Date.now() > deadline) return { ok: true, text: `the ${action} is sent; run ${id} has not reached its next step within ${timeoutMs / 1000}s (see governed runs watch ${id})` };
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A step's stored output, as `GET /runs/:id/output` shows it. */
interface StepOutput {
  stepIndex: number;
  content: string;
  contentType: string;
  sha256: string;
  bytes: number;
}

/** A row of `GET /runs`. */
interface ListedRun {
  runId: string;
  phase: string;
  status: string;
  costUsd: number;
  stepsCompleted: number;
  authorizationDecision: string;
  errorCode: string | null;
  createdAt: string;
}

function listText(rows: ListedRun[], nextCursor: string | null): string {
  if (rows.length === 0) return 'no runs';
  const body = table(
    ['RUN', 'PHASE', 'STATUS', 'STEPS', 'COST', 'DECISION', 'ERROR', 'CREATED'],
    rows.map((r) => [r.runId, r.phase, r.status, String(r.stepsCompleted), money(r.costUsd), r.authorizationDecision, r.errorCode ?? '', when(r.createdAt)]),
  );
  return nextCursor ? `${body}\nmore: --cursor ${nextCursor}` : body;
}

/** `GET /runs/:id/audit`: the reconciler's report (dates as strings) and what the last pass stored. */
type AuditAnswer = Omit<RunAuditReport, 'finalizedAt' | 'expectations'> & {
  finalizedAt: string | null;
  expectations: { domain: string; action: string; deadlineAt: string | null; satisfied: boolean; acks: { status: string }[] }[];
  lastReconciliation: { at: string; verdict: string; passes: number } | null;
  recordedFindings: { check: string; severity: string; summary: string }[];
};

function auditText(id: string, audit: AuditAnswer): string {
  const head = fields([
    ['run', id],
    ['verdict', `${audit.verdict}${audit.settled ? '' : ' (not settled: nothing is owed yet)'}`],
    ['finalized', when(audit.finalizedAt)],
    ['last pass', audit.lastReconciliation ? `${when(audit.lastReconciliation.at)} ${audit.lastReconciliation.verdict} (${audit.lastReconciliation.passes} pass(es))` : 'none yet'],
  ]);
  const expectations = table(
    ['EXPECTED', 'DEADLINE', 'SATISFIED', 'ACKS'],
    audit.expectations.map((e) => [`${e.domain}/${e.action}`, when(e.deadlineAt), e.satisfied ? 'yes' : 'NO', e.acks.map((a) => a.status).join(',') || '-']),
  );
  const problems = [
    ...audit.missing.map((m) => `missing  ${m.domain}/${m.action}: ${m.because}`),
    ...audit.drift.map((d) => `drift    ${d.domain}/${d.action}: ${d.kind}${d.id ? ` ${d.id}` : ''}`),
    ...(audit.stale ? [`stale    ${audit.stale.reason}`] : []),
    ...audit.invalid.map((i) => `invalid  ${i.domain}/${i.action}: ${i.because}`),
    ...audit.phantom.map((p) => `phantom  ${p.domain}/${p.action}: ${p.because}`),
    ...audit.recordedFindings.map((f) => `finding  ${f.check} ${f.severity}: ${truncate(f.summary, 100)}`),
  ];
  return [head, '', expectations, ...(problems.length ? ['', ...problems] : [])].join('\n');
}
