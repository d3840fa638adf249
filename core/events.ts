import { AUDIT_CHECKS, type AuditCheck } from './audit-reconciliation';

/**
 * The event contract: every topic that leaves through the outbox to the Redis Stream, and the
 * shape of a stream message. Producers (activities, the reconciler, the API) and the reactor both
 * read it from here.
 */
export const EVENT_TOPICS = [
  'run.started',
  'run.completed',
  'run.failed',
  'trace.started',
  'trace.completed',
  'incident.created',
  'incident.acknowledged',
  'incident.resolved',
  'policy.evaluated',
  'threshold.exceeded',
  'run.paused',
  'run.resumed',
  'pause.expiring',
  'signal.rejected',
  'lesson.recorded',
  'policy.proposed',
  ...AUDIT_CHECKS.map((check) => `audit.reconciliation.${check}` as const),
] as const;
export type EventTopic = (typeof EVENT_TOPICS)[number];

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
export const SAGA_EVENT_TOPICS = ['run.completed', 'run.failed', 'policy.evaluated', 'trace.completed', 'incident.created', 'lesson.recorded'] as const;
export type SagaEventTopic = (typeof SAGA_EVENT_TOPICS)[number];

export function sagaEventKey(runId: string, topic: SagaEventTopic): string {
  return `${runId}:${topic}`;
}

/** One event as it travels on the stream. `id` is its outbox id: a consumer drops a second copy by it. */
export interface StreamEvent {
  id: number;
  topic: EventTopic;
  runId: string | null;
  tenantId: string | null;
  dedupeKey: string;
  /** When the change it announces committed (the outbox row's creation). */
  createdAt: string;
  payload: Record<string, unknown>;
}

/** XADD's field/value list. */
export function encodeStreamEvent(event: StreamEvent): string[] {
  return [
    'id', String(event.id),
    'topic', event.topic,
    'runId', event.runId ?? '',
    'tenantId', event.tenantId ?? '',
    'dedupeKey', event.dedupeKey,
    'createdAt', event.createdAt,
    'payload', JSON.stringify(event.payload),
  ];
}

export class MalformedStreamEvent extends Error {
  override readonly name = 'MalformedStreamEvent';
}

/** The inverse of `encodeStreamEvent`; anything else on the stream is malformed, never guessed at. */
export function decodeStreamEvent(fields: readonly string[]): StreamEvent {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  const id = Number(map.get('id'));
  const topic = map.get('topic') as EventTopic | undefined;
  if (!Number.isSafeInteger(id) || id <= 0) throw new MalformedStreamEvent(`event has no valid id: ${map.get('id')}`);
  if (!topic || !(EVENT_TOPICS as readonly string[]).includes(topic)) throw new MalformedStreamEvent(`event ${id} has an unknown topic: ${topic}`);
  let payload: unknown;
  try {
    payload = JSON.parse(map.get('payload') ?? '');
  } catch {
    throw new MalformedStreamEvent(`event ${id} has a payload that is not JSON`);
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new MalformedStreamEvent(`event ${id} has a payload that is not an object`);
  return {
    id,
    topic,
    runId: map.get('runId') || null,
    tenantId: map.get('tenantId') || null,
    dedupeKey: map.get('dedupeKey') ?? '',
    createdAt: map.get('createdAt') ?? '',
    payload: payload as Record<string, unknown>,
  };
}
