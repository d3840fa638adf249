import { execFileSync } from 'node:child_process';
import path from 'node:path';

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
