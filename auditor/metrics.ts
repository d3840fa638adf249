import http from 'node:http';
import { desc } from 'drizzle-orm';
import type { Db } from '../db/client';
import { staleRunReports } from '../db/schema';
import { listen } from '../lib/listen';
import type { WorkerMetrics } from '../lib/metrics';

/** How long a scrape waits for the latest stale-run report before serving the gauge as it stands. */
const REPORT_READ_TIMEOUT_MS = 800;

/** The stale-run count of the latest report, whoever wrote it; null before the first. */
export async function latestStaleRunCount(db: Db): Promise<number | null> {
  const [latest] = await db
    .select({ staleCount: staleRunReports.staleCount })
    .from(staleRunReports)
    .orderBy(desc(staleRunReports.generatedAt), desc(staleRunReports.id))
    .limit(1);
  return latest?.staleCount ?? null;
}

/**
 * The auditor's `/metrics` (AUDITOR_METRICS_PORT): the audit loop's metrics as its activities
 * record them, with `governed_stale_runs` read from the latest stale-run report at each scrape.
 * The activity sets the gauge only in the process that wrote the report, so with two auditors (or
 * one restarted since) each would otherwise say something else; read from the store, every auditor
 * exports the same count and an alert on it neither flaps nor sticks.
 */
export async function serveAuditorMetrics(metrics: WorkerMetrics, db: Db, port: number, host = '127.0.0.1'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    void (async () => {
      const count = await withTimeout(latestStaleRunCount(db), REPORT_READ_TIMEOUT_MS).catch(() => undefined);
      if (typeof count === 'number') metrics.staleRuns.set(count);
      const body = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body);
    })().catch((err: unknown) => res.writeHead(500).end(String(err)));
  });
  await listen(server, port, host, { name: 'auditor metrics port', variable: 'AUDITOR_METRICS_PORT' });
  return server;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
