import net from 'node:net';

/** What postgres.js hands a custom socket factory: its parsed hosts and ports, or a socket path. */
export interface SocketTarget {
  host: string[];
  port: number[];
  path?: string;
}

/**
 * Sockets for postgres.js that turn a close without a single byte of answer into an error.
 *
 * postgres.js 3.4.9 leaves the query that opened a connection waiting, and reconnects in a loop
 * with no delay, when the server ends the connection cleanly before answering (porsager/postgres
 * issue 1193), which is what a proxy or load balancer in front of a dead Postgres does.
 * connect_timeout does not bound it: every close cancels the timer. Reported as an error, the
 * same close fails the query with CONNECTION_CLOSED, as a reset connection does, and the caller
 * decides what next (the API answers 503, an activity retries). A server that answers, even only
 * to refuse (too many connections, starting up), is left to postgres.js.
 *
 * Given a socket factory postgres.js no longer picks among several hosts itself; each new socket
 * goes to the next one, as it would.
 */
export function closeReportingSockets(): (target: SocketTarget) => net.Socket {
  let attempts = 0;
  return (target) => {
    const i = attempts++ % Math.max(1, target.host.length);
    const socket = target.path ? net.connect(target.path) : net.connect(target.port[i] ?? target.port[0]!, target.host[i]!);
    socket.once('end', () => {
      if (socket.bytesRead > 0) return;
      socket.destroy(Object.assign(new Error('the database server closed the connection without answering'), { code: 'CONNECTION_CLOSED' }));
    });
    return socket;
  };
}
