import { desc, sql, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import { z } from 'zod';
import { HttpError } from './errors';

const uuid = z.uuid();

/**
 * Keyset paging, newest first, over a (timestamp, id) pair. The cursor carries the last row's
 * timestamp to the microsecond, as Postgres stores it: a JavaScript Date keeps milliseconds, and
 * rows stamped within the same millisecond as a page's last row would be skipped.
 */
export function cursorTime(at: PgColumn): SQL<string> {
  return sql<string>`to_char(${at} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

export function newestFirst(at: PgColumn, id: PgColumn): SQL[] {
  return [desc(at), desc(id)];
}

/** Rows after the cursor's row in `newestFirst` order (a row comparison the (at, id) index serves). */
export function olderThanCursor(at: PgColumn, id: PgColumn, cursor: string): SQL {
  const after = decodeCursor(cursor);
  return sql`(${at}, ${id}) < (${after.at}::timestamptz, ${after.id}::uuid)`;
}

/** One page of rows fetched with `limit + 1` and their `cursorAt`, and the next page's cursor. */
export function pageOf<T extends { cursorAt: string }>(
  rows: T[],
  limit: number,
  idOf: (row: T) => string,
): { page: Omit<T, 'cursorAt'>[]; nextCursor: string | null } {
  const kept = rows.slice(0, limit);
  const last = kept.at(-1);
  return {
    page: kept.map(({ cursorAt: _c, ...row }) => row),
    nextCursor: rows.length > limit && last ? encodeCursor(last.cursorAt, idOf(last)) : null,
  };
}

const EXACT_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function encodeCursor(at: string, id: string): string {
  return Buffer.from(`${at}|${id}`).toString('base64url');
}

/** Anything but a cursor this API wrote is a 400, never a database error. */
function decodeCursor(cursor: string): { at: string; id: string } {
  const [at = '', id = '', ...rest] = Buffer.from(cursor, 'base64url').toString().split('|');
  // A real instant, as this API writes them: not 2026-02-30 (which JavaScript would roll over), not year 1.
  const instant = EXACT_TIME.test(at) ? new Date(at) : null;
  const real = instant !== null && !Number.isNaN(instant.getTime()) && instant.toISOString().slice(0, 23) === at.slice(0, 23) && instant.getUTCFullYear() >= 1970;
  if (rest.length > 0 || !real || !uuid.safeParse(id).success) throw new HttpError(400, 'invalid cursor');
  return { at, id };
}
