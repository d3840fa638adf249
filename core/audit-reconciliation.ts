/**
 * The reconciler's rules (seed §8.2, §9.1-9.3), pure: given what a run's contract expected, what
 * the domains acked and the rows each domain really holds for the run, say what is missing, what
 * happened that nobody declared (drift), whether the run never finalized (stale), whether the
 * contract itself is malformed (invalid) and which acks claim rows that are not there (phantom).
 * The scheduled reconciler and `GET /runs/:id/audit` both answer with these rules.
 */
import {
  COMPLETE_TRACE,
  CREATE_INCIDENT,
  CREATE_LOG_RECORD,
  EVALUATE_POLICY,
  FINALIZE_RUN,
  RECORD_LESSON,
  RUN_EXPECTATIONS,
  START_TRACE,
  itemActionKind,
  type AckStatus,
  type AuditAction,
} from './audit';
import type { EvidenceBreak } from './evidence';
import { isTerminalPhase, type RunPhase } from './phases';

export const AUDIT_CHECKS = ['missing', 'drift', 'stale', 'invalid', 'phantom', 'tampered'] as const;
export type AuditCheck = (typeof AUDIT_CHECKS)[number];

/** The seed's validation matrix (§9.3); phantom and tampered are ours and weigh like missing. */
export const CHECK_SEVERITY: Readonly<Record<AuditCheck, 'HIGH' | 'MEDIUM'>> = {
  missing: 'HIGH',
  drift: 'MEDIUM',
  stale: 'HIGH',
  invalid: 'HIGH',
  phantom: 'HIGH',
  tampered: 'HIGH',
};

/** PENDING: the run is neither finalized nor past a deadline, so nothing is owed yet. */
export const AUDIT_VERDICTS = ['PENDING', 'COMPLETE', 'INCOMPLETE', 'STALE', 'INVALID'] as const;
export type AuditVerdict = (typeof AUDIT_VERDICTS)[number];

/** `domain/action`, the identity of an expectation and of the acks that answer it. */
export type ActionKey = string;
export const actionKey = (a: { domain: string; action: string }): ActionKey => `${a.domain}/${a.action}`;

export interface ExpectationRecord {
  domain: string;
  action: string;
  deadlineAt: Date | null;
}

export interface AckRecord {
  id: string;
  domain: string;
  action: string;
  status: AckStatus;
  resultId: string | null;
  createdAt: Date;
}

/** The rows the domains hold for the run: what the acks claim to have written. */
export interface DomainEvidence {
  run: { phase: RunPhase } | null;
  traces: { id: string; status: 'running' | 'completed'; rolledBack: boolean }[];
  /** Incident rows that record the run's outcome (a failure or an explicit "none"). */
  outcomeIncidents: { id: string; rolledBack: boolean }[];
  finalEvaluations: { id: string; rolledBack: boolean }[];
  /** The run's lesson, when it had one to teach (`lessons/record_lesson`). */
  lessons: { id: string; rolledBack: boolean }[];
  logRecords: { id: string }[];
  traceSteps: { stepIndex: number; createdAt: Date }[];
  /** Ids of the run's stored step outputs (plan steps, agent turns, tool calls): what item acks name. */
  outputs: { id: string }[];
}

/**
 * What Temporal says of the run's workflow; asked when the run is past its deadline unfinalized, or
 * due before it without having finalized (the pass's wedge probe found it, or its evidence changed).
 * `failing`: still running, but its workflow task keeps failing or timing out (a bug, a
 * nondeterminism error, an activation too long to finish), `attempt` being the pending task's
 * attempt and `reason` Temporal's last recorded failure. `closed` carries the reason Temporal gives
 * for the close (a termination's reason, a failure's message) when it could be read.
 */
export type RunLiveness =
  | { state: 'running'; phase: string; since: Date }
  | { state: 'failing'; phase: string; since: Date; attempt: number; reason: string }
  | { state: 'closed'; status: string; closedAt: Date | null; reason?: string }
  | { state: 'not_found' };

/**
 * A workflow Temporal closed, or whose tasks keep failing, will not finalize the run by itself: the
 * run is stale at once, whatever its deadline says.
 */
export function isWedged(liveness: RunLiveness | undefined): liveness is Extract<RunLiveness, { state: 'closed' | 'failing' }> {
  return liveness?.state === 'closed' || liveness?.state === 'failing';
}

export interface RunAuditInput {
  runId: string;
  expectations: ExpectationRecord[];
  acks: AckRecord[];
  evidence: DomainEvidence;
  now: Date;
  liveness?: RunLiveness;
  /** Where the run's evidence chain first does not hold (db/evidence.ts); checked once the run has ended. */
  tampered?: EvidenceBreak | null;
}

