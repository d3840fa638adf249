import { z } from 'zod';
import { OBSERVABILITY_MODES } from '../core/policy';

const port = z.coerce.number().int().min(0).max(65_535);

const envSchema = z.object({
  DATABASE_URL: z.string().default('postgres://postgres@127.0.0.1:5432/governed_runs'),
  DATABASE_POOL_MAX: z.coerce.number().int().positive().default(10),
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TASK_QUEUE: z.string().default('governed-runs'),
  TEMPORAL_API_KEY: z.string().optional(),
  TEMPORAL_TLS: z.enum(['true', 'false']).default('false'),
  API_PORT: port.default(8080),
  API_HOST: z.string().default('127.0.0.1'),
  API_BODY_LIMIT: z.string().default('256kb'),
  WORKER_METRICS_PORT: port.default(9464),
  WORKER_SDK_METRICS_PORT: port.default(9465),
  /** Use the prebuilt bundle at this path instead of bundling workflows at start-up. */
  WORKFLOW_BUNDLE_PATH: z.string().optional(),
  /** Attempts before an activity error that is not a connection problem becomes final. */
  DOMAIN_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(5),
  OBSERVABILITY_MODE: z.enum(OBSERVABILITY_MODES).default('DEGRADED'),
  RUN_TIMEOUT_SECONDS: z.coerce.number().positive().default(3600),
  RUN_DEADLINE_GRACE_SECONDS: z.coerce.number().min(0).default(300),
  LLM_BASE_URL: z.string().default('https://api.openai.com/v1'),
  LLM_API_KEY: z.string().optional(),
  LLM_MODEL: z.string().default('gpt-4o-mini'),
  LLM_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});

export type Config = z.infer<typeof envSchema>;

/** Reads the environment once; a bad value stops the process with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${problems}`);
  }
  return parsed.data;
}
