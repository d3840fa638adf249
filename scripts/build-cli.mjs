// Compiles the `governed` CLI to plain JS in dist/governed/ (tsconfig.cli.json) and stamps the build
// with the time it started, so bin/governed.js runs it, not cli/main.ts under tsx, until a source
// changes. Type-checking is not its job (`npm run typecheck`, `npm test` do that): tsc runs with
// --noCheck, which only transpiles, as tsx would.
//
//   node scripts/build-cli.mjs              build
//   node scripts/build-cli.mjs --if-stale   build only when bin/governed.js would not run the last build
//   node scripts/build-cli.mjs --soft       a failed build is a warning, exit 0 (npm's prepare: an
//                                           install must not fail over it; the CLI runs under tsx)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const { compiledCli, OUT_DIR, STAMP } = require('../bin/compiled-cli.js');

if (process.argv.includes('--if-stale')) {
  const state = compiledCli(root);
  if (state.fresh) process.exit(0);
  console.error(`build-cli: building the CLI (${state.reason})`);
}

const soft = process.argv.includes('--soft');
function fail(message) {
  console.error(`build-cli: ${message}; bin/governed.js runs cli/main.ts with tsx meanwhile`);
  process.exit(soft ? 0 : 1);
}

let tscBin;
try {
  tscBin = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  fail('typescript is not installed (devDependencies)');
}

const started = new Date();
const stamp = path.join(root, OUT_DIR, STAMP);
fs.rmSync(stamp, { force: true });
const tsc = spawnSync(process.execPath, [tscBin, '-p', path.join(root, 'tsconfig.cli.json'), '--noCheck'], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status !== 0) fail(`tsc failed (${tsc.status ?? tsc.signal})`);
fs.writeFileSync(stamp, `built from the sources as they were at ${started.toISOString()}\n`);
fs.utimesSync(stamp, started, started);
