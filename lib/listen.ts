import net, { type Server } from 'node:net';

/** What a port is for and the variable that sets it, so a taken port says which setting to change. */
export interface PortSetting {
  name: string;
  variable: string;
}

export class PortInUseError extends Error {
  constructor(setting: PortSetting, port: number) {
    super(`${setting.name} ${port} is already in use (${setting.variable})`);
    this.name = 'PortInUseError';
  }
}

/**
 * Resolves once the socket is bound. A taken port rejects with a PortInUseError rather than being
 * left to an `error` event nobody listens to (express 5's `app.listen` hands it to the callback).
 */
export function listen(server: Server, port: number, host: string, setting: PortSetting): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new PortInUseError(setting, port) : err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** A loopback port nobody listens on right now (another process may take it before it is used). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await listen(server, 0, '127.0.0.1', { name: 'probe port', variable: '-' });
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}
