import { connectDatabase, type Db } from '../../db/client';
import { loadConfig } from '../../lib/config';

/** One connection to DATABASE_URL for the length of a command. */
export async function withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const database = connectDatabase(loadConfig().DATABASE_URL, { max: 1 });
  try {
    return await fn(database.db);
  } finally {
    await database.close();
  }
}
