import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..', '..');
const run = promisify(execFile);
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * A `go` that takes a while to "build" and writes the binary go install would, logging each call:
 * what two first starts at once would each run. Only Go is faked; the script under test is ours.
 */
function fakeGo(): { env: NodeJS.ProcessEnv; calls(): string[] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'install-lock-'));
  dirs.push(dir);
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  const log = path.join(dir, 'go.log');
  writeFileSync(log, '');
  writeFileSync(
    path.join(bin, 'go'),
    `#!/usr/bin/env bash\necho "go $*" >> "${log}"\nsleep 1.5\nname=\${2##*/}; name=\${name%@*}\nprintf '#!/bin/sh\\necho fake\\n' > "$GOBIN/$name"\nchmod +x "$GOBIN/$name"\n`,
  );
  chmodSync(path.join(bin, 'go'), 0o755);
  return {
    // No temporal on PATH and an empty cache of the test's own: the script must install.
    env: { PATH: `${bin}:/usr/bin:/bin`, HOME: dir, GOVERNED_RUNS_CACHE: path.join(dir, 'cache') },
    calls: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
  };
}

describe('temporal-dev.sh installing the CLI', () => {
  it('builds it once when two first starts ask at the same time; the second waits and uses it', async () => {
    const go = fakeGo();
    const cliPath = () => run('bash', [path.join(root, 'temporal-dev.sh'), 'cli-path'], { env: go.env, cwd: root });
    const first = cliPath();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const [a, b] = await Promise.all([first, cliPath()]);

    expect(go.calls()).toHaveLength(1);
    expect(a.stdout.trim()).toBe(path.join(go.env.GOVERNED_RUNS_CACHE!, 'bin', 'temporal'));
    expect(b.stdout.trim()).toBe(a.stdout.trim());
    expect(b.stderr).toContain('another process is installing');
    // Once it is there, nobody installs or waits.
    const again = await cliPath();
    expect(again.stdout.trim()).toBe(a.stdout.trim());
    expect(again.stderr).toBe('');
    expect(go.calls()).toHaveLength(1);
  });
});
