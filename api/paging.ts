import { z } from 'zod';
import { HttpError } from './errors';

const uuid = z.uuid();

/** A run id from a path parameter, or 400. */
export function parseRunId(value: unknown): string {
  const parsed = uuid.safeParse(value);
  if (!parsed.success) throw new HttpError(400, 'run id must be a UUID');
  return parsed.data;
}

/** Opaque page cursor over rows ordered by (time, id) descending: the last row's pair. */
export function encodeCursor(at: Date, id: string): string {
  return Buffer.from(`${at.toISOString()}|${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { at: Date; id: string } {
  const [iso, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const at = new Date(iso ?? '');
  if (!id || Number.isNaN(at.getTime()) || !uuid.safeParse(id).success) throw new HttpError(400, 'invalid cursor');
  return { at, id };
}
