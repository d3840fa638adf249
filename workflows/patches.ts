import { patched } from '@temporalio/workflow';

/**
 * Every change to the run workflow that a run in flight must not see, oldest first. Each id is
 * passed to `patched()` where the new behaviour begins; the recorded histories in
 * `test/histories/` replay through both branches.
 */
export const RUN_PATCHES = {
  /** Runs recorded before mid-run policy checks existed replay without them. */
  midRunPolicyChecks: 'mid-run-policy-checks',
  /**
   * A write that fails for good (the retry budget spent on an error that is not an outage) used to
   * fail the workflow and leave the stored run mid-phase forever; now the run fails and says why.
   */
  neverWedge: 'never-wedge-on-a-failed-write',
  /**
   * A run that ends FAILED fails its workflow too (after every record is written), so Temporal's
   * own status — the Web UI's badge, `ExecutionStatus = "Failed"` in a list query — tells the
   * run's outcome. The failure's type is the run's failure code and its details the final state.
   */
  failedRunFailsWorkflow: 'failed-run-fails-its-workflow',
  /** A run that failed while executing used to go straight to FAILED, its saga run in EXECUTING. */
  failedRunClosesVisibly: 'failed-run-closes-through-governance',
  /** Runs that closed before control requests were refused while closing replay without the refusals. */
  refuseControlWhileClosing: 'refuse-control-while-closing',
  /**
   * A compensation that gave up used to end the saga there and leave the run unfinalized; now the
   * others still run and the run is finalized FAILED with what could not be undone.
   */
  compensationGivesUp: 'compensation-gives-up-run-still-finalized',
  /** Runs started before domain writes became local activities replay with the task-queue ones. */
  localDomainWrites: 'domain-writes-local-first',
  /** Runs started before budget reservation let a step run whatever it was predicted to cost. */
  budgetReservation: 'budget-reservation',
  /** Runs started before long runs continued as new keep one history, however long. */
  longRunContinuesAsNew: 'long-run-continues-as-new',
  /** Runs started before some moves rode with the next write record every move in a write of its own. */
  movesRideWithWrites: 'moves-ride-with-writes',
  /**
   * Runs started before outputs were stored ran each step with `executeStep` and recorded its trace
   * row in a write of its own; now `runStep` resolves the step's references, runs it and records
   * its whole output, trace row and ack in one transaction.
   */
  stepOutputs: 'steps-record-their-outputs',
  /** Runs started before wrote one refusal per refused signal, however many arrived at once. */
  signalRefusalsInBatches: 'signal-refusals-in-batches',
  /**
   * Runs started before failed their workflow task on a signal they could not decode, acted on
   * oversized ones, and did not continue as new before Temporal's per-execution signal limit.
   */
  signalsBounded: 'signals-bounded',
  /**
   * Runs started before bounded a chat step by its named model's price (or the default's); a
   * provider billing a dearer model could take them over the bound. Asked on its own (before
   * baseline 2026-12-04), only by runs with such a step, when it is first predicted.
   */
  priceBoundAtDearestRate: 'price-bound-at-dearest-rate',
  /**
   * Runs started before were paused at their warning point by the event reactor, with the tenant's
   * policy of the moment; now the run pauses itself, with the policy it holds.
   */
  thresholdPauseByTheRun: 'threshold-pause-by-the-run',
  /**
   * Runs started before held a pause through their tenant's suspension until its SLA ran out; now
   * the suspension's push (`policyChanged`, reason "tenant suspended") stops a paused run at once.
   * A run recorded before the baseline asks for it on its own, only when a suspension finds it paused.
   */
  suspensionStopsPausedRun: 'suspension-stops-paused-run',
  /**
   * Runs started before refused a resume that came while a pause they had accepted mid-step was
   * not yet held, and then paused at the next boundary with no resume to come. Asked on its own
   * (before baseline 2026-12-04), only when a resume finds such a pause.
   */
  resumeWithdrawsPendingPause: 'resume-withdraws-a-pending-pause',
  /**
   * Runs started before learned nothing from how they ended; now the governance saga records the
   * run's lesson (a step with its own compensation) between the policy evaluation and the trace
   * completion, and the incident step declares the lesson in the run's audit contract when the run
   * owes one. Asked on its own (by runs recorded before baseline 2026-12-04), when the saga starts.
   */
  lessonsLearned: 'lessons-learned',
  /**
   * Runs started before ran the saga's lesson step for every run, one that had nothing to teach
   * included (the step wrote nothing then, but cost the run an activity and its history a marker);
   * now the saga skips it when the incident step, which decides from the same rule whether the
   * run's contract owes a lesson, answered that it owes none. Asked on its own (by runs recorded
   * before baseline 2026-12-04) only when the incident step answered so.
   */
  lessonsOnlyWhenLearned: 'lessons-only-when-learned',
} as const;

