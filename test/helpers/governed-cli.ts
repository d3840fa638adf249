import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../lib/listen';

const root = path.join(__dirname, '..', '..');
/** The shim `bin` points at: what `npx governed` runs. */
export const GOVERNED_BIN = path.join(root, 'bin', 'governed.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Where the binary looks for its profile file unless a test says otherwise: an empty folder, so a
 * key in the tester's own ~/.config/governed never answers for a test that sets none.
 */
const NO_PROFILE = { XDG_CONFIG_HOME: mkdtempSync(path.join(os.tmpdir(), 'governed-cli-config-')) };

/** Runs the real `governed` binary as a user would, and answers whatever it exits with. */
export function governed(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [GOVERNED_BIN, ...args], { env: { ...process.env, ...NO_PROFILE, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `script` (util-linux) when installed: it runs a command on a pseudo-terminal of its own. */
export function scriptCommand(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v script'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/**
 * Runs `governed` on a pseudo-terminal and answers everything the terminal was sent (escape codes
 * included), as `script -qfec "<cmd>" /dev/null` records it.
 */
export function governedOnTerminal(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  const command = [process.execPath, GOVERNED_BIN, ...args].map(shellQuote).join(' ');
  return new Promise((resolve) => {
    execFile(scriptCommand()!, ['-qfec', command, '/dev/null'], { env: { ...process.env, ...NO_PROFILE, ...env }, timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A loopback URL nothing listens on. */
export async function deadApiUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}
