import { and, eq, isNull } from 'drizzle-orm';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ApiRole, TenantStatus } from '../core/authorization';
import type { Db } from '../db/client';
import { apiKeys, tenants } from '../db/schema';
import { hashApiKey } from '../lib/api-keys';
import { addressBucket, type AuthThrottle } from './auth-throttle';
import { HttpError } from './errors';

export interface Caller {
  tenantId: string;
  tenantName: string;
  tenantStatus: TenantStatus;
  apiKeyId: string;
  role: ApiRole;
  /** The tenant's own allowance of requests per key per minute; null: the deployment's. */
  requestsPerMinute: number | null;
}

export function callerOf(res: Response): Caller {
  const caller = res.locals.caller as Caller | undefined;
  if (!caller) throw new Error('route is missing the authenticate middleware');
  return caller;
}

/** Who the API records as acting: the caller's key, never the key itself. */
export function actorOf(caller: Caller): string {
  return `api-key:${caller.apiKeyId}`;
}

const INVALID_KEY = 'invalid or revoked API key';

/** What every key the API issues looks like (`lib/api-keys.ts`): anything else cannot be one, and is never looked up. */
const API_KEY_SHAPE = /^gr_[A-Za-z0-9_-]{32}$/;

/** The client's address as the failed-key throttle counts it (`trust proxy` decides whether a proxy's header is believed). */
function clientAddress(req: Request): string {
  return addressBucket(req.ip ?? req.socket.remoteAddress);
}

/**
 * `Authorization: Bearer <api key>` → the key's tenant and role, or 401. With a throttle, a client
 * address or a key that failed too often lately is answered 429 before the key is looked up, and
 * every lookup that finds no key counts against both (`api/auth-throttle.ts`).
 */
export function authenticate(db: Db, throttle?: AuthThrottle): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new HttpError('API_KEY_MISSING', 'missing API key: send Authorization: Bearer <api key>');
    const key = match[1]!;
    // Not one of ours: no lookup could find it, so none is made (and none is counted).
    if (!API_KEY_SHAPE.test(key)) throw new HttpError('API_KEY_INVALID', INVALID_KEY);
    const keyHash = hashApiKey(key);
    const address = clientAddress(req);
    await throttle?.admit(address, keyHash);
    const [row] = await db
      .select({
        apiKeyId: apiKeys.id,
        role: apiKeys.role,
        tenantId: tenants.id,
        tenantName: tenants.name,
        tenantStatus: tenants.status,
        requestsPerMinute: tenants.requestsPerMinute,
      })
      .from(apiKeys)
      .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
      .where(and(eq(apiKeys.keyHash, keyHash), isNull(apiKeys.revokedAt)));
    if (!row) {
      await throttle?.failed(address, keyHash);
      throw new HttpError('API_KEY_INVALID', INVALID_KEY);
    }
    res.locals.caller = row satisfies Caller;
    next();
  };
}
