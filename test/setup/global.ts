import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { RUN_SEARCH_ATTRIBUTES } from '../../core/search-attributes';
import { runMigrations } from '../../db/migrate';
import { devServerTuningArgs, temporalCliPath } from '../../lib/dev-server';
import { buildWorkflowBundle } from '../../worker/build-bundle';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    databaseUrl: string;
    redisUrl: string;
    workflowBundlePath: string;
    temporalCliPath: string;
    /** Empty when tctl could not be installed on this machine. */
    tctlPath: string;
  }
}

const root = path.join(__dirname, '..', '..');

function tctlPath(): string {
  try {
    return execFileSync('bash', [path.join(root, 'temporal-dev.sh'), 'tctl-path'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/**
 * One real Temporal dev server (in-memory store), one fresh Postgres database and one prebuilt
 * workflow bundle for the whole run; each test file starts its own worker on its own task queue.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cli = temporalCliPath();
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: cli },
      ip: '127.0.0.1',
      searchAttributes: [...RUN_SEARCH_ATTRIBUTES],
      log: { format: 'pretty', level: 'error' },
      extraArgs: devServerTuningArgs(),
    },
  });

  const baseUrl = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `governed_test_${Date.now()}_${process.pid}`;
  const url = new URL(baseUrl);
  url.pathname = `/${dbName}`;
  const databaseUrl = url.toString();
  await runMigrations(databaseUrl);

  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'governed-bundle-'));
  const workflowBundlePath = await buildWorkflowBundle(path.join(bundleDir, 'workflow-bundle.js'));

  project.provide('temporalAddress', env.address);
  project.provide('databaseUrl', databaseUrl);
  project.provide('redisUrl', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('temporalCliPath', cli);
  project.provide('tctlPath', tctlPath());

  return async () => {
    await env.teardown();
    rmSync(bundleDir, { recursive: true, force: true });
    if (process.env.KEEP_TEST_DATABASE) return;
    const admin = new URL(baseUrl);
    admin.pathname = '/postgres';
    const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
    await sql.unsafe(`drop database if exists "${dbName}" with (force)`);
    await sql.end();
  };
}
