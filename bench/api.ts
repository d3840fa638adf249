import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, type ApiDeps } from '../api/app';
import { apiSettingsOf } from '../compose/api';
import { loadConfig } from '../lib/config';
import { createApiMetrics } from '../lib/metrics';

/** The product's API as the benchmarks run it: in this process, on a loopback port of its own, configured as the product's (its deadlines, its limits) on the bench's queue. */
export async function startBenchApi(deps: Pick<ApiDeps, 'db' | 'temporal' | 'redis' | 'logger' | 'taskQueue'>): Promise<{ server: Server; base: string }> {
  const { taskQueue, ...parts } = deps;
  const settings = apiSettingsOf({ ...loadConfig(), TEMPORAL_TASK_QUEUE: taskQueue, OBSERVABILITY_MODE: 'DEGRADED' }, { watchReactors: false });
  const app = createApp({ ...parts, metrics: createApiMetrics(), ...settings });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
