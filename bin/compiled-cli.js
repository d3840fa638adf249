'use strict';
// Whether a compiled program may run in place of its TypeScript under tsx: the `governed` CLI
// (dist/governed/, `npm run build:cli`, in place of cli/main.ts) or the worker (dist/worker/,
// `npm run build:worker`, in place of worker/main.ts). It was built (its stamp, <outDir>/.built,
// carries the time the build started) and no source it was compiled from, nor either tsconfig,
// changed since. Every compiled file <outDir>/<path>.js stands for <path>.ts of the repository, so
// a new module is noticed through the file that imports it. Plain CommonJS: bin/governed.js reads
// it on every start.
const fs = require('node:fs');
const path = require('node:path');

const TARGETS = {
  cli: { outDir: path.join('dist', 'governed'), tsconfig: 'tsconfig.cli.json', main: path.join('cli', 'main.js') },
  worker: { outDir: path.join('dist', 'worker'), tsconfig: 'tsconfig.worker.json', main: path.join('worker', 'main.js') },
};
const OUT_DIR = TARGETS.cli.outDir;
/**
 * V8's flags for the worker, compiled or not. Each of its isolates (the main thread's and one per
 * workflow thread) grows its young generation up to 2 x 16 MiB by default and keeps it: 1 MiB
 * semi-spaces bound that. What small semi-spaces promote, V8 lets pile up in the old space as
 * garbage while the heap's limit is far (a quiet machine running 500 submissions in 17 s: 371-400 MB
 * held with them paused); `--optimize-for-size` makes it collect and shrink sooner (248 MB).
 * README, Benchmarks: pushes.
 */
const WORKER_NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size'];
const STAMP = '.built';

function mtimeOf(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** { fresh: true, main } or { fresh: false, reason }, for the target named ('cli' or 'worker'). */
function compiledBuild(root, name) {
  const target = TARGETS[name];
  const out = path.join(root, target.outDir);
  const built = mtimeOf(path.join(out, STAMP));
  const main = path.join(out, target.main);
  if (built === undefined || mtimeOf(main) === undefined) return { fresh: false, reason: 'not built' };
  for (const config of ['tsconfig.json', target.tsconfig]) {
    if ((mtimeOf(path.join(root, config)) ?? 0) > built) return { fresh: false, reason: `${config} changed since the build` };
  }
  const dirs = [out];
  while (dirs.length > 0) {
    const dir = dirs.pop();
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) dirs.push(file);
      else if (entry.name.endsWith('.js')) {
        const source = path.join(root, path.relative(out, file)).replace(/\.js$/, '.ts');
        if ((mtimeOf(source) ?? 0) > built) return { fresh: false, reason: `${path.relative(root, source)} changed since the build` };
      }
    }
  }
  return { fresh: true, main };
}

const compiledCli = (root) => compiledBuild(root, 'cli');

module.exports = { compiledBuild, compiledCli, TARGETS, OUT_DIR, STAMP, WORKER_NODE_FLAGS };

// `node bin/compiled-cli.js worker`: node's arguments that run the worker from the repository's
// root, its build when that is fresh, its TypeScript under tsx otherwise, with its V8 flags
// (`npm run worker`, scripts/up.sh). Relative, so a shell may split them on spaces.
if (require.main === module) {
  const name = process.argv[2];
  if (name !== 'worker') {
    console.error('usage: node bin/compiled-cli.js worker');
    process.exit(2);
  }
  const state = compiledBuild(path.join(__dirname, '..'), name);
  const main = TARGETS.worker.main;
  const entry = state.fresh ? [path.join(TARGETS.worker.outDir, main)] : ['--import', 'tsx', main.replace(/\.js$/, '.ts')];
  process.stdout.write([...WORKER_NODE_FLAGS, ...entry].join(' '));
}
