import type { Request, RequestHandler, Response } from 'express';

/** How much of a body nobody read is taken in before answering: past it, the answer goes out anyway. */
const DRAIN_LIMIT_BYTES = 1024 * 1024;
/** How long a slow client is waited for, for the same reason. */
const DRAIN_TIMEOUT_MS = 2000;

/** Resolves once `req` has been read to its end, or past the bounds above. The bytes are dropped. */
function drain(req: Request): Promise<void> {
  return new Promise((resolve) => {
    let received = 0;
    const done = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', done);
      req.off('error', done);
      req.off('close', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > DRAIN_LIMIT_BYTES) done();
    };
    const timer = setTimeout(done, DRAIN_TIMEOUT_MS);
    req.on('data', onData);
    req.once('end', done);
    req.once('error', done);
    req.once('close', done);
    req.resume();
  });
}

/**
 * Answers a request only once its body has arrived, whether a route read it or not: the 401 for a
 * bad key (authentication comes before the body), a 404, a 415, a GET /metrics that came with one.
 *
 * When the client asked for the connection to be closed, Node closes it as soon as the answer is
 * written, and closing a socket with unread bytes in it resets the connection: the kernel drops
 * whatever of the answer it had not sent yet, and the client sees ECONNRESET instead of it. So the
 * rest of the body is read first and dropped, never parsed nor decompressed, within the bounds above.
 */
export function drainUnreadBodies(): RequestHandler {
  return (req, res, next) => {
    const end = res.end.bind(res) as (...args: unknown[]) => Response;
    res.end = ((...args: unknown[]) => {
      if (req.complete) return end(...args);
      void drain(req).then(() => end(...args));
      return res;
    }) as Response['end'];
    next();
  };
}
