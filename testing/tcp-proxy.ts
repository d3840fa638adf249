import net from 'node:net';
import { pipeSockets } from './pipe';

export type CutMode = 'reset' | 'close';

export interface TcpProxy {
  /** The loopback port the proxy listens on. */
  readonly port: number;
  /** Connections forwarded to the target since start. */
  readonly accepted: number;
  /** Connections closed on arrival because the proxy was cut. */
  readonly refused: number;
  /** Open client connections right now. */
  readonly open: number;
  readonly isCut: boolean;
  /**
   * Destroys every open connection; new ones are closed as soon as they arrive, until `restore()`.
   * `reset` (the default) aborts with a TCP RST, as a dead host or a refused port does; `close`
   * ends them with a FIN after accepting, as a proxy or load balancer in front of a dead server does.
   */
  cut(how?: CutMode): void;
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP forwarder on 127.0.0.1:0 that a test or a drill can cut, to simulate an outage between a
 * process and Postgres or Redis without touching either.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let isCut = false;
  let mode: CutMode = 'reset';
  const kill = (socket: net.Socket) => {
    socket.on('error', () => {});
    if (mode === 'reset' && !socket.destroyed && socket.readyState === 'open') socket.resetAndDestroy();
    else socket.destroy();
  };
  let accepted = 0;
  let refused = 0;
  let open = 0;

  const server = net.createServer((client) => {
    if (isCut) {
      refused += 1;
      kill(client);
      return;
    }
    accepted += 1;
    open += 1;
    client.once('close', () => {
      open -= 1;
    });
    pipeSockets(client, net.connect({ host: target.host, port: target.port }), sockets);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    get accepted() {
      return accepted;
    },
    get refused() {
      return refused;
    },
    get open() {
      return open;
    },
    get isCut() {
      return isCut;
    },
    cut(how: CutMode = 'reset') {
      isCut = true;
      mode = how;
      for (const socket of sockets) kill(socket);
      sockets.clear();
    },
    restore() {
      isCut = false;
    },
    async close() {
      isCut = true;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
