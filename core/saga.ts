/** Progress of the governance saga (seed FIX-001's transaction phases). */
export const SAGA_PHASES = [
  'NOT_STARTED',
  'INCIDENT_CREATED',
  'POLICY_EVALUATED',
  'TRACE_COMPLETED',
  'COMMITTED',
  'EVENTS_PUBLISHED',
  'ROLLED_BACK',
] as const;
export type SagaPhase = (typeof SAGA_PHASES)[number];
