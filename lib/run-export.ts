import { createHash } from 'node:crypto';
import { mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** Where a run's records go before retention removes them: one JSONL file per run. */
export interface RunExportSink {
  /** Writes the file whole or not at all; the same run written again replaces it. */
  write(file: { tenantId: string; runId: string; lines: readonly string[] }): Promise<{ location: string; sha256: string }>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A folder on this machine (or a mount): `<dir>/<tenant id>/<run id>.jsonl`, written to a temporary
 * name, flushed to disk and renamed, so a file that exists is complete.
 */
export function folderExportSink(dir: string): RunExportSink {
  const root = path.resolve(dir);
  return {
    async write({ tenantId, runId, lines }) {
      // Both come from the database; a path built from anything else is refused.
      if (!UUID.test(tenantId) || !UUID.test(runId)) throw new Error(`not a tenant and run id: ${tenantId}/${runId}`);
      const folder = path.join(root, tenantId);
      await mkdir(folder, { recursive: true });
      const file = path.join(folder, `${runId}.jsonl`);
      const body = lines.map((l) => `${l}\n`).join('');
      const temporary = `${file}.${process.pid}.partial`;
      const handle = await open(temporary, 'w');
      try {
        await handle.writeFile(body, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, file);
      return { location: pathToFileURL(file).href, sha256: createHash('sha256').update(body, 'utf8').digest('hex') };
    },
  };
}

/**
 * The operator's RETENTION_EXPORT_TO: a folder path or a `file:` URL. An S3-compatible URL is
 * refused by name: it is not built (mount the bucket, or export to a folder a sync job uploads).
 */
export function exportSinkFor(target: string | undefined): RunExportSink | undefined {
  if (!target) return undefined;
  if (/^s3:|^https?:/i.test(target)) {
    throw new Error(`RETENTION_EXPORT_TO=${target}: exporting to an S3-compatible URL is not built; give a folder (a mounted bucket will do)`);
  }
  return folderExportSink(target.startsWith('file:') ? new URL(target).pathname : target);
}
