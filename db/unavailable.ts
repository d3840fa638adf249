/**
 * When a database error means "Postgres could not be reached or cannot serve now", as opposed to
 * "this query or its data is wrong". The API answers the first 503 and the worker retries it
 * without limit; both ask here.
 */

/** Socket errors, and postgres.js's own codes for a connection it could not make or lost. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
]);

/** SQLSTATEs of a server that cannot serve now; class 08 (connection exception) is checked apart. */
const UNAVAILABLE_SQLSTATES = new Set([
  '53300', // too_many_connections
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
]);

/** True for an error code (a postgres.js, socket or SQLSTATE code) that means the database is unavailable. */
export function isUnavailableCode(code: string): boolean {
  return CONNECTION_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08');
}

/** True when `err`, or an error it wraps (drizzle wraps every query's), says the database is unavailable. */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && isUnavailableCode(code)) return true;
  }
  return false;
}

/** SQLSTATEs of a transaction that lost a race: the same work succeeds when tried again. */
const RETRY_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

/** "Try again later", not "this is wrong": the database is unavailable, or the transaction lost a race. */
export function isTransientError(err: unknown): boolean {
  if (isDatabaseUnavailable(err)) return true;
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && RETRY_SQLSTATES.has(code)) return true;
  }
  return false;
}
