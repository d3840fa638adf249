import { defineConfig } from 'vitest/config';
import { isDriverWriteAfterClose } from './db/driver-races';

/**
 * Four projects, by what a test needs running: `unit` (pure rules: nothing), `workflow` (the run
 * workflow against in-memory activities, and the replay corpus: a Temporal dev server and the
 * bundle), `e2e` (the whole product: Temporal, Postgres, Redis, real MCP servers), `cluster` (a
 * slice of it on a multi-process Temporal cluster, `./temporal-cluster.sh`, instead of the dev
 * server). `npm test` runs all four; `npm test -- --project unit` answers in seconds without
 * Temporal or Postgres.
 */
export default defineConfig({
  test: {
    // The Temporal SDK's native runtime must not share a process between test files.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    reporters: ['default'],
    // The one uncaught exception the product's processes survive by design (db/driver-races.ts):
    // tests that cut Postgres under a pool may meet it; any other unhandled error fails the run.
    onUnhandledError: (error) => !isDriverWriteAfterClose(error),
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: { name: 'workflow', include: ['test/workflow/**/*.test.ts', 'test/replay.test.ts'], globalSetup: ['test/setup/temporal.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          exclude: ['test/unit/**', 'test/workflow/**', 'test/replay.test.ts', 'test/cluster/**'],
          globalSetup: ['test/setup/temporal.ts', 'test/setup/database.ts'],
        },
      },
      {
        extends: true,
        test: { name: 'cluster', include: ['test/cluster/**/*.test.ts'], globalSetup: ['test/setup/cluster.ts', 'test/setup/database.ts'] },
      },
    ],
  },
});
