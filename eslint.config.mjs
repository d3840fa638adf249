// @ts-check
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

/** Packages that do I/O or hold process state; none of them may enter workflow code. */
const IO_PACKAGES = ['postgres', 'drizzle-orm', 'drizzle-kit', 'ioredis', 'express', 'prom-client', 'pino', 'zod', 'commander', '@temporalio/client', '@temporalio/worker', '@temporalio/activity', '@temporalio/testing'];

const bannedInWorkflows = [
  ...builtinModules.flatMap((m) => [m, `node:${m}`]),
  ...IO_PACKAGES,
].map((name) => ({ name, message: 'workflow code must be deterministic and do no I/O: call an activity instead' }));

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'db/migrations/**', '.temporal/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // One owner per table: only db/ reads and writes a run's record (db/runs.ts).
    files: ['activities/**/*.ts', 'api/**/*.ts', 'compose/**/*.ts', 'dispatch/**/*.ts', 'events/**/*.ts', 'worker/**/*.ts', 'auditor/**/*.ts', 'lib/**/*.ts', 'cli/**/*.ts', 'workflows/**/*.ts', 'core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/db/schema'], importNames: ['runs'], message: 'the runs row belongs to db/runs.ts: call a function there' },
            { group: ['**/testing/**'], message: 'testing/ is tooling for tests, drills and benches; the product does not run it' },
          ],
        },
      ],
    },
  },
  {
    // Workflows, and the pure rules they import, stay deterministic.
    files: ['workflows/**/*.ts', 'core/**/*.ts'],
    ignores: ['core/plan.ts', 'core/policy.ts', 'core/alerts.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: bannedInWorkflows.map((p) => ({ ...p, allowTypeImports: true })),
          patterns: [
            { group: ['**/activities', '**/activities/**', '**/db/**', '**/api/**', '**/lib/**', '**/worker/**'], allowTypeImports: true, message: 'workflows import only types from I/O modules' },
          ],
        },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'use workflow time (the SDK replaces Date inside workflows; be explicit with sleep/condition)' },
        { object: 'Math', property: 'random', message: 'use the SDK\'s uuid4() or a deterministic value' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'use sleep() from @temporalio/workflow' },
        { name: 'setInterval', message: 'use sleep() in a loop' },
        { name: 'fetch', message: 'call an activity' },
        { name: 'process', message: 'workflows do not read the environment' },
      ],
    },
  },
);
