import http, { type RequestListener } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../lib/logger';
import { PROBLEM_CONTENT_TYPE, problemBody } from './problems';

/** What the HTTP server holds a client to, whatever the routes do. */
export interface ServerLimits {
  /** The whole request, headers and body, must have arrived within this (`server.requestTimeout`); else 408 and closed. */
  requestTimeoutMs: number;
  /** The headers must have arrived within this (`server.headersTimeout`); at most `requestTimeoutMs`. */
  headersTimeoutMs: number;
  /** Connections held at once (`server.maxConnections`); one more is closed as soon as it is accepted. */
  maxConnections: number;
}

/**
 * How often Node looks for requests past their timeouts. Its default (30 s) let a request past a
 * 30 s timeout live up to a minute; a sweep of the open connections each second costs nothing.
 */
const TIMEOUT_SWEEP_MS = 1000;
/** Drops of connections over the cap are logged at most this often. */
const DROP_LOG_INTERVAL_MS = 10_000;

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * The answer Node's HTTP parser gives on its own (a request that never finished arriving, headers
 * too large, bytes that are not HTTP), as a problem like every error of the API, with its headers. Written only
 * when nothing was written on the connection yet, as Node's own would be; the connection is closed.
 */
function answerClientError(limits: ServerLimits): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  return (err, socket) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const detail =
      status === 408
        ? `the request did not arrive whole within ${limits.requestTimeoutMs / 1000} s (headers within ${limits.headersTimeoutMs / 1000} s); the connection is closed`
        : status === 431
          ? 'the request headers are too large'
          : 'malformed HTTP request';
    const { bytesWritten } = socket as Duplex & { bytesWritten?: number };
    if (err.code !== 'ECONNRESET' && socket.writable && (bytesWritten ?? 0) === 0) {
      const body = JSON.stringify(problemBody(status === 408 ? 'REQUEST_TIMEOUT' : status === 431 ? 'HEADERS_TOO_LARGE' : 'MALFORMED_REQUEST', detail));
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}

/**
 * The API's HTTP server: a request whose body (or headers) never arrives is answered 408 and closed
 * within `requestTimeoutMs` (about a second more), not held for Node's 300 s, and at most
 * `maxConnections` connections are open at once — past it a new one is closed at once, so a flood
 * of idle or stalled connections cannot take the process's sockets and memory.
 */
export function createApiServer(app: RequestListener, limits: ServerLimits, logger?: Logger): http.Server {
  const server = http.createServer(
    { requestTimeout: limits.requestTimeoutMs, headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs), connectionsCheckingInterval: TIMEOUT_SWEEP_MS },
    app,
  );
  server.maxConnections = limits.maxConnections;
  server.on('clientError', answerClientError(limits));
  let dropped = 0;
  let lastDropLog = 0;
  server.on('drop', () => {
    dropped += 1;
    if (!logger || Date.now() - lastDropLog < DROP_LOG_INTERVAL_MS) return;
    lastDropLog = Date.now();
    logger.warn({ maxConnections: limits.maxConnections, droppedSoFar: dropped }, 'connection refused: the API holds its maximum number of connections (API_MAX_CONNECTIONS)');
  });
  return server;
}
