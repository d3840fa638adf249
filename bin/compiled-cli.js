'use strict';
// Whether the compiled CLI (dist/governed/, `npm run build:cli`) may run in place of cli/main.ts
// under tsx: it was built (its stamp, dist/governed/.built, carries the time the build started) and
// no source it was compiled from, nor either tsconfig, changed since. Every compiled file
// dist/governed/<path>.js stands for <path>.ts of the repository, so a new module is noticed
// through the file that imports it. Plain CommonJS: bin/governed.js reads it on every start.
const fs = require('node:fs');
const path = require('node:path');

const OUT_DIR = path.join('dist', 'governed');
const STAMP = '.built';

function mtimeOf(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** { fresh: true, main } or { fresh: false, reason }. */
function compiledCli(root) {
  const out = path.join(root, OUT_DIR);
  const built = mtimeOf(path.join(out, STAMP));
  const main = path.join(out, 'cli', 'main.js');
  if (built === undefined || mtimeOf(main) === undefined) return { fresh: false, reason: 'not built' };
  for (const config of ['tsconfig.json', 'tsconfig.cli.json']) {
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

module.exports = { compiledCli, OUT_DIR, STAMP };
