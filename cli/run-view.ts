import type { ForTenant } from '../core/authority-words';
import type { RunControl } from '../db/control-events';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import type { AgentView, PendingApproval, RunState } from '../workflows/messages';
import { duration, fields, money, when } from './format';

/** The fields of the stored run the CLI reads (`GET /runs/:id` `.run`, `GET /runs` rows); the API sends more. */
export interface StoredRun {
  id: string;
  phase: string;
  status: string;
  plan?: { skill: string }[];
  budgetUsd: number;
  costUsd: number;
  tokens: number;
  stepsCompleted: number;
  turns?: number;
  toolCalls?: number;
  authorizationDecision: string;
  authorizationReason?: string | null;
  policyVersion?: number;
  riskLevel?: string;
  observabilityMode?: string;
  observabilityStatus?: string;
  observabilityError?: string | null;
  sagaPhase?: string;
  pauseReason?: string | null;
  pausedAt?: string | null;
  errorCode: string | null;
  errorMessage?: string | null;
  workflowStartedAt?: string | null;
  createdAt: string;
  startedAt?: string | null;
  finishedAt: string | null;
}

/** A control of the run as `GET /runs/:id` shows it: the stored control, its time as JSON writes it. */
export type RunControlView = Omit<RunControl, 'createdAt'> & { createdAt: string };

/** `GET /runs/:id`: the stored record, the workflow's live state while it runs, and the domains' rows. */
export interface RunDetail {
  run: StoredRun;
  /** The workflow's `runState` query as a tenant sees it; null once the run ended or when no worker answered in time. */
  live: ForTenant<RunState> | null;
  trace: { status: string; outcome: string | null; steps: unknown[] } | null;
  incidents: { id: string; kind: string; severity: string; status: string; errorCode: string | null; message: string }[];
  policyEvaluations: { kind: string; decision: string }[];
  acks: unknown[];
  /** The latest controls, newest first, refusals included (absent from an API older than them). */
  controls?: RunControlView[];
}

export interface PauseView {
  reason: string;
  since: string | null;
  /** Known only from the live state: the stored record keeps the reason and the start. */
  expiresAt?: string;
  resumableBy?: string[];
  detail?: string;
}

/** What a person watching a run wants to know, from the live state when there is one. */
export interface RunView {
  id: string;
  phase: string;
  status: string;
  terminal: boolean;
  stepsCompleted: number;
  totalSteps: number;
  costUsd: number;
  budgetUsd: number;
  tokens: number;
  pause: PauseView | null;
  error: { code: string; message: string } | null;
  lastCheck: RunState['lastCheck'];
  startedAt: string | null;
  finishedAt: string | null;
  /** An agent's model turns and tool calls so far, across the run. */
  turns: number;
  toolCalls: number;
  /** The agent step in progress, when the live state shows one. */
  agent: AgentView | null;
  /** The tool call waiting for a person, when the run is paused for one. */
  approval: PendingApproval | null;
}

export function runViewOf({ run, live }: Pick<RunDetail, 'run' | 'live'>): RunView {
  // The API reads the record, then queries the workflow: either may be the newer. The record is
  // the run's ending (its timestamps, its error as stored), so the run has ended when it says so.
  const terminal = isTerminalPhase(run.phase as RunPhase);
  const source = live && !terminal ? live : null;
  const storedPause: PauseView | null = run.pauseReason ? { reason: run.pauseReason, since: run.pausedAt ?? null } : null;
  const livePause: PauseView | null = source?.pause
    ? {
        reason: source.pause.reason,
        since: source.pause.since,
        expiresAt: source.pause.expiresAt,
        resumableBy: source.pause.resumableBy,
        detail: source.pause.detail,
      }
    : null;
  return {
    id: run.id,
    phase: source?.phase ?? run.phase,
    status: source?.status ?? run.status,
    terminal,
    stepsCompleted: source?.stepsCompleted ?? run.stepsCompleted,
    totalSteps: source?.totalSteps ?? run.plan?.length ?? 0,
    costUsd: source?.costUsd ?? run.costUsd,
    budgetUsd: source?.budgetUsd ?? run.budgetUsd,
    tokens: source?.tokens ?? run.tokens,
    pause: source ? livePause : storedPause,
    error: source?.error ?? (run.errorCode ? { code: run.errorCode, message: run.errorMessage ?? '' } : null),
    lastCheck: source?.lastCheck ?? null,
    startedAt: run.startedAt ?? null,
    finishedAt: run.finishedAt,
    turns: source?.turns ?? run.turns ?? 0,
    toolCalls: source?.toolCalls ?? run.toolCalls ?? 0,
    agent: source?.agent ?? null,
    approval: source?.pause?.approval ?? null,
  };
}

