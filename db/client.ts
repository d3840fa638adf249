import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { closeReportingSockets } from './connect-socket';
import * as schema from './schema';

export type Db = PostgresJsDatabase<typeof schema>;
/** What a transaction callback receives; domain writes take either. */
export type DbOrTx = Db | Parameters<Parameters<Db['transaction']>[0]>[0];

export interface Database {
  db: Db;
  sql: postgres.Sql;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  max?: number;
  /**
   * Seconds to wait for a connection before the query fails (postgres.js's CONNECT_TIMEOUT).
   * The worker's activities can wait the default out and retry; the API answers a person and
   * sets it short so an outage is a prompt 503, not a hung request.
   */
  connectTimeoutSeconds?: number;
}

/**
 * The wait before a new connection after one failed. postgres.js's default grows with every failure
 * the pool has seen (3^n / 100 s, up to 20 s) and queries queue behind it: in an outage with a few
 * callers a single query waited 13 s and more to fail, and after the outage one waited as long to
 * succeed. Capped at a second, an activity's attempt fails or succeeds promptly and its own retry
 * policy does the waiting; a connection attempt per second per pool is no load for a server.
 */
const MAX_RECONNECT_DELAY_SECONDS = 1;

function reconnectDelaySeconds(failures: number): number {
  return (0.5 + Math.random() / 2) * Math.min(3 ** failures / 100, MAX_RECONNECT_DELAY_SECONDS);
}

export function connectDatabase(url: string, options: DatabaseOptions = {}): Database {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    backoff: reconnectDelaySeconds,
    // postgres.js asks every new connection for the database's array types, and when that
    // connection dies mid-question the rejection is never handled: an unhandled rejection, which
    // ends a Node process. No column here is a Postgres array; pass lists as separate parameters.
    fetch_types: false,
    // Documented by postgres.js, missing from its types.
    ...({ socket: closeReportingSockets() } as object),
  });
  const db = drizzle(sql, { schema });
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
}
