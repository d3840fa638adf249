import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { TestProject } from 'vitest/node';
import { RUN_SEARCH_ATTRIBUTES } from '../../core/search-attributes';
import { devServerTuningArgs, temporalCliPath } from '../../testing/dev-server';
import { buildWorkflowBundle } from '../../worker/build-bundle';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
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

/** One real Temporal dev server and one prebuilt workflow bundle for a project's whole run; each test file starts its own worker on its own task queue. */
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
  const bundleDir = mkdtempSync(path.join(os.tmpdir(), 'governed-bundle-'));
  const workflowBundlePath = await buildWorkflowBundle(path.join(bundleDir, 'workflow-bundle.js'));

  project.provide('temporalAddress', env.address);
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('temporalCliPath', cli);
  project.provide('tctlPath', tctlPath());

  return async () => {
    await env.teardown();
    rmSync(bundleDir, { recursive: true, force: true });
  };
}
