import type { ApiRole } from '../../core/authorization';
import type { Db } from '../../db/client';
import { createApiKey, createTenant, findTenantByName, setTenantRequestsPerMinute, setTenantStatus } from '../../db/tenancy';
import { commitWithPush, tenantStatusPush } from '../../dispatch/control-pusher';
import { loadConfig } from '../../lib/config';
import { lazyClient } from '../../lib/temporal';

/**
 * Tenant operations straight on the database: creating a tenant needs no API key, so no API can
 * do it. `governed tenants create`, `tenants keys create` and `tenants suspend|activate --name`
 * (and `npm run tenant`, their deprecated alias) run them.
 */

export async function requireTenant(db: Db, name: string): Promise<string> {
  const tenant = await findTenantByName(db, name);
  if (!tenant) throw new Error(`no tenant named '${name}'`);
  return tenant.id;
}

/** A new tenant with the default policy and its first key (returned once, never stored). */
export async function createNamedTenant(db: Db, name: string, role: ApiRole): Promise<{ tenantId: string; apiKey: string }> {
  if (await findTenantByName(db, name)) throw new Error(`tenant '${name}' already exists`);
  const created = await createTenant(db, { name, role });
  return { tenantId: created.tenantId, apiKey: created.apiKey };
}

export async function issueKey(db: Db, name: string, role: ApiRole): Promise<string> {
  return (await createApiKey(db, await requireTenant(db, name), role)).apiKey;
}

export function createdTenantText(name: string, role: ApiRole, created: { tenantId: string; apiKey: string }): string {
  return `tenant ${name} created: ${created.tenantId}\napi key (${role}, shown once): ${created.apiKey}`;
}

export function issuedKeyText(role: ApiRole, apiKey: string): string {
  return `api key (${role}, shown once): ${apiKey}`;
}

/** An operator's suspend or activate by tenant name, pushed to its live runs like the API's; answers what to print. */
export async function setStatusByName(db: Db, name: string, status: 'suspended' | 'active'): Promise<{ tenantId: string; status: string; text: string }> {
  const tenantId = await requireTenant(db, name);
  const config = loadConfig();
  const temporal = lazyClient(config);
  try {
    const { push } = await commitWithPush(
      { db, temporal, pushTimeoutMs: config.TEMPORAL_CALL_TIMEOUT_MS },
      tenantId,
      (tx) => setTenantStatus(tx, tenantId, status),
      () => tenantStatusPush(status, 'cli'),
    );
    const told =
      push.state === 'pushed'
        ? `told ${push.signalledRuns} running run(s) to re-check their policy`
        : push.state === 'delivering' || push.state === 'taken'
          ? `told ${push.reachedRuns} of ${push.totalRuns ?? '?'} running run(s) so far; the worker tells the rest now (push ${push.pushId})`
          : 'running runs will be told by the worker as soon as Temporal answers';
    return { tenantId, status, text: `tenant ${name} is ${status}\n${told}` };
  } finally {
    await temporal.connection.close().catch(() => {});
  }
}

/** `governed tenants limit`: the tenant's requests per API key per minute, or the deployment's again (`null`). */
export async function setRequestLimitByName(db: Db, name: string, requestsPerMinute: number | null): Promise<{ tenantId: string; requestsPerMinute: number | null; text: string }> {
  const tenantId = await requireTenant(db, name);
  await setTenantRequestsPerMinute(db, tenantId, requestsPerMinute);
  const allowance = requestsPerMinute === null ? `the deployment's (API_RATE_LIMIT_PER_MINUTE, ${loadConfig().API_RATE_LIMIT_PER_MINUTE})` : String(requestsPerMinute);
  return { tenantId, requestsPerMinute, text: `tenant ${name}: each API key may make ${allowance} requests per minute` };
}
