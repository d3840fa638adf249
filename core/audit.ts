/** What every accepted run must produce, declared at submit time (T0) as audit expectations. */
export type AuditDomain = 'logs' | 'incidents' | 'policies' | 'orchestrator';

export interface AuditAction {
  domain: AuditDomain;
  action: string;
}

export const START_TRACE = { domain: 'logs', action: 'start_trace' } as const satisfies AuditAction;
export const COMPLETE_TRACE = { domain: 'logs', action: 'complete_trace' } as const satisfies AuditAction;
export const CREATE_LOG_RECORD = { domain: 'logs', action: 'create_log_record' } as const satisfies AuditAction;
export const CREATE_INCIDENT = { domain: 'incidents', action: 'create_incident' } as const satisfies AuditAction;
export const EVALUATE_POLICY = { domain: 'policies', action: 'evaluate_policy' } as const satisfies AuditAction;
export const FINALIZE_RUN = { domain: 'orchestrator', action: 'finalize_run' } as const satisfies AuditAction;

export const RUN_EXPECTATIONS: readonly AuditAction[] = [
  START_TRACE,
  CREATE_INCIDENT,
  EVALUATE_POLICY,
  COMPLETE_TRACE,
  CREATE_LOG_RECORD,
  FINALIZE_RUN,
];

export type AckStatus = 'OK' | 'FAILED' | 'ROLLED_BACK';
