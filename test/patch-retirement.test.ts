import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { mayRetire } from '../workflows/patches';

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
    const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'worker', 'patch-retirement.ts')], {
      env: { ...process.env, TEMPORAL_ADDRESS: inject('temporalAddress'), TEMPORAL_NAMESPACE: 'default' },
    });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^2026-11-24 {2}(keep|may retire) +open runs started before: \d+/);
    expect(lines.at(-1)).toMatch(/^2026-12-03 {2}keep +open runs started before: \d+.*\(stepOutputs, /);
  });
});
