import net from 'node:net';
import tls from 'node:tls';
import { pipeSockets } from './pipe';

export interface TlsTerminator {
  /** The loopback port it accepts TLS on. */
  readonly port: number;
  /** Handshakes that presented a client certificate the CA signed, each forwarded to the target. */
  readonly forwarded: number;
  /** Why each refused handshake was refused (OpenSSL's reason, e.g. "peer did not return a certificate"). */
  readonly refusals: readonly string[];
  close(): Promise<void>;
}

/**
 * A TLS terminator in front of a plaintext gRPC server (the Temporal dev server), as a hosted
 * cluster's frontend or load balancer does: it speaks HTTP/2 by ALPN, requires a client certificate
 * signed by `ca`, and pipes each accepted connection's bytes to `target` in the clear.
 */
export async function startTlsTerminator(options: {
  target: { host: string; port: number };
  key: string | Buffer;
  cert: string | Buffer;
  /** The CA client certificates must chain to. */
  ca: string | Buffer;
}): Promise<TlsTerminator> {
  const sockets = new Set<net.Socket>();
  let forwarded = 0;
  const refusals: string[] = [];
  const server = tls.createServer(
    { key: options.key, cert: options.cert, ca: options.ca, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] },
    (client) => {
      forwarded += 1;
      pipeSockets(client, net.connect(options.target), sockets);
    },
  );
  server.on('tlsClientError', (err) => refusals.push(err.message));
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    get forwarded() {
      return forwarded;
    },
    get refusals() {
      return refusals;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
