import { createServer } from 'node:net';

/** A loopback port the OS just handed out and took back: free now, so a test may bind it (or find nothing there). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
