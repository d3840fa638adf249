import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, type ApiDeps } from '../api/app';
import { loadConfig } from '../lib/config';
import { createApiMetrics } from '../lib/metrics';

/** The product's API as the benchmarks run it: in this process, on a loopback port of its own, with the product's Temporal deadlines. */
export async function startBenchApi(deps: Pick<ApiDeps, 'db' | 'temporal' | 'redis' | 'logger' | 'taskQueue'>): Promise<{ server: Server; base: string }> {
  const defaults = loadConfig();
  const app = createApp({
    ...deps,
    metrics: createApiMetrics(),
    bodyLimit: '256kb',
    temporalDeadlineMs: defaults.API_TEMPORAL_DEADLINE_MS,
    defaultObservabilityMode: 'DEGRADED',
    temporalCallTimeoutMs: defaults.TEMPORAL_CALL_TIMEOUT_MS,
    runDeadlineSeconds: 3600,
    auditIntervalSeconds: 60,
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
