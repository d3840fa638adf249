#!/usr/bin/env node
'use strict';
// The `governed` CLI. Compiled (dist/governed/, `npm run build:cli`, run by `npm ci`'s prepare and by
// `npm start`) it runs in this process, in a fraction of the time tsx takes to start; when there is
// no build, or a source changed since it (bin/compiled-cli.js), Node with tsx's loader runs
// cli/main.ts instead, so a fresh clone works before any build. GOVERNED_CLI_TSX=1 forces tsx.
// The repository is found from this file's own path (Node resolves the symlink npm puts in
// node_modules/.bin), never from the working directory, which stays the caller's for relative
// paths like --file.
const path = require('node:path');
const { compiledCli } = require('./compiled-cli');

const root = path.join(__dirname, '..');
const compiled = process.env.GOVERNED_CLI_TSX === '1' ? { fresh: false } : compiledCli(root);
if (compiled.fresh) {
  // It reads process.argv as it is: [node, this file, ...arguments].
  require(compiled.main);
} else {
  runWithTsx();
}

function runWithTsx() {
  const { spawn } = require('node:child_process');
  const { pathToFileURL } = require('node:url');
  // --import resolves a bare 'tsx' from the working directory; the repository's own copy is meant.
  const tsx = pathToFileURL(require.resolve('tsx', { paths: [root] })).href;
  const child = spawn(process.execPath, ['--import', tsx, path.join(root, 'cli', 'main.ts'), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });

  // A terminal's Ctrl-C reaches both processes; a signal sent to this one alone is passed on.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => child.kill(signal));
  }
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}
