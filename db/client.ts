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

export function connectDatabase(url: string, options: DatabaseOptions = {}): Database {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    // Documented by postgres.js, missing from its types.
    ...({ socket: closeReportingSockets() } as object),
  });
  const db = drizzle(sql, { schema });
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
}
