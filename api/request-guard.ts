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

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/**
 * Where the first own `__proto__` key of a parsed body sits (`plan[0].input.__proto__`), or null.
 * JSON.parse keeps such a key as an ordinary property, but every object spread, `Object.assign` or
 * `obj[key] = value` after it (zod's records among them) sets the object's prototype instead, so the
 * key and its value silently vanish from what is validated and stored. Refused rather than lost.
 */
export function findProtoKey(value: unknown): string | null {
  const pending: { value: unknown; path: string }[] = [{ value, path: '' }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value: current, path } = next;
    if (current === null || typeof current !== 'object') continue;
    if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i -= 1) pending.push({ value: current[i], path: `${path}[${i}]` });
      continue;
    }
    if (Object.hasOwn(current, '__proto__')) return path ? `${path}.__proto__` : '__proto__';
    const entries = Object.entries(current);
    for (let i = entries.length - 1; i >= 0; i -= 1) {
      const [key, child] = entries[i]!;
      pending.push({ value: child, path: IDENTIFIER.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]` });
    }
  }
  return null;
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
 * parsed body, a `__proto__` key anywhere in the body (`findProtoKey`), and bodies nested deeper
 * than `MAX_BODY_DEPTH`. Runs after the body parser and before any route, so a route never writes
 * half a request.
 */
export function rejectUnsafeInput(): RequestHandler {
  return (req, _res, next) => {
    if (nestsDeeperThan(req.body, MAX_BODY_DEPTH)) {
      throw new HttpError(400, `request body nests deeper than ${MAX_BODY_DEPTH} levels`);
    }
    const problem = pathProblem(req.path) ?? queryProblem(req) ?? headerProblem(req) ?? findUnsafeText(req.body);
    if (problem) throw new HttpError(400, problem);
    const proto = findProtoKey(req.body);
    if (proto) throw new HttpError(400, `${proto}: a key named "__proto__" is not accepted anywhere in a body (it would be lost, not stored)`);
    next();
  };
}
