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
}