export type MissingBecause = 'NO_ACK' | 'FAILED' | 'ROLLED_BACK';
export interface MissingAction {
  domain: string;
  action: string;
  because: MissingBecause;
}

export type DriftKind = 'UNDECLARED_ACK' | 'UNACKED_ROW' | 'LATE_TRACE_STEP';
export interface DriftItem {
  domain: string;
  action: string;
  kind: DriftKind;
  /** The ack (UNDECLARED_ACK) or the domain row (UNACKED_ROW) that nobody declared. */
  id?: string;
  stepIndex?: number;
}

export interface StaleRun {
  deadlineAt: Date;
  /** Negative when Temporal's word (a closed or failing workflow) made the run stale before its deadline. */
  overdueSeconds: number;
  reason: string;
  liveness: RunLiveness | null;
  /** Tool calls the run declared and never resolved (`tools/tool_call:…`). */
  unresolvedToolCalls: string[];
}

export interface InvalidContract {
  domain: string;
  action: string;
  because: 'NO_DEADLINE' | 'NOT_DECLARED';
}

export interface PhantomAck {
  domain: string;
  action: string;
  resultId: string | null;
  because: 'ROW_MISSING' | 'ROW_ROLLED_BACK' | 'ROW_INCOMPLETE' | 'RUN_NOT_FINAL';
}

export interface ExpectationStatus {
  domain: string;
  action: string;
  deadlineAt: Date | null;
  satisfied: boolean;
  acks: { status: AckStatus; resultId: string | null; at: Date }[];
}

/** One check's finding on one run: the unit that opens an incident and announces an event. */
export interface Finding {
  check: AuditCheck;
  severity: 'HIGH' | 'MEDIUM';
  /** Stable names of what was found; a finding is new to an operator when a subject is. */
  subjects: string[];
  summary: string;
}

export interface RunAuditReport {
  runId: string;
  verdict: AuditVerdict;
  /** Finalized, or past a deadline: only then is anything owed. */
  settled: boolean;
  finalizedAt: Date | null;
  /** When an unsettled run must be looked at again: its earliest deadline. Null once settled. */
  nextCheckAt: Date | null;
  expectations: ExpectationStatus[];
  missing: MissingAction[];
  drift: DriftItem[];
  stale: StaleRun | null;
  invalid: InvalidContract[];
  phantom: PhantomAck[];
  /** The first record of the run's evidence that does not match its chain, or null. */
  tampered: EvidenceBreak | null;
  findings: Finding[];
}

const FINALIZE_KEY = actionKey(FINALIZE_RUN);

function acksByKey(acks: readonly AckRecord[]): Map<ActionKey, AckRecord[]> {
  const byKey = new Map<ActionKey, AckRecord[]>();
  for (const ack of acks) {
    const key = actionKey(ack);
    const list = byKey.get(key);
    if (list) list.push(ack);
    else byKey.set(key, [ack]);
  }
  return byKey;
}

/** An OK ack answers an expectation unless a rollback withdrew it; FAILED never does. */
function answer(acks: readonly AckRecord[] | undefined): { ok: AckRecord | null; because: MissingBecause | null } {
  const ok = acks?.find((a) => a.status === 'OK') ?? null;
  if (acks?.some((a) => a.status === 'ROLLED_BACK')) return { ok: null, because: 'ROLLED_BACK' };
  if (ok) return { ok, because: null };
  return { ok: null, because: acks?.some((a) => a.status === 'FAILED') ? 'FAILED' : 'NO_ACK' };
}

/** Where each expected action's result must be found, and whether it still stands there. */
function checkResult(key: ActionKey, resultId: string | null, runId: string, evidence: DomainEvidence): PhantomAck['because'] | null {
  const row = <T extends { id: string }>(rows: readonly T[]) => (resultId === null ? undefined : rows.find((r) => r.id === resultId));
  switch (key) {
    case actionKey(START_TRACE):
      return row(evidence.traces) ? null : 'ROW_MISSING';
    case actionKey(COMPLETE_TRACE): {
      const trace = row(evidence.traces);
      if (!trace) return 'ROW_MISSING';
      if (trace.rolledBack) return 'ROW_ROLLED_BACK';
      return trace.status === 'completed' ? null : 'ROW_INCOMPLETE';
    }
    case actionKey(CREATE_INCIDENT): {
      const incident = row(evidence.outcomeIncidents);
      return !incident ? 'ROW_MISSING' : incident.rolledBack ? 'ROW_ROLLED_BACK' : null;
    }
    case actionKey(EVALUATE_POLICY): {
      const evaluation = row(evidence.finalEvaluations);
      return !evaluation ? 'ROW_MISSING' : evaluation.rolledBack ? 'ROW_ROLLED_BACK' : null;
    }
    case actionKey(RECORD_LESSON): {
      const lesson = row(evidence.lessons);
      return !lesson ? 'ROW_MISSING' : lesson.rolledBack ? 'ROW_ROLLED_BACK' : null;
    }
    case actionKey(CREATE_LOG_RECORD):
      return row(evidence.logRecords) ? null : 'ROW_MISSING';
    case FINALIZE_KEY:
      if (resultId !== runId || !evidence.run) return 'ROW_MISSING';
      return isTerminalPhase(evidence.run.phase) ? null : 'RUN_NOT_FINAL';
    default:
      return null;
  }
}

