// Compiles the `governed` CLI to plain JS in dist/governed/ (tsconfig.cli.json), or with --worker the
// worker in dist/worker/ (tsconfig.worker.json), and stamps the build with the time it started, so
// bin/governed.js (the CLI) and `npm run worker`/`npm start` (the worker) run it, not the TypeScript
// under tsx, until a source changes. Type-checking is not its job (`npm run typecheck`, `npm test`
// do that): tsc runs with --noCheck, which only transpiles, as tsx would.
//
//   node scripts/build-cli.mjs [--worker]              build
//   node scripts/build-cli.mjs [--worker] --if-stale   build only when the last build would not run
//   node scripts/build-cli.mjs [--worker] --soft       a failed build is a warning, exit 0 (npm's
//                                                      prepare: an install must not fail over it;
//                                                      the TypeScript runs under tsx)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const { compiledBuild, TARGETS, STAMP } = require('../bin/compiled-cli.js');
const name = process.argv.includes('--worker') ? 'worker' : 'cli';
const target = TARGETS[name];
const what = name === 'cli' ? 'the CLI' : 'the worker';
const source = name === 'cli' ? 'bin/governed.js runs cli/main.ts' : 'the worker runs worker/main.ts';

if (process.argv.includes('--if-stale')) {
  const state = compiledBuild(root, name);
  if (state.fresh) process.exit(0);
  console.error(`build-cli: building ${what} (${state.reason})`);
}

const soft = process.argv.includes('--soft');
function fail(message) {
  console.error(`build-cli: ${message}; ${source} with tsx meanwhile`);
  process.exit(soft ? 0 : 1);
}

let tscBin;
try {
  tscBin = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  fail('typescript is not installed (devDependencies)');
}

const started = new Date();
const stamp = path.join(root, target.outDir, STAMP);
fs.rmSync(stamp, { force: true });
const tsc = spawnSync(process.execPath, [tscBin, '-p', path.join(root, target.tsconfig), '--noCheck'], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status !== 0) fail(`tsc failed (${tsc.status ?? tsc.signal})`);
fs.writeFileSync(stamp, `built from the sources as they were at ${started.toISOString()}\n`);
fs.utimesSync(stamp, started, started);
