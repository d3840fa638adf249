import { execFileSync } from 'node:child_process';
import path from 'node:path';

const { TARGETS, WORKER_NODE_FLAGS: FLAGS } = require('../bin/compiled-cli') as { TARGETS: Record<'worker', { outDir: string; main: string }>; WORKER_NODE_FLAGS: string[] };

/** The worker as `npm start` runs it: compiled by `npm run build:worker`, started with these V8 flags. */
export const COMPILED_WORKER = path.join(__dirname, '..', TARGETS.worker.outDir, TARGETS.worker.main);
export const WORKER_NODE_FLAGS: string[] = FLAGS;

/** Builds the compiled worker when it is missing or older than a source it was compiled from. */
export function buildCompiledWorker(): void {
  execFileSync(process.execPath, [path.join(__dirname, '..', 'scripts', 'build-cli.mjs'), '--worker', '--if-stale'], { stdio: 'inherit' });
}
