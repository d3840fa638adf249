import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { RequestedToolCall } from '../core/agent';
import type { OutputRef } from '../core/outputs';
import type { ObservabilityMode, PauseTimeoutBehavior, PredictedOverrunBehavior, ToolPolicy } from '../core/policy';
import { ALWAYS_MAY_RESUME, RESUME_AUTHORITIES, type PauseReason, type PolicyDecision, type ResumeAuthority } from '../core/policy-check';
import type { RunPhase, RunStatus } from '../core/phases';
import type { PlanStep } from '../core/plan';
import type { PriceTable } from '../core/pricing';
import type { PendingApproval } from '../core/tool-calls';
import type { SagaPhase } from '../core/saga';
import { toSafeText } from '../core/text-safety';
import { isUndecodable } from './payload-converter';
import type { ToolCallResolution } from '../core/tool-calls';

/**
 * A run continues as new, between steps, once its history holds this many events: far below the
 * 10,240 at which Temporal starts warning (a step adds about seven, a pause a dozen more), and
 * small enough that a worker taking over replays it in a moment.
 */
export const RUN_HISTORY_EVENTS_BOUND = 2_000;

export interface RunWorkflowInput {
  runId: string;
  tenantId: string;
  plan: PlanStep[];
  budgetUsd: number;
  authorization: { decision: 'ALLOWED' | 'DENIED'; reason: string | null };
  observabilityMode: ObservabilityMode;
  /** The policy version the run was authorized under; absent in runs started before policy checks. */
  policyVersion?: number;
  /** Continue as new once the history holds this many events (default `RUN_HISTORY_EVENTS_BOUND`). */
  continueAsNewAfterEvents?: number;
  /**
   * Prices as the run started with them: its cost predictions decide whether a step runs, so they
   * must not change under it on replay when the code's price table does. Absent: the code's table.
   */
  prices?: PriceTable;
  /** Set when an earlier execution of this run continued as new: where it stopped, before step `nextStep`. */
  continued?: ContinuedRun;
}

export interface ContinuedRun {
  nextStep: number;
  /** Inside an agent step (`nextStep`): the turn to go on with. */
  agentTurn?: number;
  /** Inside that turn, when the run continued as new while a pause held one of its tool calls: where its calls stood. */
  agentCalls?: CarriedCalls;
  state: RunState;
  governor: GovernorMemory;
}

/** What the run keeps of its tenant's policy between checks. */
export interface PolicySettings {
  version: number;
  budgetPerRunUsd: number;
  checkIntervalMs: number;
  approvalSkills: readonly string[];
  warningThresholdPct: number;
  pauseSlaMs: number;
  pauseWarningMs: number;
  pauseTimeoutBehavior: PauseTimeoutBehavior;
  onPredictedOverrun: PredictedOverrunBehavior;
  /** Pause (BUDGET_WARNING) at the warning point (absent in runs held before the run decided it). */
  pauseOnThreshold?: boolean;
  /** The limits an agent's loop meets between checks (absent in runs held before agents). */
  maxSteps?: number;
  maxTokens?: number;
  tools?: ToolPolicy;
}

/** The governor's own state: plain data, so a run that continues as new carries it whole. */
export interface GovernorMemory {
  settings: PolicySettings | null;
  knownPolicyVersion: number;
  /** Workflow time of the last policy check. */
  lastCheckAt: number | null;
  /** Counters that key the run's records (`check:n`, `pause:n`, `signal:n`): they never restart. */
  checkNumber: number;
  pauseNumber: number;
  signalNumber: number;
  checkRequested: boolean;
  approvedStep: number;
  /** The step whose predicted overrun a resume accepted: it runs, and the hard limit after it still holds. */
  overrunAcceptedStep: number;
  /** The run has asked for its pause at the warning point (`pauseOnThreshold`), once. */
  thresholdPauseRequested?: boolean;
  /** Controls accepted and not yet acted on at a step boundary. */
  stopRequest: ControlRequest | null;
  pauseRequest: PauseRequest | null;
  /** Ids of requests already acted on (the newest ones), so a redelivered request is a no-op. */
  seenRequestIds: string[];
  /** A pause the run was holding when it continued as new: the next execution takes it up where it stood. */
  heldPause?: HeldPause | null;
}

/** What a resume of a held pause accepts, as the code that paused would have applied it. */
export type PauseEffect =
  | { kind: 'recheck' }
  | { kind: 'acceptPolicy'; version: number; approveStep: number | null }
  | { kind: 'acceptStepOverrun'; stepIndex: number }
  | { kind: 'acceptOverrun' }
  | { kind: 'approval' };

export interface HeldPause {
  pause: PauseState;
  period: number;
  request: PauseRequest | null;
  timerMayResume: boolean;
  effect: PauseEffect;
}

/** The tool calls of one turn, part ruled on, as a run that continued as new mid-turn carries them. */
export interface CarriedCalls {
  calls: RequestedToolCall[];
  /** The call whose pause the run was holding. */
  next: number;
  toRun: { call: RequestedToolCall; priceUsd: number }[];
  refused: { stepIndex: number; turn: number; callIndex: number; tool: string | null; argsSha256: string; resolution: 'unknown_tool' | 'not_allowed' | 'denied' | 'limit' | 'not_run' | 'failed'; message: string }[];
  reservedUsd: number;
}

