#!/usr/bin/env node
'use strict';
// The `governed` CLI without a build step: Node with tsx's loader runs cli/main.ts. The repository
// is found from this file's own path (Node resolves the symlink npm puts in node_modules/.bin),
// never from the working directory, which stays the caller's for relative paths like --file.
const { spawn } = require('node:child_process');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const root = path.join(__dirname, '..');
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
