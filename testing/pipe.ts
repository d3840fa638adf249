import type net from 'node:net';

/**
 * Pipes a client's connection and the one opened for it upstream into each other, both held in
 * `open` while they last: an error or a close on either side destroys the other, as a dropped
 * connection does end to end.
 */
export function pipeSockets(client: net.Socket, upstream: net.Socket, open: Set<net.Socket>): void {
  for (const socket of [client, upstream]) {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  }
  const teardown = () => {
    client.destroy();
    upstream.destroy();
  };
  for (const socket of [client, upstream]) {
    socket.on('error', teardown);
    socket.on('close', teardown);
  }
  client.pipe(upstream);
  upstream.pipe(client);
}
