import { DefaultPayloadConverter, type Payload, type PayloadConverter } from '@temporalio/common';

/**
 * What a payload that cannot be decoded becomes: a value the run's handlers recognise and refuse
 * (a recorded refusal), instead of an exception that fails every workflow task of the run for
 * ever. Signals come from any client (`temporal workflow signal --input-meta encoding=…` included),
 * and workflow code cannot turn one away before it is decoded.
 */
export interface UndecodablePayload {
  undecodablePayload: { encoding: string; bytes: number; reason: string };
}

export function isUndecodable(value: unknown): value is UndecodablePayload {
  return value !== null && typeof value === 'object' && 'undecodablePayload' in value;
}

function encodingOf(payload: Payload): string {
  const raw = payload.metadata?.encoding;
  if (!raw) return 'none';
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw).slice(0, 100);
  } catch {
    return `${raw.length} undecodable bytes`;
  }
}

/** The SDK's JSON (and binary) conversion, except that a payload it cannot read becomes an `UndecodablePayload`. */
class TolerantPayloadConverter implements PayloadConverter {
  private readonly inner = new DefaultPayloadConverter();

  toPayload<T>(value: T): Payload {
    return this.inner.toPayload(value);
  }

  fromPayload<T>(payload: Payload): T {
    try {
      return this.inner.fromPayload<T>(payload);
    } catch (err) {
      const undecodable: UndecodablePayload = {
        undecodablePayload: { encoding: encodingOf(payload), bytes: payload.data?.length ?? 0, reason: err instanceof Error ? err.message.slice(0, 200) : 'cannot be decoded' },
      };
      return undecodable as T;
    }
  }
}

export const payloadConverter = new TolerantPayloadConverter();
