import { Command } from 'commander';
import type { ApiRole } from '../../core/authorization';
import { setTenantStatus } from '../../db/tenancy';
import { loadConfig } from '../../lib/config';
import { lazyClient } from '../../lib/temporal';
import { commitWithPush, tenantStatusPush } from '../../dispatch/control-pusher';
import { createNamedTenant, createdTenantText, issueKey, issuedKeyText, requireTenant } from './tenant-admin';
import { parseName, parseRole } from './tenant-args';
import { withDb } from './with-db';

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
    const created = await withDb((db) => createNamedTenant(db, opts.name, opts.role));
    print(Boolean(opts.json), created, createdTenantText(opts.name, opts.role, created));
  });

program
  .command('key')
  .description('issue another API key for a tenant (printed once)')
  .requiredOption('--name <name>', 'tenant name', parseName)
  .option('--role <role>', 'role of the key', parseRole, 'member')
  .option('--json', 'print JSON')
  .action(async (opts: { name: string; role: ApiRole; json?: boolean }) => {
    const apiKey = await withDb((db) => issueKey(db, opts.name, opts.role));
    print(Boolean(opts.json), { apiKey }, issuedKeyText(opts.role, apiKey));
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
        const config = loadConfig();
        const temporal = lazyClient(config);
        try {
          const { push } = await commitWithPush(
            { db, temporal, pushTimeoutMs: config.TEMPORAL_CALL_TIMEOUT_MS },
            tenantId,
            (tx) => setTenantStatus(tx, tenantId, status),
            () => tenantStatusPush(status, 'cli'),
          );
          console.log(`tenant ${opts.name} is ${status}`);
          console.log(
            push.state === 'pushed'
              ? `told ${push.signalledRuns} running run(s) to re-check their policy`
              : push.state === 'delivering' || push.state === 'taken'
                ? `told ${push.reachedRuns} of ${push.totalRuns ?? '?'} running run(s) so far; the worker tells the rest now (push ${push.pushId})`
                : 'running runs will be told by the worker as soon as Temporal answers',
          );
        } finally {
          await temporal.connection.close().catch(() => {});
        }
      });
    });
}

program.parseAsync().catch((err: unknown) => {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
