import type { Client } from '@temporalio/client';
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
}
