/** Progress of the governance saga (seed FIX-001's transaction phases). */
export const SAGA_PHASES = [
  'NOT_STARTED',
  'INCIDENT_CREATED',
  'POLICY_EVALUATED',
  /** The run's lesson, when it had one to teach (runs started since lessons were learned). */
  'LESSON_RECORDED',
  'TRACE_COMPLETED',
  'COMMITTED',
  'EVENTS_PUBLISHED',
  'ROLLED_BACK',
  /** A compensation gave up: the saga failed and what it could not undo still stands (the run says which). */
  'ROLLBACK_INCOMPLETE',
] as const;
export type SagaPhase = (typeof SAGA_PHASES)[number];