export type RunPatch = keyof typeof RUN_PATCHES;

/**
 * When each patch's new branch became the only one new runs take: its baseline's release, or its
 * own for a patch asked on its own. Retiring a patch (removing its old branch, its `patched()`
 * call and the histories recorded before it) follows one rule, checked by `npm run
 * patches:retirable` against the namespace: no run started before that date is still open, and
 * the namespace's retention has passed since (so no history an operator may still replay or
 * reset needs the old branch). A run may be paused for weeks, so the check asks Temporal rather
 * than assuming a run's life is bounded.
 */
export const PATCH_RELEASED: Readonly<Record<RunPatch, string>> = {
  midRunPolicyChecks: '2026-11-24',
  neverWedge: '2026-11-24',
  failedRunFailsWorkflow: '2026-11-24',
  failedRunClosesVisibly: '2026-11-24',
  refuseControlWhileClosing: '2026-11-24',
  compensationGivesUp: '2026-11-24',
  localDomainWrites: '2026-11-24',
  budgetReservation: '2026-11-24',
  longRunContinuesAsNew: '2026-11-24',
  movesRideWithWrites: '2026-11-24',
  stepOutputs: '2026-12-03',
  signalRefusalsInBatches: '2026-12-03',
  signalsBounded: '2026-12-03',
  priceBoundAtDearestRate: '2026-12-03',
  suspensionStopsPausedRun: '2026-12-03',
  thresholdPauseByTheRun: '2026-12-03',
  resumeWithdrawsPendingPause: '2026-12-03',
  lessonsLearned: '2026-12-03',
  lessonsOnlyWhenLearned: '2026-12-04',
};

/** Whether a patch may retire, given what the namespace says (see `PATCH_RELEASED`). */
export function mayRetire(released: string, namespace: { openRunsStartedBefore: number; lastSuchRunClosedAt: Date | null; retentionDays: number; now: Date }): boolean {
  if (namespace.openRunsStartedBefore > 0) return false;
  const since = namespace.lastSuchRunClosedAt ?? new Date(released);
  return namespace.now.getTime() - since.getTime() >= namespace.retentionDays * 86_400_000;
}

/**
 * What a run records instead of one marker per patch: each `patched()` costs
 * its history a marker and an upsert of `TemporalChangeVersion` (a visibility write). Frozen: a patch
 * added later is not part of it and is asked for on its own. A release older than the baseline
 * cannot replay a run that recorded it (nor the moves riding with writes, which the same release
 * brought to every run), so a rollback goes no further back than the release that introduced it.
 */
const BASELINE_2026_11 = {
  id: 'run-baseline-2026-11',
  includes: new Set<RunPatch>([
    'midRunPolicyChecks',
    'neverWedge',
    'failedRunFailsWorkflow',
    'failedRunClosesVisibly',
    'refuseControlWhileClosing',
    'compensationGivesUp',
    'localDomainWrites',
    'budgetReservation',
    'longRunContinuesAsNew',
    'movesRideWithWrites',
  ]),
};

/** The baseline of runs started since step outputs were stored: every patch above. */
const BASELINE_2026_12 = {
  id: 'run-baseline-2026-12',
  includes: new Set<RunPatch>([...BASELINE_2026_11.includes, 'stepOutputs', 'signalRefusalsInBatches', 'signalsBounded', 'suspensionStopsPausedRun', 'thresholdPauseByTheRun']),
};

/**
 * The baseline of runs started since the saga skips a lesson step with nothing to record: every
 * patch above, those a run used to ask for on its own included (each of which cost a run that
 * took its branch a marker and an upsert).
 */
const BASELINE_2026_12_04 = {
  id: 'run-baseline-2026-12-04',
  includes: new Set<RunPatch>([
    ...BASELINE_2026_12.includes,
    'priceBoundAtDearestRate',
    'resumeWithdrawsPendingPause',
    'lessonsLearned',
    'lessonsOnlyWhenLearned',
  ]),
};

/**
 * Which patched behaviours this run has. A run started on today's code has all of the baseline's
 * (one marker, asked for first, when the run is created); a run recorded before it asks for each
 * patch where the behaviour begins, as it always did, and replays as it ran.
 */
export class RunPatches {
  // The newest baseline first: a run that recorded it asks for no other, and one recorded before
  // it replays with the marker it has (an absent marker answers false without being recorded).
  private readonly baseline = patched(BASELINE_2026_12_04.id)
    ? BASELINE_2026_12_04
    : patched(BASELINE_2026_12.id)
      ? BASELINE_2026_12
      : patched(BASELINE_2026_11.id)
        ? BASELINE_2026_11
        : null;

  has(patch: RunPatch): boolean {
    return Boolean(this.baseline?.includes.has(patch)) || patched(RUN_PATCHES[patch]);
  }
}
