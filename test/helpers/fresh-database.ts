import postgres from 'postgres';
import { inject } from 'vitest';
import { runMigrations } from '../../db/migrate';

/**
 * A migrated database of the test file's own, for tests whose assertions cover every row of a
 * table (a reconciliation pass reads all due runs, not only the test's).
 */
export async function freshDatabase(label: string): Promise<{ url: string; drop(): Promise<void> }> {
  const shared = new URL(inject('databaseUrl'));
  const name = `${shared.pathname.slice(1)}_${label}`.slice(0, 63);
  const url = new URL(shared);
  url.pathname = `/${name}`;
  await runMigrations(url.toString());
  return {
    url: url.toString(),
    async drop() {
      if (process.env.KEEP_TEST_DATABASE) return;
      const admin = new URL(shared);
      admin.pathname = '/postgres';
      const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop database if exists "${name}" with (force)`);
      await sql.end();
    },
  };
}