/** An OK ack of one of the run's items (a step, a turn, a tool call) stands only with its stored output. */
function itemResultMissing(resultId: string | null, evidence: DomainEvidence): boolean {
  return resultId === null || !evidence.outputs.some((o) => o.id === resultId);
}

/** Domain rows that some ack of these actions must name; any other is undeclared behaviour. */
function unackedRows(acks: readonly AckRecord[], evidence: DomainEvidence): DriftItem[] {
  const named = new Set(acks.filter((a) => a.status !== 'FAILED' && a.resultId).map((a) => `${actionKey(a)}:${a.resultId}`));
  const claims: { rows: readonly { id: string }[]; actions: readonly AuditAction[] }[] = [
    { rows: evidence.traces, actions: [START_TRACE, COMPLETE_TRACE] },
    { rows: evidence.outcomeIncidents, actions: [CREATE_INCIDENT] },
    { rows: evidence.finalEvaluations, actions: [EVALUATE_POLICY] },
    { rows: evidence.logRecords, actions: [CREATE_LOG_RECORD] },
    { rows: evidence.lessons, actions: [RECORD_LESSON] },
  ];
  const fixed = claims.flatMap(({ rows, actions }) =>
    rows
      .filter((r) => !actions.some((a) => named.has(`${actionKey(a)}:${r.id}`)))
      .map((r) => ({ domain: actions[0]!.domain, action: actions[0]!.action, kind: 'UNACKED_ROW' as const, id: r.id })),
  );
  // An output no item ack names was written outside a step's own record.
  const itemResults = new Set(acks.filter((a) => a.status === 'OK' && itemActionKind(a) && a.resultId).map((a) => a.resultId));
  const outputs = evidence.outputs.filter((o) => !itemResults.has(o.id)).map((o) => ({ domain: 'logs', action: 'step_output', kind: 'UNACKED_ROW' as const, id: o.id }));
  return [...fixed, ...outputs];
}

function isEvidenceAck(ack: { domain: string; action: string }): boolean {
  const kind = itemActionKind(ack);
  return kind === 'record_step' || kind === 'model_turn';
}

function earliest(dates: readonly (Date | null)[]): Date | null {
  return dates.reduce<Date | null>((min, d) => (d && (!min || d < min) ? d : min), null);
}

export function describeStale(liveness: RunLiveness | undefined): string {
  if (!liveness) return 'workflow state unknown';
  switch (liveness.state) {
    case 'running':
      return `workflow still running, stuck in phase ${liveness.phase} since ${liveness.since.toISOString()}`;
    case 'failing':
      return `workflow still running, but its workflow task keeps failing (attempt ${liveness.attempt}) in phase ${liveness.phase} since ${liveness.since.toISOString()}: ${liveness.reason}`;
    case 'closed':
      return `workflow closed (${liveness.status}${liveness.closedAt ? ` at ${liveness.closedAt.toISOString()}` : ''}${liveness.reason ? `: ${liveness.reason}` : ''}) without finalizing`;
    case 'not_found':
      return 'workflow not found';
  }
}

