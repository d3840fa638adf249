import type { Command } from 'commander';
import type { ApiRole } from '../core/authorization';
import { parseName, parseRole } from '../api/cli/tenant-args';
import { contextOf } from './context';

/**
 * `create` and `key` write to the database (DATABASE_URL) as `npm run tenant` does: a tenant's
 * first key cannot come from an API that needs a key. `suspend` and `activate` go through the API
 * with an admin key of the tenant, so the change is pushed to its live runs like any other.
 */
export function registerTenantCommands(program: Command): void {
  const tenants = program.command('tenants').description('tenants and their API keys');

  tenants
    .command('create')
    .description('create a tenant with the default policy and an API key, printed once (needs DATABASE_URL, not an API key)')
    .requiredOption('--name <name>', 'unique tenant name', parseName)
    .option('--role <role>', 'role of the first key: admin, member or viewer', parseRole, 'admin')
    .action(async (options: { name: string; role: ApiRole }, command: Command) => {
      // Loaded here only: the database driver is not worth its start-up time to every other command.
      const { withDb } = await import('../api/cli/with-db');
      const { createNamedTenant, createdTenantText } = await import('../api/cli/tenant-admin');
      const created = await withDb((db) => createNamedTenant(db, options.name, options.role));
      contextOf(command).print(created, () => createdTenantText(options.name, options.role, created));
    });

  tenants
    .command('key')
    .description("issue another API key for a tenant, printed once (needs DATABASE_URL)")
    .requiredOption('--name <name>', 'tenant name', parseName)
    .option('--role <role>', 'role of the key: admin, member or viewer', parseRole, 'member')
    .action(async (options: { name: string; role: ApiRole }, command: Command) => {
      const { withDb } = await import('../api/cli/with-db');
      const { issueKey, issuedKeyText } = await import('../api/cli/tenant-admin');
      const apiKey = await withDb((db) => issueKey(db, options.name, options.role));
      contextOf(command).print({ apiKey }, () => issuedKeyText(options.role, apiKey));
    });

  for (const [action, status] of [
    ['suspend', 'suspended'],
    ['activate', 'active'],
  ] as const) {
    tenants
      .command(action)
      .description(`mark your key's tenant ${status} (admin key); its live runs re-check their policy`)
      .action(async (_options: unknown, command: Command) => {
        const ctx = contextOf(command);
        const answer = await ctx.api.post<{ tenantId: string; status: string; push?: string; signalledRuns?: number }>(`/tenant/${action}`);
        ctx.print(answer, () => {
          const told = answer.push === 'pushed' ? `live runs told: ${answer.signalledRuns ?? 0}` : 'live runs will be told as soon as Temporal answers';
          return `tenant ${answer.tenantId} is ${answer.status}; ${told}`;
        });
      });
  }
}
