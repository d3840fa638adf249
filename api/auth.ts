import { and, eq, isNull } from 'drizzle-orm';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ApiRole, TenantStatus } from '../core/authorization';
import type { Db } from '../db/client';
import { apiKeys, tenants } from '../db/schema';
import { hashApiKey } from '../lib/api-keys';
import { HttpError } from './errors';

export interface Caller {
  tenantId: string;
  tenantName: string;
  tenantStatus: TenantStatus;
  apiKeyId: string;
  role: ApiRole;
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

/** `Authorization: Bearer <api key>` → the key's tenant and role, or 401. */
export function authenticate(db: Db): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new HttpError(401, 'missing API key: send Authorization: Bearer <api key>');
    const [row] = await db
      .select({
        apiKeyId: apiKeys.id,
        role: apiKeys.role,
        tenantId: tenants.id,
        tenantName: tenants.name,
        tenantStatus: tenants.status,
      })
      .from(apiKeys)
      .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
      .where(and(eq(apiKeys.keyHash, hashApiKey(match[1]!)), isNull(apiKeys.revokedAt)));
    if (!row) throw new HttpError(401, 'invalid or revoked API key');
    res.locals.caller = row satisfies Caller;
    next();
  };
}

export function requireRole(...roles: ApiRole[]): RequestHandler {
  return (_req, res, next) => {
    const caller = callerOf(res);
    if (!roles.includes(caller.role)) {
      throw new HttpError(403, `role '${caller.role}' may not do this (needs ${roles.join(' or ')})`);
    }
    next();
  };
}
