/** What every accepted run must produce, declared at submit time (T0) as audit expectations. */
export type AuditDomain = 'logs' | 'incidents' | 'policies' | 'orchestrator' | 'tools' | 'lessons';

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

/**
 * A run's lesson (core/lessons.ts). Not declared at T0: a run owes one only when its outcome or its
 * near misses give it something to teach, and the incident step, which records that outcome,
 * declares it then. Runs recorded before lessons existed never declare it, so never miss it.
 */
export const RECORD_LESSON = { domain: 'lessons', action: 'record_lesson' } as const satisfies AuditAction;

export const RUN_EXPECTATIONS: readonly AuditAction[] = [
  START_TRACE,
  CREATE_INCIDENT,
  EVALUATE_POLICY,
  COMPLETE_TRACE,
  CREATE_LOG_RECORD,
  FINALIZE_RUN,
];

export type AckStatus = 'OK' | 'FAILED' | 'ROLLED_BACK';

/**
 * Acks of the run's own work, one per governed step: a plan step's record (`record_step:2`), an
 * agent's model turn (`model_turn:2.5`, step 2's sixth turn). They are evidence, not part of the
 * contract declared at T0 (a run that ends early never owes its later steps): the reconciler
 * checks that each OK one has its stored output. A tool call (`tool_call:2.5.0`) is declared when
 * the model asks for it, before it runs, and its resolution acks it.
 */
export type RunItem = { stepIndex: number; turn?: number; callIndex?: number };

export const stepRecordAction = (stepIndex: number) => ({ domain: 'logs', action: `record_step:${stepIndex}` }) as const satisfies AuditAction;
export const modelTurnAction = (stepIndex: number, turn: number) => ({ domain: 'logs', action: `model_turn:${stepIndex}.${turn}` }) as const satisfies AuditAction;
export const toolCallAction = (stepIndex: number, turn: number, callIndex: number) =>
  ({ domain: 'tools', action: `tool_call:${stepIndex}.${turn}.${callIndex}` }) as const satisfies AuditAction;

/** Which of the run's items an ack's action names, or null for the contract's fixed actions. */
export function itemActionKind(action: { domain: string; action: string }): 'record_step' | 'model_turn' | 'tool_call' | null {
  const colon = action.action.indexOf(':');
  if (colon < 0) return null;
  const kind = action.action.slice(0, colon);
  if (action.domain === 'logs' && (kind === 'record_step' || kind === 'model_turn')) return kind;
  if (action.domain === 'tools' && kind === 'tool_call') return kind;
  return null;
}
