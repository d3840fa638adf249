import { eq, inArray } from 'drizzle-orm';
import type { Client } from '@temporalio/client';
import { RUN_EXPECTATIONS } from '../core/audit';
import { isTerminalPhase, type RunPhase } from '../core/phases';
import type { Db } from '../db/client';
import { auditExpectations, domainAcks, incidents, outbox, policyEvaluations, runLogs, runs, traceSteps, traces } from '../db/schema';
import { mapLimit } from '../lib/map-limit';
import type { DrillStack, SubmittedRun } from './stack';

export type RunOutcome = 'completed' | 'lost' | 'duplicated' | 'stuck';

export interface RunFinding {
  runId: string;
  outcome: RunOutcome;
  /** What is wrong with it, empty when completed. */
  problems: string[];
  /** Submit to finish, by the database's clock; null when it never finished. */
  secondsToComplete: number | null;
}

/** What every run the drills submit leaves behind once: it completes, so no failure incident and no `run.failed`. */
const EXPECTED_TOPICS = ['run.started', 'trace.started', 'policy.evaluated', 'trace.completed', 'run.completed'];
/** What a run a drill stops on purpose leaves behind once: its governance, and `run.failed` instead of `run.completed`. */
const STOPPED_TOPICS = ['run.started', 'trace.started', 'policy.evaluated', 'trace.completed', 'run.failed'];

/**
 * Polls until every run is COMPLETED or FAILED and its workflow has closed, or the deadline passes;
 * how many are left. A run's final write lands before its workflow closes, and when the worker
 * dies between the two (a local activity's workflow task lost) the workflow closes one workflow
 * task timeout later, on another worker.
 */
