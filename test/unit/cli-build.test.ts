import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { staleText, type StaleReport } from '../../cli/reports';

type BuildState = { fresh: boolean; reason?: string; main?: string };
const { compiledCli, compiledBuild } = require('../../bin/compiled-cli') as {
  compiledCli: (root: string) => BuildState;
  compiledBuild: (root: string, target: 'cli' | 'worker') => BuildState;
};

/** A repository with one compiled source and a build stamped at `builtAt` (seconds). */
function repo(builtAt: number, sourceAt: number): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'governed-build-'));
  const write = (file: string, at: number) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), '');
    fs.utimesSync(path.join(root, file), at, at);
  };
  write('cli/main.ts', sourceAt);
  write('core/rules.ts', sourceAt);
  write('tsconfig.json', sourceAt);
  write('tsconfig.cli.json', sourceAt);
  write('dist/governed/cli/main.js', builtAt);
  write('dist/governed/core/rules.js', builtAt);
  write('dist/governed/.built', builtAt);
  return root;
}

describe('bin/governed.js: the compiled CLI or tsx', () => {
  const t = 1_700_000_000;

  it('runs the build when no source it was compiled from is newer than the build', () => {
    const root = repo(t, t - 60);
    expect(compiledCli(root)).toEqual({ fresh: true, main: path.join(root, 'dist/governed/cli/main.js') });
  });

  it('falls back to tsx when a source or a tsconfig changed since, or there is no build', () => {
    const root = repo(t, t - 60);
    fs.utimesSync(path.join(root, 'core/rules.ts'), t + 1, t + 1);
    expect(compiledCli(root)).toEqual({ fresh: false, reason: `${path.join('core', 'rules.ts')} changed since the build` });
    const other = repo(t, t - 60);
    fs.utimesSync(path.join(other, 'tsconfig.cli.json'), t + 1, t + 1);
    expect(compiledCli(other)).toMatchObject({ fresh: false, reason: 'tsconfig.cli.json changed since the build' });
    const unstamped = repo(t, t - 60);
    fs.rmSync(path.join(unstamped, 'dist/governed/.built'));
    expect(compiledCli(unstamped)).toEqual({ fresh: false, reason: 'not built' });
  });
});

describe('the compiled worker (npm run worker, npm start) or tsx', () => {
  const t = 1_700_000_000;
  /** A repository with the worker's build stamped at `builtAt` and its sources at `sourceAt`. */
  function workerRepo(builtAt: number, sourceAt: number): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'governed-build-'));
    const write = (file: string, at: number) => {
      fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      fs.writeFileSync(path.join(root, file), '');
      fs.utimesSync(path.join(root, file), at, at);
    };
    for (const file of ['worker/main.ts', 'activities/index.ts', 'tsconfig.json', 'tsconfig.worker.json']) write(file, sourceAt);
    for (const file of ['dist/worker/worker/main.js', 'dist/worker/activities/index.js', 'dist/worker/.built']) write(file, builtAt);
    return root;
  }

  it('runs dist/worker/ while no source of it changed, and tells the CLI build apart from it', () => {
    const root = workerRepo(t, t - 60);
    expect(compiledBuild(root, 'worker')).toEqual({ fresh: true, main: path.join(root, 'dist/worker/worker/main.js') });
    expect(compiledBuild(root, 'cli')).toEqual({ fresh: false, reason: 'not built' });
    fs.utimesSync(path.join(root, 'activities/index.ts'), t + 1, t + 1);
    expect(compiledBuild(root, 'worker')).toEqual({ fresh: false, reason: `${path.join('activities', 'index.ts')} changed since the build` });
    const other = workerRepo(t, t - 60);
    fs.utimesSync(path.join(other, 'tsconfig.worker.json'), t + 1, t + 1);
    expect(compiledBuild(other, 'worker')).toMatchObject({ fresh: false, reason: 'tsconfig.worker.json changed since the build' });
  });

  it("names node's arguments for npm run worker and scripts/up.sh: the build when fresh, tsx otherwise", () => {
    const script = path.join(__dirname, '..', '..', 'bin', 'compiled-cli.js');
    const argsIn = (root: string) => {
      fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
      fs.copyFileSync(script, path.join(root, 'bin', 'compiled-cli.js'));
      return execFileSync(process.execPath, [path.join(root, 'bin', 'compiled-cli.js'), 'worker'], { encoding: 'utf8' });
    };
    expect(argsIn(workerRepo(t, t - 60))).toBe(`--max-semi-space-size=1 --optimize-for-size ${path.join('dist', 'worker', 'worker', 'main.js')}`);
    expect(argsIn(workerRepo(t, t + 60))).toBe(`--max-semi-space-size=1 --optimize-for-size --import tsx ${path.join('worker', 'main.ts')}`);
  });
});

describe('reports stale: one answer for no stale runs', () => {
  const report = (runs: StaleReport['runs']): StaleReport => ({ id: 'r1', generatedAt: '2026-11-24T11:00:00Z', staleCount: runs.length, runs });

  it("says 'no stale runs' whether no report was written yet or the reports name none of yours", () => {
    expect(staleText([])).toMatch(/^no stale runs/);
    expect(staleText([report([])])).toMatch(/^no stale runs/);
    expect(staleText([report([]), report([])])).toMatch(/^no stale runs/);
    const stale = report([{ runId: 'run-1', phase: 'EXECUTING', temporalStatus: 'RUNNING', lastProgressAt: '2026-11-24T10:00:00Z', ageSeconds: 3600, overdueSeconds: 60, reason: 'x' }]);
    expect(staleText([stale])).toContain('run-1');
  });
});
