import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Connection } from '@temporalio/client';

const SCRIPT = path.join(__dirname, '..', 'temporal-dev.sh');

function devScript(command: string): string {
  return execFileSync('bash', [SCRIPT, command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** The Temporal CLI that temporal-dev.sh finds or installs. */
export function temporalCliPath(): string {
  return process.env.TEMPORAL_CLI || devScript('cli-path');
}

/** The dev server's queue-throttle arguments; temporal-dev.sh owns them and says why. */
export function devServerTuningArgs(): string[] {
  return devScript('tuning-args').split('\n').filter(Boolean);
}

/**
 * Whether a dev server at `address` is ready for a worker: its frontend answers and its `default`
 * namespace, which start-dev registers after the frontend is up, is there.
 */
export async function devServerHealthy(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1000 });
    await connection.workflowService.getSystemInfo({});
    await connection.workflowService.describeNamespace({ namespace: 'default' });
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => {});
  }
}
