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

interface BodyParserError extends Error {
  type?: string;
  status?: number;
  limit?: number;
}

export function errorHandler(log: (err: unknown) => void): ErrorRequestHandler {
  return (err: unknown, _req, res, _next) => {
    if (err instanceof HttpError) {
      res.status(err.status).json({ error: err.message, ...err.details });
      return;
    }
    const parserError = err as BodyParserError;
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
    log(err);
    res.status(500).json({ error: 'internal error' });
  };
}
