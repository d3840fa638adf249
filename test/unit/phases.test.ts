import { describe, expect, it } from 'vitest';
import {
  IllegalTransitionError,
  PHASE_STATUS_INVARIANTS,
  PhaseStatusInvariantError,
  RUN_PHASES,
  RUN_STATUSES,
  assertPhaseStatus,
  assertTransition,
  canTransition,
} from '../../core/phases';

describe('phase/status invariant (seed §13.4)', () => {
  const matrix: [string, string[]][] = [
    ['CREATED', ['queued']],
    ['AUTHORIZED', ['queued']],
    ['EXECUTING', ['running']],
    ['GOVERNANCE_CHECK', ['running']],
    ['FINALIZING', ['running']],
    ['COMPLETED', ['succeeded']],
    ['FAILED', ['failed', 'failed_policy', 'cancelled', 'retry']],
  ];

  it.each(matrix)('%s allows exactly %j', (phase, allowed) => {
    expect(PHASE_STATUS_INVARIANTS[phase as keyof typeof PHASE_STATUS_INVARIANTS]).toEqual(allowed);
    for (const status of RUN_STATUSES) {
      const check = () => assertPhaseStatus(phase as never, status);
      if (allowed.includes(status)) expect(check).not.toThrow();
      else expect(check).toThrow(PhaseStatusInvariantError);
    }
  });
});

describe('phase machine', () => {
  it('walks the happy path forward', () => {
    expect(() => assertTransition('CREATED', 'AUTHORIZED', 'queued')).not.toThrow();
    expect(() => assertTransition('AUTHORIZED', 'EXECUTING', 'running')).not.toThrow();
    expect(() => assertTransition('EXECUTING', 'GOVERNANCE_CHECK', 'running')).not.toThrow();
    expect(() => assertTransition('GOVERNANCE_CHECK', 'FINALIZING', 'running')).not.toThrow();
    expect(() => assertTransition('FINALIZING', 'COMPLETED', 'succeeded')).not.toThrow();
  });

  it('reaches FAILED from every non-terminal phase and leaves no terminal phase', () => {
    for (const phase of RUN_PHASES) {
      const terminal = phase === 'COMPLETED' || phase === 'FAILED';
      expect(canTransition(phase, 'FAILED')).toBe(!terminal);
      if (terminal) expect(RUN_PHASES.some((to) => canTransition(phase, to))).toBe(false);
    }
  });

  it('fails loudly on a skipped phase, a backwards move, or a wrong status', () => {
    expect(() => assertTransition('CREATED', 'EXECUTING', 'running')).toThrow(IllegalTransitionError);
    expect(() => assertTransition('AUTHORIZED', 'GOVERNANCE_CHECK', 'running')).toThrow(/illegal run transition/);
    expect(() => assertTransition('EXECUTING', 'AUTHORIZED', 'queued')).toThrow(IllegalTransitionError);
    expect(() => assertTransition('COMPLETED', 'FAILED', 'failed')).toThrow(IllegalTransitionError);
    expect(() => assertTransition('FINALIZING', 'COMPLETED', 'failed')).toThrow(PhaseStatusInvariantError);
    expect(() => assertTransition('EXECUTING', 'FAILED', 'succeeded')).toThrow(PhaseStatusInvariantError);
  });
});
