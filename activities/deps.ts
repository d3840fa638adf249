import type { Client } from '@temporalio/client';
import type { ToolServers } from './tools/servers';
import type { Db } from '../db/client';
import type { Logger } from '../lib/logger';
import type { WorkerMetrics } from '../lib/metrics';

export interface LlmConfig {
  baseUrl: string;
  apiKey?: string;
  model: string;
  timeoutMs: number;
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
  limits: {
    /** A step output (or tool result) larger than this fails; it is never truncated. */
    maxStepOutputBytes: number;
  };
}
