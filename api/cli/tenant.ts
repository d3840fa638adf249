import { Command, InvalidArgumentError } from 'commander';
import type { ApiRole } from '../../core/authorization';
import type { Db } from '../../db/client';
import { createApiKey, createTenant, findTenantByName, setTenantStatus } from '../../db/tenancy';
import { loadConfig } from '../../lib/config';
import { connectClient } from '../../lib/temporal';
import { deliverPush, enqueuePush } from '../../dispatch/control-pusher';
import { withDb } from './with-db';

const ROLES: ApiRole[] = ['admin', 'member', 'viewer'];

function parseRole(value: string): ApiRole {
  if (!ROLES.includes(value as ApiRole)) throw new InvalidArgumentError(`role must be one of ${ROLES.join(', ')}`);
  return value as ApiRole;
}

function parseName(value: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/i.test(value)) {
    throw new InvalidArgumentError('name must be 1-63 letters, digits, dots, dashes or underscores');
  }
  return value;
}

async function requireTenant(db: Db, name: string): Promise<string> {
  const tenant = await findTenantByName(db, name);
  if (!tenant) throw new Error(`no tenant named '${name}'`);
  return tenant.id;
}

function print(json: boolean, value: Record<string, string>, text: string): void {
  console.log(json ? JSON.stringify(value) : text);
}

const program = new Command('tenant').description('Manage tenants and their API keys').showHelpAfterError();

program
  .command('create')
  .description('create a tenant with the default policy and an API key (printed once)')
  .requiredOption('--name <name>', 'unique tenant name', parseName)
  .option('--role <role>', 'role of the first API key', parseRole, 'admin')
  .option('--json', 'print JSON')
  .action(async (opts: { name: string; role: ApiRole; json?: boolean }) => {
    const created = await withDb(async (db) => {
      if (await findTenantByName(db, opts.name)) throw new Error(`tenant '${opts.name}' already exists`);
      return createTenant(db, { name: opts.name, role: opts.role });
    });
    print(
      Boolean(opts.json),
      { tenantId: created.tenantId, apiKey: created.apiKey },
      `tenant ${opts.name} created: ${created.tenantId}\napi key (${opts.role}, shown once): ${created.apiKey}`,
    );
  });

program
  .command('key')
  .description('issue another API key for a tenant (printed once)')
  .requiredOption('--name <name>', 'tenant name', parseName)
  .option('--role <role>', 'role of the key', parseRole, 'member')
  .option('--json', 'print JSON')
  .action(async (opts: { name: string; role: ApiRole; json?: boolean }) => {
    const key = await withDb(async (db) => createApiKey(db, await requireTenant(db, opts.name), opts.role));
    print(Boolean(opts.json), { apiKey: key.apiKey }, `api key (${opts.role}, shown once): ${key.apiKey}`);
  });

for (const [command, status] of [
  ['suspend', 'suspended'],
  ['activate', 'active'],
] as const) {
  program
    .command(command)
    .description(`mark a tenant ${status}`)
    .requiredOption('--name <name>', 'tenant name', parseName)
    .action(async (opts: { name: string }) => {
      await withDb(async (db) => {
        const tenantId = await requireTenant(db, opts.name);
        const pushId = await db.transaction(async (tx) => {
          await setTenantStatus(tx, tenantId, status);
          return enqueuePush(tx, tenantId, {
            kind: `tenant_${status === 'active' ? 'activated' : 'suspended'}`,
            signal: 'policyChanged',
            target: 'live',
            payload: { actor: 'cli', reason: `tenant ${status}` },
          });
        });
        console.log(`tenant ${opts.name} is ${status}`);
        const queued = 'running runs will be told by the worker as soon as Temporal answers';
        try {
          const config = loadConfig();
          const temporal = await connectClient(config);
          const pushed = await deliverPush({ db, temporal, pushTimeoutMs: config.TEMPORAL_CALL_TIMEOUT_MS }, pushId);
          await temporal.connection.close();
          console.log(pushed.state === 'pushed' ? `told ${pushed.signalledRuns} running run(s) to re-check their policy` : queued);
        } catch {
          console.log(queued);
        }
      });
    });
}

program.parseAsync().catch((err: unknown) => {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