/** An agent's progress: its turn, and the run's turns and tool calls. */
export function agentText(view: Pick<RunView, 'agent' | 'turns' | 'toolCalls'>): string | undefined {
  if (!view.agent && view.turns === 0) return undefined;
  const now = view.agent ? `step ${view.agent.stepIndex + 1}, turn ${view.agent.turn + 1} · ` : '';
  return `${now}${view.turns} turn(s), ${view.toolCalls} tool call(s)`;
}

/** One tool call for people: name, short arguments, how it ended, how long it took and what it cost. */
export function callText(call: AgentView['recentCalls'][number]): string {
  const args = call.args.length > 60 ? `${call.args.slice(0, 59)}…` : call.args;
  const took = call.resolution === 'running' ? '' : ` ${call.durationMs}ms ${money(call.costUsd)}`;
  return `${call.tool}(${args}) ${call.resolution}${took}`;
}

/** The approval a person must give, with the command that gives it. */
export function approvalText(runId: string, approval: PendingApproval): string[] {
  return [`${approval.tool} ${approval.argsPreview}`, `sha256 ${approval.argsSha256}`, `governed approvals approve ${runId} ${approval.argsSha256}   (or: approvals deny)`];
}

/** "step 2 of 3" while a step runs; "2 of 3 steps done" before and after. */
export function stepText(view: Pick<RunView, 'phase' | 'stepsCompleted' | 'totalSteps'>): string {
  const { stepsCompleted: done, totalSteps: total } = view;
  if (view.phase === 'EXECUTING' && done < total) return `step ${done + 1} of ${total}`;
  return `${done} of ${total} steps done`;
}

export function progressBar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.min(width, Math.round((done / total) * width)) : 0;
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

export function spendText(view: Pick<RunView, 'costUsd' | 'budgetUsd' | 'tokens'>): string {
  const pct = view.budgetUsd > 0 ? (view.costUsd / view.budgetUsd) * 100 : 0;
  return `${money(view.costUsd)} of ${money(view.budgetUsd)} budget (${pct.toFixed(pct < 10 ? 1 : 0)}%) · ${view.tokens} tokens`;
}

/** With `now`, how long is left ("in 59m 58s"); without it, only instants (for lines that must not change by themselves). */
export function pauseText(pause: PauseView, now?: Date): string {
  const left = pause.expiresAt && now ? ` (${expiresIn(pause.expiresAt, now)})` : '';
  const expiry = pause.expiresAt ? `, expires ${when(pause.expiresAt)}${left}` : '';
  return `${pause.reason} since ${when(pause.since)}${expiry}`;
}

function expiresIn(expiresAt: string, now: Date): string {
  const seconds = (new Date(expiresAt).getTime() - now.getTime()) / 1000;
  return seconds >= 0 ? `in ${duration(seconds)}` : `${duration(-seconds)} ago`;
}

/** The run's ending in one line: COMPLETED with its time, or FAILED with the error's code and message. */
export function resultText(view: RunView): string {
  if (view.phase === 'COMPLETED') {
    const took = view.startedAt && view.finishedAt ? ` in ${duration((Date.parse(view.finishedAt) - Date.parse(view.startedAt)) / 1000)}` : '';
    return `COMPLETED${took}`;
  }
  const error = view.error ? ` ${view.error.code}: ${view.error.message}` : '';
  return `${view.phase} (${view.status})${error}`;
}