export interface PauseState {
  /** The run's n-th pause. */
  number: number;
  reason: PauseReason;
  detail: string;
  allowedAuthorities: ResumeAuthority[];
  since: string;
  expiresAt: string;
  escalated: boolean;
  /** Set by whoever paused many runs at once (a tenant-wide pause), so the matching resume finds its own. */
  tag?: string;
  /** A TOOL_APPROVAL pause: the call waiting for a person, who must quote `argsSha256` to approve it. */
  approval?: PendingApproval;
}

export type { PendingApproval } from '../core/tool-calls';

/** What the live view shows of an agent step in progress. */
export interface AgentView {
  stepIndex: number;
  turn: number;
  /** The latest tool calls, newest last (a few). */
  recentCalls: { turn: number; callIndex: number; tool: string; args: string; resolution: ToolCallResolution | 'running'; durationMs: number; costUsd: number }[];
}

/** What the run query returns: the live state an operator or the API sees. */
export interface RunState {
  runId: string;
  tenantId: string;
  phase: RunPhase;
  status: RunStatus;
  totalSteps: number;
  stepsCompleted: number;
  costUsd: number;
  tokens: number;
  budgetUsd: number;
  observabilityStatus: 'OK' | 'DEGRADED';
  sagaPhase: SagaPhase;
  error: { code: string; message: string } | null;
  pause?: PauseState | null;
  policyVersion?: number;
  lastCheck?: { decision: PolicyDecision; reason: string; stepIndex: number } | null;
  /** How many times the run's workflow continued as new (a long run's history is cut into executions). */
  continuedAsNew?: number;
  /** Governed steps taken: plan steps, and each model turn and tool call of an agent (runs with outputs). */
  actionsCompleted?: number;
  turns?: number;
  toolCalls?: number;
  /** The agent step in progress, if any. */
  agent?: AgentView | null;
  /** The last completed step's stored output: the run's result. */
  output?: OutputRef | null;
}

/**
 * Control messages are plain JSON objects, so `temporal workflow signal --input '{...}'` and
 * `tctl workflow signal --input '{...}'` drive a run exactly as the API does.
 */
export interface ControlRequest {
  actor?: string;
  authority?: string;
  /** Further authorities the caller holds (the API sends every one that applies). */
  authorities?: string[];
  reason?: string;
  /** A sender that may deliver the same request twice names it; the run acts on it once. */
  requestId?: string;
}

export interface PauseRequest extends ControlRequest {
  /** Defaults to MANUAL_PAUSE. */
  pauseReason?: PauseReason;
  /** Who may resume this pause; defaults to the reason's authorities. */
  allowedAuthorities?: ResumeAuthority[];
  /** Kept on the pause: see `PauseState.tag`. */
  tag?: string;
}

export interface ResumeRequest extends ControlRequest {
  /** Resume only a pause carrying this tag (a tenant-wide resume leaves other pauses alone). */
  ifPauseTag?: string;
  /** For a TOOL_APPROVAL pause: the hash of the arguments the approver saw; any other is refused. */
  argsSha256?: string;
  /** For a TOOL_APPROVAL pause: approve (the default) or deny the call. */
  decision?: 'approve' | 'deny';
}

const MAX_REASON = 500;
const MAX_NAME = 200;
/** The most a control signal may carry: its fields are a few short texts. */
export const MAX_SIGNAL_BYTES = 16 * 1024;
const TRUNCATED = ' [truncated]';

/** Why a signal's payload cannot be acted on at all, or null: undecodable, or larger than a control can be. */
export function signalProblem(raw: unknown): string | null {
  if (isUndecodable(raw)) {
    const { encoding, bytes, reason } = raw.undecodablePayload;
    return `its payload (${bytes} bytes, encoding ${encoding}) cannot be decoded: ${reason}`;
  }
  const bytes = raw instanceof Uint8Array ? raw.length : (JSON.stringify(raw ?? null) ?? '').length;
  return bytes > MAX_SIGNAL_BYTES ? `its payload is ${bytes} bytes, over the ${MAX_SIGNAL_BYTES} a control may carry` : null;
}

/** Storable text of at most `max` characters; a longer one is cut and says so. */
function boundedText(value: unknown, max: number): string | undefined {
  const text = toSafeText(value, Number.MAX_SAFE_INTEGER);
  if (text === undefined || text.length <= max) return text;
  return `${toSafeText(text, max - TRUNCATED.length)}${TRUNCATED}`;
}

/**
 * A signal's payload as the run may use it. Signals come from any client (`temporal`, `tctl`,
 * the API), and workflow code cannot refuse one: a field of the wrong type is dropped and text is
 * made storable, so nothing a signal carries can fail a database write or the workflow.
 */