export async function waitUntilTerminal(db: Db, client: Client, runIds: string[], deadline: number): Promise<number> {
  const closed = new Set<string>();
  for (;;) {
    const rows = await db.select({ id: runs.id, phase: runs.phase }).from(runs).where(inArray(runs.id, runIds));
    // Only runs stored final and not yet seen closed are asked about: a closed workflow stays closed.
    const unconfirmed = rows.filter((r) => isTerminalPhase(r.phase as RunPhase) && !closed.has(r.id)).map((r) => r.id);
    await mapLimit(unconfirmed, 8, async (id) => {
      if ((await client.workflow.getHandle(id).describe()).status.name !== 'RUNNING') closed.add(id);
    });
    const open = runIds.length - closed.size;
    if (open === 0 || Date.now() > deadline) return open;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Runs of the drill's tenant that no submit's answer named: a submit retried on another API with the
 * same Idempotency-Key that created a second run, or any run the drill did not ask for.
 */
export async function unansweredRuns(db: Db, tenantId: string, answered: string[]): Promise<string[]> {
  const rows = await db.select({ id: runs.id, key: runs.idempotencyKey }).from(runs).where(eq(runs.tenantId, tenantId));
  const named = new Set(answered);
  const extra = rows.filter((r) => !named.has(r.id));
  const perKey = groupBy(rows, (r) => r.key ?? '');
  const doubled = [...perKey.entries()].filter(([key, group]) => key && group.length > 1);
  return [
    ...(extra.length ? [`${extra.length} runs of the drill's tenant that no submit's answer named (first: ${extra[0]!.id}, key ${extra[0]!.key})`] : []),
    ...(doubled.length ? [`${doubled.length} Idempotency-Keys with more than one run (first: ${doubled[0]![0]})`] : []),
  ];
}

/** Polls until every run has recorded a step (or finished), so a fault lands mid-run; how many have. */
export async function waitUntilStepping(db: Db, runIds: string[], deadline: number): Promise<number> {
  for (;;) {
    const rows = await db.select({ phase: runs.phase, steps: runs.stepsCompleted }).from(runs).where(inArray(runs.id, runIds));
    const stepping = rows.filter((r) => r.steps >= 1 || isTerminalPhase(r.phase as RunPhase)).length;
    if (stepping === runIds.length || Date.now() > deadline) return stepping;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The runs not yet COMPLETED or FAILED. */
export async function runsInFlight(db: Db, runIds: string[]): Promise<string[]> {
  const rows = await db.select({ id: runs.id, phase: runs.phase }).from(runs).where(inArray(runs.id, runIds));
  return rows.filter((r) => !isTerminalPhase(r.phase as RunPhase)).map((r) => r.id);
}

function groupBy<T>(rows: T[], key: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const row of rows) groups.set(key(row), [...(groups.get(key(row)) ?? []), row]);
  return groups;
}

/** `what` once: a problem when missing (lost) or more than once (duplicated). */
function once(count: number, what: string, missing: string[], extra: string[]): void {
  if (count === 0) missing.push(`no ${what}`);
  if (count > 1) extra.push(`${what} ${count} times`);
}

/**
 * Holds every run to the product's promise: it ended COMPLETED (in the database and in Temporal)
 * with each domain row once — its trace, one trace step per plan step, the outcome incident, the
 * final policy evaluation, the log record, one OK ack per audit expectation — and each of its
 * outbox events once, none retracted. A run in `stopped` (a drill stopped it on purpose) must have
 * ended stopped (`cancelled`, STOPPED) with the same governance once, a trace step per step it
 * completed, and `run.failed` for `run.completed`. A run not finished is stuck; one missing
 * anything is lost; one with anything twice (or anything it should not have) is duplicated.
 */
export async function checkRuns(db: Db, client: Client, submitted: SubmittedRun[], steps: number, stopped: ReadonlySet<string> = new Set()): Promise<RunFinding[]> {
  const ids = submitted.map((r) => r.runId);
  const [runRows, traceRows, stepRows, incidentRows, evaluationRows, logRows, ackRows, expectationRows, eventRows] = await Promise.all([
    db.select().from(runs).where(inArray(runs.id, ids)),
    db.select().from(traces).where(inArray(traces.runId, ids)),
    db.select().from(traceSteps).where(inArray(traceSteps.runId, ids)),
    db.select().from(incidents).where(inArray(incidents.runId, ids)),
    db.select().from(policyEvaluations).where(inArray(policyEvaluations.runId, ids)),
    db.select().from(runLogs).where(inArray(runLogs.runId, ids)),
    db.select().from(domainAcks).where(inArray(domainAcks.runId, ids)),
    db.select().from(auditExpectations).where(inArray(auditExpectations.runId, ids)),
    db.select().from(outbox).where(inArray(outbox.runId, ids)),
  ]);
  const byRun = <T extends { runId: string | null }>(rows: T[]) => groupBy(rows, (r) => r.runId ?? '');
  const [tracesOf, stepsOf, incidentsOf, evaluationsOf, logsOf, acksOf, expectationsOf, eventsOf] = [
    byRun(traceRows), byRun(stepRows), byRun(incidentRows), byRun(evaluationRows), byRun(logRows), byRun(ackRows), byRun(expectationRows), byRun(eventRows),
  ];
  const temporalStatus = new Map(
    await mapLimit(ids, 8, async (id) => {
      try {
        return [id, (await client.workflow.getHandle(id).describe()).status.name] as const;
      } catch (err) {
        return [id, `not found (${err instanceof Error ? err.message : String(err)})`] as const;
      }
    }),
  );

  return submitted.map(({ runId }) => {
    const run = runRows.find((r) => r.id === runId);
    const missing: string[] = [];
    const extra: string[] = [];
    if (!run) return { runId, outcome: 'lost', problems: ['no run row'], secondsToComplete: null };
    const secondsToComplete = run.finishedAt ? (run.finishedAt.getTime() - run.createdAt.getTime()) / 1000 : null;
    if (!isTerminalPhase(run.phase as RunPhase)) {
      return { runId, outcome: 'stuck', problems: [`still ${run.phase} after ${run.stepsCompleted}/${steps} steps; Temporal: ${temporalStatus.get(runId)}`], secondsToComplete };
    }
    const stop = stopped.has(runId);
    if (stop) {
      if (run.phase !== 'FAILED' || run.status !== 'cancelled' || run.errorCode !== 'STOPPED') missing.push(`stopped, yet ended ${run.phase}/${run.status} (${run.errorCode}: ${run.errorMessage})`);
      if (temporalStatus.get(runId) === 'RUNNING' || temporalStatus.get(runId)?.startsWith('not found')) missing.push(`workflow ${temporalStatus.get(runId)}`);
      if (run.stepsCompleted > steps) extra.push(`${run.stepsCompleted}/${steps} steps completed`);
    } else {
      if (run.phase !== 'COMPLETED' || run.status !== 'succeeded') missing.push(`ended ${run.phase}/${run.status} (${run.errorCode}: ${run.errorMessage})`);
      if (temporalStatus.get(runId) !== 'COMPLETED') missing.push(`workflow ${temporalStatus.get(runId)}`);
      if (run.stepsCompleted !== steps) missing.push(`${run.stepsCompleted}/${steps} steps completed`);
    }
    const stepsRecorded = stop ? run.stepsCompleted : steps;

    const runTraces = tracesOf.get(runId) ?? [];
    once(runTraces.length, 'trace', missing, extra);
    if (runTraces.some((t) => (!stop && t.status !== 'completed') || t.rolledBack)) missing.push(`trace ${runTraces.map((t) => t.status).join(', ')}`);
    const stepIndexes = groupBy(stepsOf.get(runId) ?? [], (s) => String(s.stepIndex));
    for (let i = 0; i < stepsRecorded; i += 1) once(stepIndexes.get(String(i))?.length ?? 0, `trace step ${i}`, missing, extra);
    if (stepIndexes.size > stepsRecorded) extra.push(`${stepIndexes.size - stepsRecorded} trace steps beyond the ${stop ? 'steps completed' : 'plan'}`);

    const runIncidents = incidentsOf.get(runId) ?? [];
    once(runIncidents.filter((i) => i.dedupeKey === 'outcome' && !i.rolledBack).length, 'outcome incident', missing, extra);
    for (const other of runIncidents.filter((i) => i.dedupeKey !== 'outcome')) extra.push(`incident ${other.kind} ${other.errorCode ?? ''}: ${other.message}`);
    once((evaluationsOf.get(runId) ?? []).filter((e) => e.kind === 'final' && !e.rolledBack).length, 'final policy evaluation', missing, extra);
    once((logsOf.get(runId) ?? []).length, 'log record', missing, extra);

    const acks = acksOf.get(runId) ?? [];
    const expectations = expectationsOf.get(runId) ?? [];
    for (const { domain, action } of RUN_EXPECTATIONS) {
      once(acks.filter((a) => a.domain === domain && a.action === action && a.status === 'OK').length, `OK ack ${domain}/${action}`, missing, extra);
      once(expectations.filter((e) => e.domain === domain && e.action === action).length, `expectation ${domain}/${action}`, missing, extra);
    }
    for (const ack of acks.filter((a) => a.status !== 'OK')) missing.push(`${ack.status} ack ${ack.domain}/${ack.action}`);

    const events = eventsOf.get(runId) ?? [];
    for (const topic of stop ? STOPPED_TOPICS : EXPECTED_TOPICS) once(events.filter((e) => e.topic === topic && !e.retractedAt).length, `${topic} event`, missing, extra);
    for (const event of events.filter((e) => e.retractedAt)) missing.push(`${event.topic} event retracted`);

    const outcome: RunOutcome = missing.length ? 'lost' : extra.length ? 'duplicated' : 'completed';
    return { runId, outcome, problems: [...missing, ...extra], secondsToComplete };
  });
}

export interface EventFinding {
  /** The runs' outbox rows, retracted ones aside. */
  committed: number;
  published: number;
  handledOnce: number;
  handledMoreThanOnce: number;
  /**
   * Handled a second time by a living reactor after a reactor killed while handling it had run the
   * handler and died before recording it: the at-least-once window the handlers' idempotence covers
   * (events/reactor.ts). Not counted in `handledMoreThanOnce`.
   */
  handledAgainAfterKill: number;
  neverHandled: number;
  /** Handled, but the reactor's handled-key for it is missing: a copy would be handled again. */
  unrecorded: number;
  /** Stream entries beyond one per event: the relay sent a row again (the reactor drops the copy). */
  copiesRelayed: number;
  /** Read by the group and not acknowledged, or dead-lettered. */
  pending: number;
  deadLettered: number;
  /** Runs whose events reached the stream out of the order they were committed in (outbox id). */
  outOfOrderRuns: number;
  problems: string[];
}

/** Runs with an event published after a later one of theirs (a copy sent again is counted apart, as a copy). */
function outOfOrderRuns(stack: DrillStack, runIds: Set<string>): number {
  const highest = new Map<string, number>();
  const outOfOrder = new Set<string>();
  const seen = new Set<number>();
  for (const { runId, eventId } of stack.published) {
    // A relay killed after it sent a batch and before it marked it leaves the batch to be sent again:
    // the copies are counted as copies, and the order is the order of first sight.
    if (!runIds.has(runId) || seen.has(eventId)) continue;
    seen.add(eventId);
    if (eventId < (highest.get(runId) ?? 0)) outOfOrder.add(runId);
    highest.set(runId, Math.max(eventId, highest.get(runId) ?? 0));
  }
  return outOfOrder.size;
}

/**
 * Waits until every event the runs committed went outbox → relay → stream → reactor (or the
 * deadline passes), then holds each to exactly once: published, handed to the drill's handler
 * once, recorded in the reactor's handled keys, acknowledged, not dead-lettered.
 */
export async function checkEvents(stack: DrillStack, runIds: string[], deadline: number): Promise<EventFinding> {
  const committedRows = async () =>
    (await stack.database.db.select().from(outbox).where(inArray(outbox.runId, runIds))).filter((r) => !r.retractedAt);
  const { EVENT_STREAM: stream, REACTOR_GROUP: group } = stack.eventsConfig;
  // A dead reactor's unacknowledged events are claimed by a living one after they idled REACTOR_CLAIM_IDLE_SECONDS.
  const unacknowledged = async () => Number(((await stack.redis.call('XPENDING', stream, group)) as [number])[0]);
  let rows = await committedRows();
  let deliveries = await stack.readDeliveries();
  while (Date.now() < deadline && !(rows.every((r) => r.publishedAt && deliveries.has(r.id)) && (await unacknowledged()) === 0)) {
    await new Promise((r) => setTimeout(r, 250));
    rows = await committedRows();
    deliveries = await stack.readDeliveries();
  }
  const killed = new Set(stack.eventProcesses.filter((p) => !p.alive()).map((p) => p.name));
  const consumersOf = rows.map((r) => deliveries.get(r.id) ?? []);
  // Twice, first by a reactor since killed and then by another: the kill's at-least-once window.
  const againAfterKill = consumersOf.map((c) => c.length === 2 && killed.has(c[0]!) && !killed.has(c[1]!));
  const counts = consumersOf.map((c, i) => (againAfterKill[i] ? 1 : c.length));
  const recorded = await Promise.all(rows.map((r) => stack.redis.exists(`${stream}:handled:${r.id}:${stack.recorderName}`)));
  // Processes of their own count in their own registries: the stream's reader counts for them.
  const ids = new Set(runIds);
  const relayed = stack.eventProcesses.length
    ? stack.published.filter((e) => ids.has(e.runId)).length
    : (await stack.eventMetrics.eventsRelayed.get()).values.reduce((sum, v) => sum + v.value, 0);
  const pending = await unacknowledged();
  const deadLettered = Number(await stack.redis.xlen(`${stream}:dead`));
  const finding: EventFinding = {
    committed: rows.length,
    published: rows.filter((r) => r.publishedAt).length,
    handledOnce: counts.filter((c) => c === 1).length,
    handledMoreThanOnce: counts.filter((c) => c > 1).length,
    handledAgainAfterKill: againAfterKill.filter(Boolean).length,
    neverHandled: counts.filter((c) => c === 0).length,
    unrecorded: rows.filter((_, i) => counts[i]! > 0 && !recorded[i]).length,
    copiesRelayed: Math.max(0, relayed - rows.filter((r) => r.publishedAt).length),
    pending: Number(pending),
    deadLettered,
    outOfOrderRuns: outOfOrderRuns(stack, new Set(runIds)),
    problems: [],
  };
  const unpublished = rows.filter((r) => !r.publishedAt);
  if (unpublished.length) finding.problems.push(`${unpublished.length} events still in the outbox (first: ${unpublished[0]!.topic} of ${unpublished[0]!.runId})`);
  if (finding.neverHandled) finding.problems.push(`${finding.neverHandled} events never reached the reactor`);
  if (finding.handledMoreThanOnce) finding.problems.push(`${finding.handledMoreThanOnce} events handled more than once`);
  if (finding.unrecorded) finding.problems.push(`${finding.unrecorded} handled events missing their handled key`);
  if (finding.pending) finding.problems.push(`${finding.pending} events read and not acknowledged`);
  if (finding.deadLettered) finding.problems.push(`${finding.deadLettered} events dead-lettered`);
  if (finding.outOfOrderRuns) finding.problems.push(`${finding.outOfOrderRuns} runs had events published out of their commit order`);
  return finding;
}
