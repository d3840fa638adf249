import type { Client } from '@temporalio/client';
import type { ToolServers } from './tools/servers';
import type { Db, DbOrTx } from '../db/client';
import type { RunExportSink } from '../lib/run-export';
import type { Logger } from '../lib/logger';
import type { WorkerMetrics } from '../lib/metrics';

export interface LlmConfig {
  baseUrl: string;
  apiKey?: string;
  model: string;
  timeoutMs: number;
}

/**
 * What retention writes of a run before removing it: the lines of its export file, by run, and
 * where they go. The default collector writes each row of the run as `{table, row}`; the evidence
 * export can take its place with its own lines.
 */
export interface RunExport {
  collect(tx: DbOrTx, runIds: readonly string[]): Promise<Map<string, string[]>>;
  sink: RunExportSink;
}

export interface ActivityDeps {
  db: Db;
  metrics: WorkerMetrics;
  logger: Logger;
  llm: LlmConfig;
  /** For what only Temporal knows: whether a stale run's workflow still runs. */
  temporal: Client;
  /** The tool servers the operator declared for this worker (none: agents get no tools). */
  tools: ToolServers;
  /** Where pruned runs are exported for tenants that ask for it; without it their runs are kept. */
  runExport?: RunExport;
  limits: {
    /** A step output (or tool result) larger than this fails; it is never truncated. */
    maxStepOutputBytes: number;
  };
}
