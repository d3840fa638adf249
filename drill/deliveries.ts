import type Redis from 'ioredis';

/** The handler a drill adds to the reactor, by name, so the checks can find its handled keys. */
export const DRILL_RECORDER = 'drill-recorder';

/** Where event processes of the drill's own log each delivery to the drill's handler: `<event id> <consumer>`. */
export function deliveryLogKey(stream: string): string {
  return `${stream}:drill:deliveries`;
}

/** Each event's deliveries to the drill's handler, by outbox id: the consumers that handled it, in order. */
export type Deliveries = Map<number, string[]>;

export async function readDeliveryLog(redis: Redis, stream: string): Promise<Deliveries> {
  const deliveries: Deliveries = new Map();
  for (const line of await redis.lrange(deliveryLogKey(stream), 0, -1)) {
    const [id, consumer = ''] = line.split(' ');
    const eventId = Number(id);
    deliveries.set(eventId, [...(deliveries.get(eventId) ?? []), consumer]);
  }
  return deliveries;
}
