/**
 * The run's phase machine and the phase/status invariant (seed §8.1 and §13.4).
 * Pure: imported by the workflow, the activities and the API alike.
 */
export const RUN_PHASES = [
  'CREATED',
  'AUTHORIZED',
  'EXECUTING',
  'GOVERNANCE_CHECK',
  'FINALIZING',
  'COMPLETED',
  'FAILED',
] as const;
export type RunPhase = (typeof RUN_PHASES)[number];

export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'failed_policy', 'cancelled', 'retry'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export type FailedStatus = Extract<RunStatus, 'failed' | 'failed_policy' | 'cancelled' | 'retry'>;

export const PHASE_STATUS_INVARIANTS: Readonly<Record<RunPhase, readonly RunStatus[]>> = {
  CREATED: ['queued'],
  AUTHORIZED: ['queued'],
  EXECUTING: ['running'],
  GOVERNANCE_CHECK: ['running'],
  FINALIZING: ['running'],
  COMPLETED: ['succeeded'],
  FAILED: ['failed', 'failed_policy', 'cancelled', 'retry'],
};

/** Forward edges only; FAILED is reachable from every non-terminal phase. */
const NEXT_PHASES: Readonly<Record<RunPhase, readonly RunPhase[]>> = {
  CREATED: ['AUTHORIZED', 'FAILED'],
  AUTHORIZED: ['EXECUTING', 'FAILED'],
  EXECUTING: ['GOVERNANCE_CHECK', 'FAILED'],
  GOVERNANCE_CHECK: ['FINALIZING', 'FAILED'],
  FINALIZING: ['COMPLETED', 'FAILED'],
  COMPLETED: [],
  FAILED: [],
};

export const TERMINAL_PHASES: readonly RunPhase[] = ['COMPLETED', 'FAILED'];

export function isTerminalPhase(phase: RunPhase): boolean {
  return TERMINAL_PHASES.includes(phase);
}

export class IllegalTransitionError extends Error {
  override readonly name = 'IllegalTransitionError';
}

export class PhaseStatusInvariantError extends Error {
  override readonly name = 'PhaseStatusInvariantError';
}

export function assertPhaseStatus(phase: RunPhase, status: RunStatus): void {
  if (!PHASE_STATUS_INVARIANTS[phase].includes(status)) {
    throw new PhaseStatusInvariantError(
      `status '${status}' is not allowed in phase ${phase} (allowed: ${PHASE_STATUS_INVARIANTS[phase].join(', ')})`,
    );
  }
}

export function canTransition(from: RunPhase, to: RunPhase): boolean {
  return NEXT_PHASES[from].includes(to);
}

/** Throws on an edge the machine does not have or a status the target phase does not allow. */
export function assertTransition(from: RunPhase, to: RunPhase, status: RunStatus): void {
  if (!canTransition(from, to)) {
    throw new IllegalTransitionError(`illegal run transition ${from} -> ${to}`);
  }
  assertPhaseStatus(to, status);
}

/** The order of phases, so a store can refuse to move a run backwards. */
export function phaseRank(phase: RunPhase): number {
  return RUN_PHASES.indexOf(phase);
}
