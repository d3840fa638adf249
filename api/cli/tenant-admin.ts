import type { ApiRole } from '../../core/authorization';
import type { Db } from '../../db/client';
import { createApiKey, createTenant, findTenantByName } from '../../db/tenancy';

/**
 * Tenant operations straight on the database: creating a tenant needs no API key, so no API can
 * do it. Shared by `npm run tenant` and `governed tenants`.
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
