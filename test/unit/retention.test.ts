import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { retentionSettingsSchema } from '../../api/inputs';
import { DEFAULT_RETENTION, EMPTY_PRUNE_TOTALS, addPruneTotals } from '../../core/retention';
import { loadConfig } from '../../lib/config';
import { exportSinkFor, folderExportSink } from '../../lib/run-export';

const dir = mkdtempSync(path.join(os.tmpdir(), 'governed-run-export-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the run export folder', () => {
  it('writes <tenant>/<run>.jsonl whole, with the sha256 of what it wrote, and replaces it when written again', async () => {
    const sink = folderExportSink(dir);
    const [tenantId, runId] = [randomUUID(), randomUUID()];
    await sink.write({ tenantId, runId, lines: ['{"a":1}'] });
    const written = await sink.write({ tenantId, runId, lines: ['{"table":"runs"}', '{"table":"traces"}'] });
    const file = fileURLToPath(written.location);
    expect(file).toBe(path.join(dir, tenantId, `${runId}.jsonl`));
    const body = readFileSync(file, 'utf8');
    expect(body).toBe('{"table":"runs"}\n{"table":"traces"}\n');
    expect(written.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    // No temporary file is left beside it.
    expect(readdirSync(path.join(dir, tenantId))).toEqual([`${runId}.jsonl`]);
  });

  it('refuses a name that is not a tenant and run id, so nothing is written outside the folder', async () => {
    await expect(folderExportSink(dir).write({ tenantId: '../etc', runId: randomUUID(), lines: [] })).rejects.toThrow(/not a tenant and run id/);
  });

  it('takes a folder or a file: URL, and refuses an S3-compatible URL by name', () => {
    expect(exportSinkFor(undefined)).toBeUndefined();
    expect(exportSinkFor(dir)).toBeDefined();
    expect(exportSinkFor(`file://${dir}`)).toBeDefined();
    expect(() => exportSinkFor('s3://bucket/runs')).toThrow(/S3-compatible URL is not built/);
    expect(() => exportSinkFor('https://minio.local/bucket')).toThrow(/not built/);
  });
});

describe('retention settings', () => {
  it('accepts the defaults and refuses event records kept longer than the runs', () => {
    expect(retentionSettingsSchema.safeParse(DEFAULT_RETENTION).success).toBe(true);
    expect(retentionSettingsSchema.safeParse({ ...DEFAULT_RETENTION, runsDays: 2, outboxHours: 49 }).success).toBe(false);
    expect(retentionSettingsSchema.safeParse({ ...DEFAULT_RETENTION, runsDays: 2, alertsDays: 2, controlPushesHours: 48, outboxHours: 48 }).success).toBe(true);
    expect(retentionSettingsSchema.safeParse({ ...DEFAULT_RETENTION, runsDays: 0 }).success).toBe(false);
    expect(retentionSettingsSchema.safeParse({ ...DEFAULT_RETENTION, extra: 1 }).success).toBe(false);
  });

  it('adds batch totals field by field', () => {
    expect(addPruneTotals(addPruneTotals(EMPTY_PRUNE_TOTALS, { runs: 2, records: 30 }), { runs: 1, outbox: 5 })).toEqual({ ...EMPTY_PRUNE_TOTALS, runs: 3, records: 30, outbox: 5 });
  });

  it('reads the pass interval and the reactor key TTL from the environment', () => {
    const config = loadConfig({ RETENTION_PRUNE_INTERVAL: '30m', REACTOR_HANDLED_TTL_SECONDS: '3600' });
    expect(config.RETENTION_PRUNE_INTERVAL).toBe(1800);
    expect(config.REACTOR_HANDLED_TTL_SECONDS).toBe(3600);
    expect(loadConfig({}).RETENTION_PRUNE_INTERVAL).toBe(3600);
    expect(() => loadConfig({ REACTOR_HANDLED_TTL_SECONDS: '5' })).toThrow(/REACTOR_HANDLED_TTL_SECONDS/);
  });
});
