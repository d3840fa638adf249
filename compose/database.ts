import { connectDatabase, type Database } from '../db/client';
import type { Config } from '../lib/config';

/**
 * Each process's Postgres pool. The API gives up on a connection sooner than the others: a client
 * would rather have its 503 and retry. The relay and the reactor need few connections.
 */
export function databaseOf(config: Pick<Config, 'DATABASE_URL' | 'DATABASE_POOL_MAX' | 'API_DATABASE_CONNECT_TIMEOUT_SECONDS'>, process: 'api' | 'worker' | 'auditor' | 'events'): Database {
  if (process === 'api') return connectDatabase(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, connectTimeoutSeconds: config.API_DATABASE_CONNECT_TIMEOUT_SECONDS });
  if (process === 'events') return connectDatabase(config.DATABASE_URL, { max: 4 });
  return connectDatabase(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX });
}