export function reconcileRun(input: RunAuditInput): RunAuditReport {
  const { runId, evidence, now } = input;
  const byKey = acksByKey(input.acks);
  const expectedKeys = new Set(input.expectations.map(actionKey));

  const expectations: ExpectationStatus[] = input.expectations.map((e) => ({
    domain: e.domain,
    action: e.action,
    deadlineAt: e.deadlineAt,
    satisfied: answer(byKey.get(actionKey(e))).ok !== null,
    acks: (byKey.get(actionKey(e)) ?? []).map((a) => ({ status: a.status, resultId: a.resultId, at: a.createdAt })),
  }));

  const finalize = answer(byKey.get(FINALIZE_KEY)).ok;
  const finalizedAt = finalize?.createdAt ?? null;
  const pastDeadline = input.expectations.some((e) => e.deadlineAt !== null && e.deadlineAt <= now);
  // Temporal says the workflow is gone or cannot make progress, and the run never finalized.
  const wedged = !finalize && isWedged(input.liveness);
  // A closed workflow will write nothing more: whatever it has not done is owed now, as at a deadline.
  const settled = finalizedAt !== null || pastDeadline || (wedged && input.liveness?.state === 'closed');

  const missing: MissingAction[] = input.expectations.flatMap((e) => {
    const { because } = answer(byKey.get(actionKey(e)));
    return because ? [{ domain: e.domain, action: e.action, because }] : [];
  });

  const invalid: InvalidContract[] = [
    ...input.expectations.filter((e) => e.deadlineAt === null).map((e) => ({ domain: e.domain, action: e.action, because: 'NO_DEADLINE' as const })),
    ...RUN_EXPECTATIONS.filter((r) => !expectedKeys.has(actionKey(r))).map((r) => ({ domain: r.domain, action: r.action, because: 'NOT_DECLARED' as const })),
  ];

  // A step's or turn's ack is evidence, never declared; a tool call's must have been (drift otherwise).
  const undeclared: DriftItem[] = [...byKey.entries()]
    .filter(([key, acks]) => !expectedKeys.has(key) && !isEvidenceAck(acks[0]!))
    .flatMap(([, acks]) => acks.map((a) => ({ domain: a.domain, action: a.action, kind: 'UNDECLARED_ACK' as const, id: a.id })));
  const lateSteps: DriftItem[] = finalizedAt
    ? evidence.traceSteps
        .filter((s) => s.createdAt > finalizedAt)
        .map((s) => ({ domain: 'logs', action: 'trace_step', kind: 'LATE_TRACE_STEP' as const, stepIndex: s.stepIndex }))
    : [];
  const drift = [...undeclared, ...unackedRows(input.acks, evidence), ...lateSteps];

  const phantom: PhantomAck[] = [...byKey.entries()]
    .filter(([key, acks]) => (expectedKeys.has(key) || isEvidenceAck(acks[0]!)) && answer(acks).ok)
    .flatMap(([key, acks]) => {
      const ok = answer(acks).ok!;
      const because = itemActionKind(ok) ? (itemResultMissing(ok.resultId, evidence) ? 'ROW_MISSING' : null) : checkResult(key, ok.resultId, runId, evidence);
      return because ? [{ domain: ok.domain, action: ok.action, resultId: ok.resultId, because }] : [];
    });

  const finalizeExpectation = input.expectations.find((e) => actionKey(e) === FINALIZE_KEY);
  const stale: StaleRun | null =
    finalizeExpectation?.deadlineAt && !finalize && (finalizeExpectation.deadlineAt <= now || wedged)
      ? {
          deadlineAt: finalizeExpectation.deadlineAt,
          overdueSeconds: Math.round((now.getTime() - finalizeExpectation.deadlineAt.getTime()) / 1000),
          reason: describeStale(input.liveness),
          liveness: input.liveness ?? null,
          unresolvedToolCalls: missing.filter((m) => itemActionKind(m) === 'tool_call').map((m) => actionKey(m)),
        }
      : null;

  const tampered = input.tampered ?? null;
  // A stale run is settled unless a failing workflow made it stale early: that one is STALE too.
  const verdict: AuditVerdict =
    invalid.length > 0
      ? 'INVALID'
      : stale
        ? 'STALE'
        : !settled
          ? 'PENDING'
          : missing.length + drift.length + phantom.length > 0 || tampered
            ? 'INCOMPLETE'
            : 'COMPLETE';

  return {
    runId,
    verdict,
    settled,
    finalizedAt,
    nextCheckAt: settled ? null : earliest(input.expectations.map((e) => e.deadlineAt)),
    expectations,
    missing,
    drift,
    stale,
    invalid,
    phantom,
    tampered,
    // Before a run is settled nothing is owed yet; only a malformed contract is wrong at once, and a
    // run whose workflow task keeps failing is stale at once (its missing actions are not owed yet).
    // A broken chain is wrong whenever it is found (it is looked for once the run has ended).
    findings: findingsOf(settled ? { missing, drift, stale, invalid, phantom, tampered } : { missing: [], drift: [], stale, invalid, phantom: [], tampered }),
  };
}

/**
 * What `reconcileRun` says of a run whose evidence the reconciler's prefilter (`checkDueRuns` in
 * db/audit.ts) found clean: finalized at `finalizedAt`, every expectation met by a standing OK ack
 * whose row stands, nothing undeclared, so COMPLETE with nothing to report. The prefilter only spares
 * such runs the loading and the rules; the rules above stay the definition, and
 * test/audit-prefilter.test.ts checks, over generated runs, that every run the prefilter calls
 * clean gets exactly this report from them.
 */
