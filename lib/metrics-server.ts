import http from 'node:http';
import type { Registry } from 'prom-client';
import { listen, type PortSetting } from './listen';

/** A bare `/metrics` endpoint for processes that have no HTTP API of their own. */
export async function serveMetrics(registry: Registry, port: number, setting: PortSetting, host = '127.0.0.1'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry
      .metrics()
      .then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body))
      .catch((err: unknown) => res.writeHead(500).end(String(err)));
  });
  await listen(server, port, host, setting);
  return server;
}