/** The watch screen: one label/value line each, the same lines redrawn until the run ends. */
export function watchFrame(view: RunView, now: Date, note?: string): string[] {
  const rows: [string, string | undefined][] = [
    ['run', view.id],
    ['phase', `${view.phase} (${view.status})`],
    ['progress', `${progressBar(view.stepsCompleted, view.totalSteps)} ${stepText(view)}`],
    ['spend', spendText(view)],
    ['paused', view.pause ? pauseText(view.pause, now) : undefined],
    ['', view.pause?.resumableBy ? `resumable by ${view.pause.resumableBy.join(', ')}${view.pause.detail ? ` · ${view.pause.detail}` : ''}` : undefined],
    ['check', view.lastCheck && !view.terminal ? `${view.lastCheck.decision} before step ${view.lastCheck.stepIndex + 1}: ${view.lastCheck.reason}` : undefined],
    ['agent', agentText(view)],
    ...(view.agent?.recentCalls ?? []).map((call, i): [string, string] => [i === 0 ? 'calls' : '', callText(call)]),
    ...(view.approval ? approvalText(view.id, view.approval).map((line, i): [string, string] => [i === 0 ? 'approve' : '', line]) : []),
    ['result', view.terminal ? resultText(view) : undefined],
    ['note', note],
  ];
  return fields(rows).split('\n');
}

/** A watch line for logs and pipes: written again only when it changes. */
export function watchLine(view: RunView): string {
  const parts = [view.terminal ? resultText(view) : view.phase, stepText(view), `${money(view.costUsd)} of ${money(view.budgetUsd)}`];
  if (view.turns > 0) parts.push(`${view.turns} turn(s), ${view.toolCalls} tool call(s)`);
  if (view.pause) parts.push(`paused ${pauseText(view.pause)}`);
  if (view.approval) parts.push(`waiting for approval of ${view.approval.tool} (sha256 ${view.approval.argsSha256})`);
  return parts.join(' · ');
}

/** `runs get`: the record, what the domains hold, and the live state folded in. */
export function describeRun(detail: RunDetail, now: Date): string {
  const view = runViewOf(detail);
  const { run } = detail;
  const openIncidents = detail.incidents.filter((i) => i.kind !== 'none');
  return fields([
    ['run', run.id],
    ['phase', `${view.phase} (${view.status})${detail.live ? ' · live' : ''}`],
    ['steps', `${view.stepsCompleted} of ${view.totalSteps}${run.plan ? ` (${run.plan.map((s) => s.skill).join(', ')})` : ''}`],
    ['spend', spendText(view)],
    ['agent', agentText(view)],
    ['decision', `${run.authorizationDecision}${run.authorizationReason ? `: ${run.authorizationReason}` : ''}`],
    ['policy', run.policyVersion === undefined ? undefined : `version ${run.policyVersion}`],
    ['risk', run.riskLevel],
    ['paused', view.pause ? pauseText(view.pause, now) : undefined],
    ['error', view.error ? `${view.error.code}: ${view.error.message}` : undefined],
    ['observability', run.observabilityStatus ? `${run.observabilityStatus} (mode ${run.observabilityMode})${run.observabilityError ? `: ${run.observabilityError}` : ''}` : undefined],
    ['saga', run.sagaPhase],
    ['created', when(run.createdAt)],
    ['started', run.startedAt === undefined ? undefined : when(run.startedAt)],
    ['finished', when(run.finishedAt)],
    ['trace', detail.trace ? `${detail.trace.status}${detail.trace.outcome ? ` (${detail.trace.outcome})` : ''}, ${detail.trace.steps.length} step(s)` : 'none'],
    ['incidents', openIncidents.length ? openIncidents.map((i) => `${i.severity} ${i.status} ${i.errorCode ?? i.kind} (${i.id})`).join('; ') : 'none'],
    ['evaluations', detail.policyEvaluations.map((e) => `${e.kind}:${e.decision}`).join(', ') || 'none'],
    ['acks', String(detail.acks.length)],
    ['refused', refusedText(detail.controls ?? [])],
  ]);
}

/** The controls the run refused (newest first), each with why: a 202 only said the request was sent. */
function refusedText(controls: RunControlView[]): string | undefined {
  const refused = controls.filter((c) => !c.accepted);
  if (refused.length === 0) return undefined;
  return refused.map((c) => `${when(c.createdAt)} ${c.kind}${c.actor ? ` by ${c.actor}` : ''}: ${c.detail ?? 'refused'}`).join('; ');
}
