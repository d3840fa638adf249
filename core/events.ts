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
  | 'signal.rejected';

export interface OutboundEvent {
  topic: EventTopic;
  /** Unique per event; a retried write of the same event is a no-op. */
  dedupeKey: string;
  payload: Record<string, unknown>;
}
