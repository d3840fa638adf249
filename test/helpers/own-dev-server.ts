import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
import { RUN_SEARCH_ATTRIBUTES } from '../../core/search-attributes';
import { freePort } from '../../lib/listen';
import { devServerHealthy, devServerTuningArgs } from '../../testing/dev-server';
import { waitFor } from './wait';

export interface OwnDevServer {
  /** host:port of its gRPC frontend. */
  address: string;
  /** Its Web UI, when started with `ui`. */
  uiUrl: string | null;
  stop(): void;
}

/**
 * A Temporal dev server of a test file's own, configured as the shared one (temporal-dev.sh's
 * tuning, our search attributes) plus `dynamicConfig`: for what must not meet other files' runs,
 * ids or queues, or needs a server setting of its own. With `ui`, its Web UI is served too.
 */
export async function startOwnDevServer(options: { dynamicConfig?: Record<string, string | number | boolean>; ui?: boolean } = {}): Promise<OwnDevServer> {
  const [port, httpPort, metricsPort, uiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  const server: ChildProcess = spawn(
    inject('temporalCliPath'),
    [
      'server', 'start-dev', ...(options.ui ? [] : ['--headless']), '--ip', '127.0.0.1', '--port', String(port), '--http-port', String(httpPort),
      '--metrics-port', String(metricsPort), '--ui-port', String(uiPort), '--log-level', 'error',
      ...devServerTuningArgs(),
      ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${value}`]),
      ...RUN_SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]),
    ],
    { stdio: 'ignore' },
  );
  const stop = () => {
    server.kill('SIGTERM');
  };
  try {
    await waitFor(`a dev server of the test's own on ${address}`, () => devServerHealthy(address), 60_000);
    const uiUrl = options.ui ? `http://127.0.0.1:${uiPort}` : null;
    if (uiUrl) await waitFor('its Web UI', () => fetch(uiUrl).then((r) => r.ok, () => false), 60_000);
    return { address, uiUrl, stop };
  } catch (err) {
    stop();
    throw err;
  }
}
