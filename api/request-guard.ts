import type { Request, RequestHandler } from 'express';
import { findUnsafeText, unsafeTextReason } from '../core/text-safety';
import { HttpError } from './errors';

/**
 * How deep a JSON body may nest. The deepest document the API takes (a plan step's `llm.chat`
 * message) sits at depth 6; JSON.stringify, which hashes and stores bodies, overflows the call stack
 * a few thousand levels down, and a 10 kB body reaches that.
 */
export const MAX_BODY_DEPTH = 32;

/** The headers the API itself reads; Node's parser already refuses control characters in any. */
const HEADERS_READ = ['authorization', 'idempotency-key', 'content-type', 'content-encoding'] as const;

/** True when `value` nests objects or arrays more than `limit` levels deep (checked without recursion). */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    if (next.value === null || typeof next.value !== 'object') continue;
    const depth = next.depth + 1;
    if (depth > limit) return true;
    for (const child of Object.values(next.value)) pending.push({ value: child, depth });
  }
  return false;
}

/** The first path segment that is malformed percent-encoding or decodes to refused text. */
function pathProblem(path: string): string | null {
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return `path segment ${JSON.stringify(segment)} is not valid percent-encoding`;
    }
    const reason = unsafeTextReason(decoded);
    if (reason) return `path segment ${JSON.stringify(segment)} ${reason}`;
  }
  return null;
}

function queryProblem(req: Request): string | null {
  for (const [name, value] of Object.entries(req.query)) {
    const reason = unsafeTextReason(name);
    if (reason) return `a query parameter name ${reason}`;
    const found = findUnsafeText(value, `query parameter ${name}`);
    if (found) return found;
  }
  return null;
}

function headerProblem(req: Request): string | null {
  for (const name of HEADERS_READ) {
    const value = req.get(name);
    const reason = value === undefined ? null : unsafeTextReason(value);
    if (reason) return `header ${name} ${reason}`;
  }
  return null;
}

/**
 * Refuses, with a 400 naming the field, what no route should ever see: text Postgres could not
 * store (`core/text-safety`) anywhere in the path, the query, the headers the API reads or the
 * parsed body, and bodies nested deeper than `MAX_BODY_DEPTH`. Runs after the body parser and
 * before any route, so a route never writes half a request.
 */
export function rejectUnsafeInput(): RequestHandler {
  return (req, _res, next) => {
    if (nestsDeeperThan(req.body, MAX_BODY_DEPTH)) {
      throw new HttpError(400, `request body nests deeper than ${MAX_BODY_DEPTH} levels`);
    }
    const problem = pathProblem(req.path) ?? queryProblem(req) ?? headerProblem(req) ?? findUnsafeText(req.body);
    if (problem) throw new HttpError(400, problem);
    next();
  };
}
