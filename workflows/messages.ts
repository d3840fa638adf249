import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ObservabilityMode } from '../core/policy';
import type { PauseReason, PolicyDecision, ResumeAuthority } from '../core/policy-check';
import type { RunPhase, RunStatus } from '../core/phases';
import type { PlanStep } from '../core/plan';
import type { SagaPhase } from '../core/saga';

export interface RunWorkflowInput {
  runId: string;
  tenantId: string;
  plan: PlanStep[];
  budgetUsd: number;
  authorization: { decision: 'ALLOWED' | 'DENIED'; reason: string | null };
  observabilityMode: ObservabilityMode;
  /** The policy version the run was authorized under; absent in runs started before policy checks. */
  policyVersion?: number;
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
}

export interface PauseRequest extends ControlRequest {
  /** Defaults to MANUAL_PAUSE. */
  pauseReason?: PauseReason;
  /** Who may resume this pause; defaults to the reason's authorities. */
  allowedAuthorities?: ResumeAuthority[];
}

export const runStateQuery = defineQuery<RunState>('runState');
export const pauseSignal = defineSignal<[PauseRequest?]>('pause');
export const resumeSignal = defineSignal<[ControlRequest?]>('resume');
export const stopSignal = defineSignal<[ControlRequest?]>('stop');
export const policyChangedSignal = defineSignal<[ControlRequest?]>('policyChanged');
/** A resume that answers: its validator refuses it at once when the run is not paused or the authority is not allowed. */
export const resumeUpdate = defineUpdate<RunState, [ControlRequest]>('resume');
