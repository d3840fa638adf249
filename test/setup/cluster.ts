import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { temporalCliPath } from '../../testing/dev-server';
import { buildWorkflowBundle } from '../../worker/build-bundle';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Empty when the cluster could not be had on this machine (only ever outside CI). */
    clusterAddress: string;
    /** Why there is no cluster, when there is none. */
    clusterMissing: string;
    /** How long `./temporal-cluster.sh start` took, from empty databases. */
    clusterStartSeconds: number;
    /** The environment `./temporal-cluster.sh` needs to reach this run's cluster (kill, start). */
    clusterEnv: Record<string, string>;
  }
}

const root = path.join(__dirname, '..', '..');
const script = path.join(root, 'temporal-cluster.sh');
const run = promisify(execFile);

function hasGo(): boolean {
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The `cluster` project's Temporal: the multi-process cluster of `./temporal-cluster.sh` (frontend,
 * matching, worker and two history services over Postgres), on a port block and databases of this
 * run's own, set up from empty and dropped after. It also provides what `test/setup/temporal.ts`
 * provides the other projects (the address, a prebuilt bundle, the CLIs), so that the product's
 * own test helpers run against the cluster unchanged. Under CI a cluster that does not come up
 * fails the run; elsewhere only a machine without Go (and without the server installed) skips it.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'governed-cluster-'));
  const clusterEnv: Record<string, string> = {
    // A block of its own per run (20000-24999, below the ephemeral range), so that a cluster left
    // by a run that was killed does not hold the next run's ports.
    TEMPORAL_CLUSTER_PORT: process.env.TEST_TEMPORAL_CLUSTER_PORT ?? String(20_000 + (process.pid % 100) * 50),
    TEMPORAL_CLUSTER_DB: `temporal_cluster_test_${process.pid}`,
    TEMPORAL_CLUSTER_DIR: path.join(workDir, 'cluster'),
  };
  const env = { ...process.env, ...clusterEnv };
  const installed = existsSync(path.join(process.env.GOVERNED_RUNS_CACHE ?? path.join(os.homedir(), '.cache', 'governed-runs'), 'temporal-server-1.29.1', 'server'));
  const cli = temporalCliPath();
  project.provide('temporalCliPath', cli);
  project.provide('tctlPath', '');
  project.provide('clusterEnv', clusterEnv);
  const destroy = async () => {
    await run('bash', [script, 'destroy'], { env }).catch(() => {});
    rmSync(workDir, { recursive: true, force: true });
  };

  if (!process.env.CI && !installed && !hasGo()) {
    const why = 'no Go to install the Temporal server (./temporal-cluster.sh install), and not under CI';
    project.provide('clusterAddress', '');
    project.provide('clusterMissing', why);
    project.provide('clusterStartSeconds', 0);
    project.provide('temporalAddress', '');
    project.provide('workflowBundlePath', '');
    return async () => rmSync(workDir, { recursive: true, force: true });
  }

  const startedAt = Date.now();
  try {
    await run('bash', [script, 'start'], { env, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    await destroy();
    throw new Error(`the Temporal cluster did not start (./temporal-cluster.sh start):\n${stderr || String(err)}`);
  }
  const clusterStartSeconds = (Date.now() - startedAt) / 1000;
  const address = (await run('bash', [script, 'address'], { env })).stdout.trim();
  try {
    const tctl = execFileSync('bash', [path.join(root, 'temporal-dev.sh'), 'tctl-path'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    project.provide('tctlPath', tctl.trim());
  } catch {
    // The temporal CLI does all that tctl does; pause.test.ts says when CI needs tctl.
  }
  const workflowBundlePath = await buildWorkflowBundle(path.join(workDir, 'workflow-bundle.js'));
  project.provide('clusterAddress', address);
  project.provide('clusterMissing', '');
  project.provide('clusterStartSeconds', clusterStartSeconds);
  project.provide('temporalAddress', address);
  project.provide('workflowBundlePath', workflowBundlePath);

  return destroy;
}