export function cleanRunReport(runId: string, finalizedAt: Date): RunAuditReport {
  return {
    runId,
    verdict: 'COMPLETE',
    settled: true,
    finalizedAt,
    nextCheckAt: null,
    expectations: [],
    missing: [],
    drift: [],
    stale: null,
    invalid: [],
    phantom: [],
    tampered: null,
    findings: [],
  };
}

/** What a pass stores of a report: its verdict and sets; the live API recomputes the rest from the same records. */
export function storedReport(report: RunAuditReport): RunAuditReport {
  return { ...report, expectations: [] };
}

function findingsOf(sets: Pick<RunAuditReport, 'missing' | 'drift' | 'stale' | 'invalid' | 'phantom' | 'tampered'>): Finding[] {
  const subjects: Record<AuditCheck, string[]> = {
    missing: sets.missing.map((m) => actionKey(m)),
    drift: sets.drift.map((d) =>
      d.kind === 'LATE_TRACE_STEP' ? `late-step:${d.stepIndex}` : d.kind === 'UNDECLARED_ACK' ? `ack:${actionKey(d)}:${d.id}` : `row:${actionKey(d)}:${d.id}`,
    ),
    stale: sets.stale ? [FINALIZE_KEY, ...sets.stale.unresolvedToolCalls] : [],
    invalid: sets.invalid.map((i) => `${i.because === 'NO_DEADLINE' ? 'no-deadline' : 'not-declared'}:${actionKey(i)}`),
    phantom: sets.phantom.map((p) => `${actionKey(p)}:${p.resultId ?? 'none'}`),
    tampered: sets.tampered ? [`${sets.tampered.kind}:${sets.tampered.key}`] : [],
  };
  const summaries: Record<AuditCheck, () => string> = {
    missing: () => `missing: ${sets.missing.map((m) => `${actionKey(m)} (${m.because})`).join(', ')}`,
    drift: () => `drift: ${sets.drift.map((d) => `${actionKey(d)} ${d.kind}${d.id ? ` ${d.id}` : ''}${d.stepIndex !== undefined ? ` step ${d.stepIndex}` : ''}`).join(', ')}`,
    stale: () =>
      (sets.stale!.overdueSeconds >= 0
        ? `stale: finalize_run not acked ${sets.stale!.overdueSeconds}s after its deadline; ${sets.stale!.reason}`
        : `stale: finalize_run not acked, found ${-sets.stale!.overdueSeconds}s before its deadline; ${sets.stale!.reason}`) +
      (sets.stale!.unresolvedToolCalls.length ? `; tool calls never resolved: ${sets.stale!.unresolvedToolCalls.join(', ')}` : ''),
    invalid: () => `invalid contract: ${sets.invalid.map((i) => `${actionKey(i)} (${i.because})`).join(', ')}`,
    phantom: () => `phantom: ${sets.phantom.map((p) => `${actionKey(p)} → ${p.resultId ?? 'no result'} (${p.because})`).join(', ')}`,
    tampered: () =>
      `tampered: the evidence chain breaks at ${sets.tampered!.seq === null ? '' : `record #${sets.tampered!.seq} `}(${sets.tampered!.kind} ${sets.tampered!.key}): ${sets.tampered!.because}`,
  };
  return AUDIT_CHECKS.filter((check) => subjects[check].length > 0).map((check) => ({
    check,
    severity: CHECK_SEVERITY[check],
    subjects: [...new Set(subjects[check])].sort(),
    summary: summaries[check](),
  }));
}

/** What a reconciliation pass did, summed over its pages. */
export interface PassTotals {
  runs: number;
  verdicts: Partial<Record<AuditVerdict, number>>;
  findingsOpened: number;
  findingsResolved: number;
  events: number;
}

export const EMPTY_TOTALS: PassTotals = { runs: 0, verdicts: {}, findingsOpened: 0, findingsResolved: 0, events: 0 };

export function addTotals(a: PassTotals, b: PassTotals): PassTotals {
  const verdicts = { ...a.verdicts };
  for (const [verdict, count] of Object.entries(b.verdicts) as [AuditVerdict, number][]) verdicts[verdict] = (verdicts[verdict] ?? 0) + count;
  return {
    runs: a.runs + b.runs,
    verdicts,
    findingsOpened: a.findingsOpened + b.findingsOpened,
    findingsResolved: a.findingsResolved + b.findingsResolved,
    events: a.events + b.events,
  };
}
