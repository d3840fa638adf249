import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { PATCH_RELEASED, mayRetire } from '../workflows/patches';

const run = promisify(execFile);

describe('the patch retirement rule', () => {
  const now = new Date('2027-03-01T00:00:00Z');

  it('keeps a patch while a run started before it is open, or within the retention after the last one closed', () => {
    expect(mayRetire('2026-11-24', { openRunsStartedBefore: 1, lastSuchRunClosedAt: null, retentionDays: 7, now })).toBe(false);
    expect(mayRetire('2026-11-24', { openRunsStartedBefore: 0, lastSuchRunClosedAt: new Date('2027-02-25T00:00:00Z'), retentionDays: 7, now })).toBe(false);
    expect(mayRetire('2026-11-24', { openRunsStartedBefore: 0, lastSuchRunClosedAt: new Date('2027-02-20T00:00:00Z'), retentionDays: 7, now })).toBe(true);
    expect(mayRetire('2027-02-27', { openRunsStartedBefore: 0, lastSuchRunClosedAt: null, retentionDays: 7, now })).toBe(false);
  });

  it('is checked against a real namespace by npm run patches:retirable', async () => {
    const checkedAt = new Date();
    const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'worker', 'patch-retirement.ts')], {
      env: { ...process.env, TEMPORAL_ADDRESS: inject('temporalAddress'), TEMPORAL_NAMESPACE: 'default' },
    });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^2026-11-24 {2}(keep|may retire) +open runs started before: \d+/);
    // One line per release date, the newest last.
    const releases = [...new Set(Object.values(PATCH_RELEASED))].sort();
    expect(lines.map((line) => line.slice(0, 10))).toEqual(releases);
    // Each verdict is the rule's on what the namespace answered, at the time it was asked: a
    // release younger than the namespace's retention is kept even with no run open (the dev
    // server keeps closed runs a day, so the newest release turns retirable a day after it).
    for (const line of lines) {
      const [, released, verdict, open, lastClosed, retentionDays] =
        /^(\S+) {2}(keep|may retire) +open runs started before: (\d+), last of them closed: (\S+), retention (\d+) days/.exec(line)!;
      const facts = { openRunsStartedBefore: Number(open), lastSuchRunClosedAt: lastClosed === 'none' ? null : new Date(lastClosed!), retentionDays: Number(retentionDays) };
      // Asked before the script ran and after it: the verdict is one of the two (midnight may fall between).
      const possible = [mayRetire(released!, { ...facts, now: checkedAt }), mayRetire(released!, { ...facts, now: new Date() })].map((may) => (may ? 'may retire' : 'keep'));
      expect(possible, line).toContain(verdict);
    }
  });
});
