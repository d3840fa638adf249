/**
 * postgres.js 3.4.9 has a race under an outage: a write scheduled on a connection just as its socket
 * closed runs after the socket is gone and throws a TypeError from a timer, outside any query: an
 * uncaught exception, which ends a Node process. The query itself has already failed (the caller
 * sees CONNECTION_CLOSED or ECONNRESET and retries), so nothing is lost by going on; a process that
 * dies on it would take a database blip as a crash.
 */
export function isDriverWriteAfterClose(err: unknown): boolean {
  return (
    err instanceof TypeError &&
    err.message === "Cannot read properties of null (reading 'write')" &&
    /postgres[\\/]src[\\/]connection\.js/.test(err.stack ?? '') &&
    /nextWrite/.test(err.stack ?? '')
  );
}

let guarded = false;

/**
 * Lets a process outlive the driver's write-after-close race (logged), and keeps Node's default for
 * every other uncaught exception: printed, then the process exits 1.
 */
export function surviveDriverWriteAfterClose(warn: (message: string) => void): void {
  if (guarded) return;
  guarded = true;
  process.on('uncaughtException', (err) => {
    if (isDriverWriteAfterClose(err)) {
      warn('postgres.js wrote to a connection that had just closed (a known driver race under an outage); the query it carried already failed and is retried');
      return;
    }
    console.error(err);
    process.exit(1);
  });
}
