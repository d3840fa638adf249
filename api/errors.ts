import type { ErrorRequestHandler } from 'express';

/** An error whose message is safe and useful to show the caller. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
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

export function errorHandler(log: (err: unknown) => void): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (err instanceof HttpError) {
      res.status(err.status).json({ error: err.message, ...err.details });
      return;
    }
    const parserError = err as FrameworkError;
    switch (parserError?.type) {
      case 'entity.parse.failed':
        res.status(400).json({ error: `malformed JSON body: ${parserError.message}` });
        return;
      case 'entity.too.large':
        res.status(413).json({ error: `request body is larger than the ${parserError.limit} byte limit` });
        return;
      case 'encoding.unsupported':
      case 'charset.unsupported':
        res.status(415).json({ error: parserError.message });
        return;
    }
    const clientStatus = err instanceof Error ? clientStatusOf(parserError) : null;
    if (clientStatus !== null) {
      res.status(clientStatus).json({ error: describeClientError(parserError, req.get('content-encoding')) });
      return;
    }
    log(err);
    res.status(500).json({ error: 'internal error' });
  };
}
