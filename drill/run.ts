import { checkEvents, checkRuns, runsInFlight, unansweredRuns, waitUntilStepping, waitUntilTerminal, type EventFinding, type RunFinding } from './checks';
import type { FaultOptions } from './fault';
import { FAULTS } from './faults';
import type { DrillName } from './names';
import { countOutcomes, formatReport, passed, percentile, Timeline, type DrillReport } from './report';
import { startDrillStack, type DrillStack, type SubmitStats, type SubmittedRun } from './stack';

export interface DrillOptions extends FaultOptions {
  runs: number;
  /** sim.llm steps per run, each taking `stepMs`: long enough to be in flight when the fault lands. */
  steps: number;
  stepMs: number;
  /** Everything after the stack is up: runs, fault, checks. Past it the drill fails rather than waits. */
  timeoutSeconds?: number;
  workflowBundlePath?: string;
  postgresUrl?: string;
  redisUrl?: string;
  /** A Temporal that runs already (the cluster of `./temporal-cluster.sh`), instead of a dev server of the drill's own. */
  temporalAddress?: string;
  /** Copies of the event relay and reactor (1). */
  eventServices?: number;
  /** Progress and the report; quiet when absent. */
  print?: (line: string) => void;
  /** Interrupts the drill: it tears its stack down and rejects. */
  signal?: AbortSignal;
}

export interface DrillResult {
  name: DrillName;
  passed: boolean;
  counts: ReturnType<typeof countOutcomes>;
  findings: RunFinding[];
  events: EventFinding;
  p50Seconds: number | null;
  maxSeconds: number | null;
  timeline: Timeline['entries'];
  /** How the submits fared (retries on another API, replays). */
  submits: SubmitStats;
  report: string;
}

/** How long the fault waits for the runs to be in flight before it lands anyway. */
const IN_FLIGHT_WITHIN_MS = 30_000;
/** How long the clean-up may take before the drill returns anyway. */
const CLOSE_WITHIN_MS = 30_000;
/** After the runs finished, for their last events to be relayed and handled. */
const EVENTS_WITHIN_MS = 30_000;
/** How long the runs still get when the fault could not be injected as asked. */
const FAILED_FAULT_WAIT_MS = 30_000;
/** Between two submits, for a fault that lands while they go out. */
const SUBMIT_PACE_MS = 150;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One drill: brings up a stack of its own, submits the runs, injects the fault while they are in
 * flight, waits for them (up to the timeout), checks each, prints what it did and what it found,
 * and tears everything down. Passes only with every run completed once and every event handled once.
 */