export function controlRequestFrom(raw: unknown): ResumeRequest {
  const fields = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const text = (key: string, max: number) => boundedText(fields[key], max);
  const authorities = Array.isArray(fields.authorities)
    ? fields.authorities.slice(0, RESUME_AUTHORITIES.length).flatMap((a) => toSafeText(a, MAX_NAME) ?? [])
    : undefined;
  const request: ResumeRequest = {
    actor: text('actor', MAX_NAME),
    authority: text('authority', MAX_NAME),
    authorities,
    reason: text('reason', MAX_REASON),
    requestId: text('requestId', MAX_NAME),
    ifPauseTag: text('ifPauseTag', MAX_NAME),
    argsSha256: text('argsSha256', MAX_NAME),
    decision: fields.decision === 'approve' || fields.decision === 'deny' ? fields.decision : undefined,
  };
  return Object.fromEntries(Object.entries(request).filter(([, v]) => v !== undefined));
}

/**
 * Who a control that names no actor is recorded as made by: someone unknown (an operator's signal
 * without `actor`), never `policy`, which is the run's own governance.
 */
export const ANONYMOUS_ACTOR = 'anonymous';

/**
 * The reason a tenant's suspension is pushed to its live runs with (`tenantStatusPush` in
 * dispatch/control-pusher.ts): a run holding a pause takes it as a stop (`RunGovernor.onPolicyChanged`).
 */
export const TENANT_SUSPENDED_REASON = 'tenant suspended';

/**
 * As `controlRequestFrom`, with the pause's own fields; an unknown reason is kept for the refusal.
 * Authorities a sender names are kept only with `ALWAYS_MAY_RESUME` among them: a pause may admit
 * more people than its reason's default, never lock the tenant's admin and the founder out.
 */
export function pauseRequestFrom(raw: unknown): PauseRequest & { pauseReason?: string } {
  const fields = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const { ifPauseTag: _notForPauses, argsSha256: _approvalsOnly, decision: _approvalsToo, ...request } = controlRequestFrom(raw);
  const allowed = Array.isArray(fields.allowedAuthorities)
    ? fields.allowedAuthorities.filter((a): a is ResumeAuthority => RESUME_AUTHORITIES.includes(a as ResumeAuthority))
    : undefined;
  const pauseReason = toSafeText(fields.pauseReason, MAX_NAME);
  const tag = toSafeText(fields.tag, MAX_NAME);
  return {
    ...request,
    ...(pauseReason !== undefined ? { pauseReason: pauseReason as PauseReason } : {}),
    ...(allowed?.length ? { allowedAuthorities: [...new Set([...allowed, ...ALWAYS_MAY_RESUME])] } : {}),
    ...(tag !== undefined ? { tag } : {}),
  };
}

/** Every authority a request claims: its `authority` first, then the others it holds. */
export function heldAuthorities(request: ControlRequest): string[] {
  return [request.authority, ...(request.authorities ?? [])].filter((a): a is string => typeof a === 'string');
}

export const runStateQuery = defineQuery<RunState>('runState');
export const pauseSignal = defineSignal<[PauseRequest?]>('pause');
export const resumeSignal = defineSignal<[ResumeRequest?]>('resume');
export const stopSignal = defineSignal<[ControlRequest?]>('stop');
export const policyChangedSignal = defineSignal<[ControlRequest?]>('policyChanged');
/**
 * A resume that answers: its validator refuses it at once when the run is not paused or the
 * authority is not allowed. A wire name of its own, apart from the `resume` signal that tctl and
 * `temporal workflow signal` send, so the Web UI and a history tell the two apart.
 */
export const resumeUpdate = defineUpdate<RunState, [ResumeRequest]>('resumeRun');
/**
 * The same update under the name it had before (`resume`, the signal's): the histories of runs
 * resumed that way replay through it, and a caller still using it is answered. Nothing sends it.
 */
export const resumeUpdateByItsFormerName = defineUpdate<RunState, [ResumeRequest]>('resume');

/**
 * Why a run refused a resume, an approval or a denial: the failure type its update validator
 * throws (an ApplicationFailure, with the sentence as its message), so a caller answers by code.
 */
export const RESUME_REFUSALS = [
  'RUN_NOT_PAUSED',
  /** `ifPauseTag` named another pause than the one the run holds. */
  'PAUSE_NOT_TAGGED',
  'NO_AUTHORITY',
  'AUTHORITY_NOT_ALLOWED',
  'APPROVAL_MISMATCH',
  'NOT_AWAITING_APPROVAL',
  /** The update's payload could not be read, or is larger than a control may be. */
  'UNREADABLE_REQUEST',
] as const;
export type ResumeRefusalCode = (typeof RESUME_REFUSALS)[number];

/** What a refusal carries beside its sentence: for AUTHORITY_NOT_ALLOWED, who asked and who may. */
export interface ResumeRefusal {
  code: ResumeRefusalCode;
  sentence: string;
  held?: string[];
  pauseReason?: string;
  allowed?: string[];
}

export function isResumeRefusalCode(type: string | undefined): type is ResumeRefusalCode {
  return (RESUME_REFUSALS as readonly string[]).includes(type ?? '');
}
