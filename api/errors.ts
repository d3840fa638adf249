import type { ErrorRequestHandler, Response } from 'express';
import { isDatabaseUnavailable } from '../db/unavailable';
import { PROBLEM_CONTENT_TYPE, PROBLEMS, generalCode, problemBody, type ProblemCode } from './problems';

/**
 * An error whose message is safe and useful to show the caller: answered as a problem
 * (`api/problems.ts`) with the code given, or the general code of the status given.
 */
export class HttpError extends Error {
  readonly status: number;
  readonly code: ProblemCode;

  constructor(
    statusOrCode: number | ProblemCode,
    message: string,
    /** Fields the problem carries beside the standard ones (`limit`, `runId`, ...). */
    readonly details?: Record<string, unknown>,
    /** Response headers the answer needs, such as a 429's Retry-After. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.status = typeof statusOrCode === 'number' ? statusOrCode : PROBLEMS[statusOrCode].status;
    this.code = typeof statusOrCode === 'number' ? generalCode(statusOrCode) : statusOrCode;
  }
}

/** Seconds a caller is told to wait when a dependency is down: about one reconnect attempt. */
export const RETRY_AFTER_SECONDS = 5;

/** gRPC status codes (@grpc/grpc-js `status`) that mean Temporal could not be reached in time. */
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;

/**
 * True when `err`, or an error it wraps (the client's ServiceError, an update's RPC error), says
 * Temporal could not be reached, or not before the request's deadline.
 */
export function isTemporalUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    const { code, details } = e as { code?: unknown; details?: unknown };
    // A gRPC status is a numeric code with details; postgres.js and socket codes are strings.
    if (typeof details === 'string' && (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED)) return true;
    // grpc-js gives a closed channel no status code. The API closes its own only while shutting
    // down, when a request still in flight is best retried against another instance.
    if (e.message === 'Channel has been shut down') return true;
  }
  return false;
}

function unavailableDependency(err: unknown): 'the database' | 'Temporal' | null {
  if (isDatabaseUnavailable(err)) return 'the database';
  if (isTemporalUnavailable(err)) return 'Temporal';
  return null;
}

/**
 * True when `err` means Postgres or Temporal could not be reached (or not within the request's
 * deadline): the request may succeed if retried later, and is answered 503 with Retry-After.
 */
export function isUnavailable(err: unknown): boolean {
  return unavailableDependency(err) !== null;
}

/** What express and its body parser throw about the request itself (http-errors, or a URIError). */
interface FrameworkError extends Error {
  type?: string;
  status?: number;
  expose?: boolean;
  limit?: number;
}

/** A 4xx the framework raised about the request: its status, or null for anything else. */
function clientStatusOf(err: FrameworkError): number | null {
  const status = err.status;
  if (typeof status !== 'number' || status < 400 || status > 499) return null;
  // The router marks a path parameter that is not valid percent-encoding with a status and nothing else.
  return err.expose === true || err instanceof URIError ? status : null;
}

function describeClientError(err: FrameworkError, contentEncoding: string | undefined): string {
  // The body parser passes the decompressor's own error on, with a status and no type.
  const undecodable = !(err instanceof URIError) && err.type === undefined && contentEncoding !== undefined && contentEncoding.toLowerCase() !== 'identity';
  return undecodable ? `the request body could not be decoded as Content-Encoding ${contentEncoding}: ${err.message}` : err.message;
}

export interface ErrorLog {
  /** A dependency was down: expected during an outage, answered 503. */
  unavailable(err: unknown): void;
  /** Anything else that was not the caller's fault: a bug, answered 500. */
  unhandled(err: unknown): void;
}

/** Answers a problem: `application/problem+json`, its status, its body. */
export function sendProblem(res: Response, code: ProblemCode, detail: string, extra?: Record<string, unknown>, status: number = PROBLEMS[code].status): void {
  res.status(status).type(PROBLEM_CONTENT_TYPE).json(problemBody(code, detail, extra, status));
}

/** A framework 4xx's code: its status's own, and for a 400 an unreadable request. */
function frameworkCode(status: number): ProblemCode {
  return status === 400 ? 'MALFORMED_REQUEST' : generalCode(status);
}

/** The one place error answers are written: every 4xx and 5xx of the API is a problem (`api/problems.ts`). */
export function errorHandler(log: ErrorLog): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (err instanceof HttpError) {
      if (err.headers) res.set(err.headers);
      sendProblem(res, err.code, err.message, err.details, err.status);
      return;
    }
    const down = unavailableDependency(err);
    if (down) {
      log.unavailable(err);
      res.set('Retry-After', String(RETRY_AFTER_SECONDS));
      sendProblem(res, 'SERVICE_UNAVAILABLE', `${down} is unavailable; retry later`, { retryAfterSeconds: RETRY_AFTER_SECONDS });
      return;
    }
    const parserError = err as FrameworkError;
    switch (parserError?.type) {
      case 'entity.parse.failed':
        sendProblem(res, 'MALFORMED_JSON', `malformed JSON body: ${parserError.message}`);
        return;
      case 'entity.too.large':
        sendProblem(res, 'BODY_TOO_LARGE', `request body is larger than the ${parserError.limit} byte limit`);
        return;
      case 'encoding.unsupported':
      case 'charset.unsupported':
        sendProblem(res, 'UNSUPPORTED_MEDIA_TYPE', parserError.message);
        return;
    }
    const clientStatus = err instanceof Error ? clientStatusOf(parserError) : null;
    if (clientStatus !== null) {
      sendProblem(res, frameworkCode(clientStatus), describeClientError(parserError, req.get('content-encoding')), undefined, clientStatus);
      return;
    }
    log.unhandled(err);
    sendProblem(res, 'INTERNAL_ERROR', 'internal error');
  };
}