export async function runDrill(name: DrillName, options: DrillOptions): Promise<DrillResult> {
  const fault = FAULTS[name];
  const { signal } = options;
  // An interrupted drill says nothing more, whatever its abandoned steps still do.
  const print = (line: string) => signal?.aborted || options.print?.(line);
  const timeoutSeconds = options.timeoutSeconds ?? fault.defaultTimeoutSeconds;
  const title = `drill ${name}: ${options.runs} runs of ${options.steps} sim.llm steps × ${options.stepMs} ms; ${fault.describe(options)}; timeout ${timeoutSeconds}s`;
  print(title);

  const stack = await startDrillStack({
    label: name,
    ...fault.needs,
    workflowBundlePath: options.workflowBundlePath,
    postgresUrl: options.postgresUrl,
    redisUrl: options.redisUrl,
    temporalAddress: options.temporalAddress,
    workers: options.workers,
    eventServices: Math.max(options.eventServices ?? 1, fault.needs.eventServices ?? 1),
    eventProcesses: fault.needs.eventProcesses,
    apiProcesses: options.apis ?? fault.needs.apiProcesses,
    progress: (line) => print(`  ${line}`),
    signal,
  });
  let keepWorkDir = true;
  try {
    const report = await unlessAborted(drive(stack, name, { ...options, timeoutSeconds }, title, print), signal);
    keepWorkDir = !passed(report);
    if (keepWorkDir) report.workDir = stack.workDir;
    const text = formatReport(report);
    print(text);
    const times = report.findings.map((f) => f.secondsToComplete).filter((s): s is number => s !== null);
    return {
      name,
      passed: passed(report),
      counts: countOutcomes(report.findings),
      findings: report.findings,
      events: report.events,
      p50Seconds: percentile(times, 50),
      maxSeconds: percentile(times, 100),
      timeline: report.timeline.entries,
      submits: { ...stack.submitStats },
      report: text,
    };
  } catch (err) {
    throw new Error(`drill ${name} failed (logs kept in ${stack.workDir}): ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await Promise.race([stack.close({ keepWorkDir }), new Promise((r) => setTimeout(r, CLOSE_WITHIN_MS).unref())]);
  }
}

/** Submits the runs, injects the fault while they are in flight, waits for them and checks them. */
async function drive(
  stack: DrillStack,
  name: DrillName,
  options: DrillOptions & { timeoutSeconds: number },
  title: string,
  print: (line: string) => void,
): Promise<DrillReport> {
  const fault = FAULTS[name];
  const timeline = new Timeline();
  const failures: string[] = [];
  const notes: string[] = [];
  const note = (what: string) => timeline.note(what, print);
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  const plan = Array.from({ length: options.steps }, (_, i) => ({ skill: 'sim.llm', input: { prompt: `drill step ${i}`, latencyMs: options.stepMs } }));
  timeline.start();
  const ids: string[] = [];
  let sent = 0;
  const submitOne = async (i: number, delayMs: number) => {
    await sleep(delayMs);
    sent += 1;
    const run = await stack.submitRun({ plan, budgetUsd: 1 }, `drill-${name}-${i}`);
    ids.push(run.runId);
    return run;
  };
  let runsDeadline = deadline;
  const stopped = new Set<string>();
  const inject = () =>
    within(
      fault.inject({
        stack,
        options,
        note,
        inFlight: () => runsInFlight(stack.database.db, ids),
        fail: (why) => failures.push(why),
        runIds: ids,
        submitsSent: () => sent,
        submitsPlanned: options.runs,
        expectStopped: (runIds) => runIds.forEach((id) => stopped.add(id)),
        deadline,
      }),
      deadline - Date.now(),
      `the fault was still being injected at the drill's timeout (${options.timeoutSeconds}s)`,
    ).catch((err: unknown) => {
      failures.push(`fault injection failed: ${err instanceof Error ? err.message : String(err)}`);
      // The stack may be left without a worker or a server: no point waiting the whole timeout.
      runsDeadline = Math.min(deadline, Date.now() + FAILED_FAULT_WAIT_MS);
    });

  let submitted: SubmittedRun[];
  if (fault.duringSubmits) {
    const injection = inject();
    submitted = await Promise.all(Array.from({ length: options.runs }, (_, i) => submitOne(i, i * SUBMIT_PACE_MS)));
    inSubmissionOrder(ids, submitted);
    const { requests, connectionErrors, replayed } = stack.submitStats;
    note(`submitted ${submitted.length} runs, ${SUBMIT_PACE_MS} ms apart: ${requests} requests, ${connectionErrors} found no API and went to the next with the same Idempotency-Key, ${replayed} answered Idempotent-Replayed (the dead API had created the run before it could answer)`);
    await waitUntilStepping(stack.database.db, submitted.map((r) => r.runId), Date.now() + IN_FLIGHT_WITHIN_MS);
    await injection;
  } else {
    submitted = await Promise.all(Array.from({ length: options.runs }, (_, i) => submitOne(i, 0)));
    inSubmissionOrder(ids, submitted);
    note(`submitted ${ids.length} runs`);
    const stepping = await waitUntilStepping(stack.database.db, ids, Date.now() + IN_FLIGHT_WITHIN_MS);
    note(`${stepping} of ${ids.length} runs past their first step`);
    await inject();
  }
  const open = await waitUntilTerminal(stack.database.db, stack.client, ids, runsDeadline);
  note(open === 0 ? `all ${ids.length} runs finished` : `timed out: ${open} runs still in flight`);
  const findings = await checkRuns(stack.database.db, stack.client, submitted, options.steps, stopped);
  failures.push(...(await unansweredRuns(stack.database.db, stack.tenant.tenantId, ids)));
  // Events of finished runs may still be on their way through the relay and the reactor.
  const events = await checkEvents(stack, ids, Date.now() + Math.max(EVENTS_WITHIN_MS, (stack.eventsConfig.REACTOR_CLAIM_IDLE_SECONDS + 15) * 1000));
  note('checked every run and event');
  const times = findings.map((f) => f.secondsToComplete).filter((s): s is number => s !== null);
  if ((percentile(times, 100) ?? 0) > 300) {
    notes.push('runs took minutes: a skill step on a killed worker should be retried after its heartbeat timeout (core/step-heartbeat.ts); look for a step whose heartbeat stopped reaching Temporal');
  }
  return { title, timeline, findings, events, failures, workDir: null, notes };
}

/** The runs' ids in the order they were submitted, whatever order the answers came in. */
function inSubmissionOrder(ids: string[], submitted: SubmittedRun[]): void {
  ids.splice(0, ids.length, ...submitted.map((r) => r.runId));
}

/** `work`, or a rejection after `ms`; the work is left to finish on its own. */
function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** `work`, or a rejection as soon as the signal aborts; the work is left to fail on its own, unheard. */
function unlessAborted<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('interrupted'));
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
