import { and, desc, eq, sql } from 'drizzle-orm';
import type { ApiRole, TenantStatus } from '../core/authorization';
import { DEFAULT_POLICY, type PolicyRules } from '../core/policy';
import { generateApiKey, hashApiKey } from '../lib/api-keys';
import type { Db, DbOrTx } from './client';
import { apiKeys, policies, tenants } from './schema';

export interface CurrentPolicy {
  version: number;
  rules: PolicyRules;
}

export async function currentPolicy(db: DbOrTx, tenantId: string): Promise<CurrentPolicy> {
  const [row] = await db
    .select({ version: policies.version, rules: policies.rules })
    .from(policies)
    .where(eq(policies.tenantId, tenantId))
    .orderBy(desc(policies.version))
    .limit(1);
  if (!row) throw new Error(`tenant ${tenantId} has no policy`);
  return { version: row.version, rules: { ...DEFAULT_POLICY, ...row.rules } };
}

export async function policyVersion(db: DbOrTx, tenantId: string, version: number): Promise<CurrentPolicy | undefined> {
  const [row] = await db
    .select({ version: policies.version, rules: policies.rules })
    .from(policies)
    .where(and(eq(policies.tenantId, tenantId), eq(policies.version, version)));
  return row && { version: row.version, rules: { ...DEFAULT_POLICY, ...row.rules } };
}

export async function tenantStatus(db: DbOrTx, tenantId: string): Promise<TenantStatus> {
  const [row] = await db.select({ status: tenants.status }).from(tenants).where(eq(tenants.id, tenantId));
  if (!row) throw new Error(`tenant ${tenantId} does not exist`);
  return row.status;
}

/** Stores `rules` as the tenant's next policy version. */
export async function savePolicy(tx: DbOrTx, tenantId: string, rules: PolicyRules, changedBy: string): Promise<CurrentPolicy> {
  // Serialises concurrent changes of one tenant's policy (within the caller's transaction).
  await tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).for('update');
  const { version } = await currentPolicy(tx, tenantId);
  await tx.insert(policies).values({ tenantId, version: version + 1, rules, changedBy });
  return { version: version + 1, rules };
}

/** A new tenant with policy version 1 and its first API key; the key is returned once, never stored. */
export async function createTenant(
  db: Db,
  input: { name: string; role?: ApiRole; policy?: Partial<PolicyRules> },
): Promise<{ tenantId: string; apiKey: string; apiKeyId: string }> {
  return db.transaction(async (tx) => {
    const [tenant] = await tx.insert(tenants).values({ name: input.name }).returning({ id: tenants.id });
    await tx.insert(policies).values({
      tenantId: tenant!.id,
      version: 1,
      rules: { ...DEFAULT_POLICY, ...input.policy },
      changedBy: 'tenant:create',
    });
    const key = await insertApiKey(tx, tenant!.id, input.role ?? 'admin');
    return { tenantId: tenant!.id, ...key };
  });
}

export async function createApiKey(db: DbOrTx, tenantId: string, role: ApiRole): Promise<{ apiKey: string; apiKeyId: string }> {
  return insertApiKey(db, tenantId, role);
}

async function insertApiKey(db: DbOrTx, tenantId: string, role: ApiRole): Promise<{ apiKey: string; apiKeyId: string }> {
  const apiKey = generateApiKey();
  const [row] = await db
    .insert(apiKeys)
    .values({ tenantId, keyHash: hashApiKey(apiKey), keyPrefix: apiKey.slice(0, 8), role })
    .returning({ id: apiKeys.id });
  return { apiKey, apiKeyId: row!.id };
}

export async function findTenantByName(db: DbOrTx, name: string): Promise<{ id: string; status: TenantStatus } | undefined> {
  const [row] = await db.select({ id: tenants.id, status: tenants.status }).from(tenants).where(eq(tenants.name, name));
  return row;
}

export async function setTenantStatus(db: DbOrTx, tenantId: string, status: TenantStatus): Promise<void> {
  await db.update(tenants).set({ status, updatedAt: sql`now()` }).where(eq(tenants.id, tenantId));
}

/** A tenant's own allowance of API requests per key per minute; null gives it back the deployment's. */
export async function setTenantRequestsPerMinute(db: DbOrTx, tenantId: string, requestsPerMinute: number | null): Promise<void> {
  await db.update(tenants).set({ requestsPerMinute, updatedAt: sql`now()` }).where(eq(tenants.id, tenantId));
}
