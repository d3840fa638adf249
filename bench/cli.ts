/**
 * `npm run bench -- cli`: how long a `governed` command takes to start, from spawning the binary to
 * its exit, run by tsx (GOVERNED_CLI_TSX=1: what every command cost before the compiled build) and
 * compiled (dist/governed/, built first when it is missing or older than its sources). Commands
 * that answer without the API: `--version` and `runs list --help`. Runs alternate between the two
 * so that load on the machine falls on both alike.
 *
 *   npm run bench -- cli [--runs 20]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.join(__dirname, '..');
const BIN = path.join(root, 'bin', 'governed.js');
const COMMANDS = [['--version'], ['runs', 'list', '--help']];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One start: wall time of the whole process, ms. */
function once(args: string[], tsx: boolean): number {
  const env = { ...process.env, GOVERNED_CLI_TSX: tsx ? '1' : '' };
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`governed ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return ms;
}

const { compiledCli } = require('../bin/compiled-cli') as { compiledCli: (root: string) => { fresh: boolean; reason?: string } };
let rebuilds = 0;

/** Builds when a source changed since the last build (an edit while the bench runs, too), so every compiled sample is one. */
function ensureBuilt(): void {
  if (compiledCli(root).fresh) return;
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build-cli.mjs'), '--if-stale'], { stdio: 'inherit' });
  const state = compiledCli(root);
  if (!state.fresh) throw new Error(`the compiled CLI is not used: ${state.reason}`);
  rebuilds++;
}

/** A compiled start; measured again when a source changed under it (it then ran under tsx). */
function compiledOnce(args: string[]): number {
  for (;;) {
    ensureBuilt();
    const ms = once(args, false);
    if (compiledCli(root).fresh) return ms;
  }
}

export async function benchCli(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { runs: { type: 'string', default: '20' } } });
  const runs = Number(values.runs);
  ensureBuilt();

  console.log(`governed start time, ${runs} runs each, node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`);
  console.log(['command', 'tsx p50', 'tsx p95', 'compiled p50', 'compiled p95', 'compiled/tsx (p50)'].join(' | '));
  for (const args of COMMANDS) {
    once(args, true);
    compiledOnce(args);
    const tsx: number[] = [];
    const compiled: number[] = [];
    for (let i = 0; i < runs; i++) {
      tsx.push(once(args, true));
      compiled.push(compiledOnce(args));
    }
    tsx.sort((a, b) => a - b);
    compiled.sort((a, b) => a - b);
    const [t50, c50] = [percentile(tsx, 50), percentile(compiled, 50)];
    console.log(
      [`governed ${args.join(' ')}`, `${t50.toFixed(0)} ms`, `${percentile(tsx, 95).toFixed(0)} ms`, `${c50.toFixed(0)} ms`, `${percentile(compiled, 95).toFixed(0)} ms`, `${(c50 / t50).toFixed(2)}×`].join(' | '),
    );
  }
  if (rebuilds > 0) console.log(`(sources changed during the bench: the CLI was rebuilt ${rebuilds} time(s), outside the timings)`);
}
