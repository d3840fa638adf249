import type { AuditCheck } from './audit-reconciliation';

/** Topics that leave through the outbox. */
export type EventTopic =
  | 'run.completed'
  | 'run.failed'
  | 'incident.created'
  | 'policy.evaluated'
  | 'trace.completed'
  | 'threshold.exceeded'
  | 'run.paused'
  | 'run.resumed'
  | 'pause.expiring'
  | 'signal.rejected'
  | AuditEventTopic;

/** What the reconciler announces, one topic per check of the seed's validation matrix (and phantom). */
export type AuditEventTopic = `audit.reconciliation.${AuditCheck}`;

export function auditEventTopic(check: AuditCheck): AuditEventTopic {
  return `audit.reconciliation.${check}`;
}

export interface OutboundEvent {
  topic: EventTopic;
  /** Unique per event; a retried write of the same event is a no-op. */
  dedupeKey: string;
  payload: Record<string, unknown>;
}

/** The events the governance saga commits with its last step, announcing the run's outcome. */
export const SAGA_EVENT_TOPICS = ['run.completed', 'run.failed', 'policy.evaluated', 'trace.completed', 'incident.created'] as const;
export type SagaEventTopic = (typeof SAGA_EVENT_TOPICS)[number];

export function sagaEventKey(runId: string, topic: SagaEventTopic): string {
  return `${runId}:${topic}`;
}
