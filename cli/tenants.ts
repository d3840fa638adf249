import { InvalidArgumentError, type Command } from 'commander';
import type { ApiRole } from '../core/authorization';
import { parseName, parseRole } from './operator/tenant-args';
import type { Db } from '../db/client';
import { contextOf } from './context';
import { CliError, EXIT } from './exit-codes';

/**
 * `create` and `keys create` are operator actions on the database (DATABASE_URL), not the API: a
 * tenant's first key cannot come from an API that needs a key. `suspend` and `activate` go through
 * the API with an admin key of the tenant, or, given `--name`, straight to the database as an
 * operator; either way the change is pushed to its live runs. `npm run tenant` is a deprecated
 * alias of these commands (cli/operator/tenant.ts).
 */
const DATABASE_HELP = `
Operator action: it writes to the database at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/governed_runs),
not through the API, and needs no API key. Run it where the system's Postgres can be reached.`;

export function registerTenantCommands(program: Command): void {
  const tenants = program.command('tenants').description('tenants and their API keys');

  tenants
    .command('create')
    .description('create a tenant with the default policy and an API key, printed once (operator: needs DATABASE_URL, not an API key)')
    .requiredOption('--name <name>', 'unique tenant name', parseName)
    .option('--role <role>', 'role of the first key: admin, member or viewer', parseRole, 'admin')
    .addHelpText('after', DATABASE_HELP)
    .action(async (options: { name: string; role: ApiRole }, command: Command) => {
      // Loaded here only: the database driver is not worth its start-up time to every other command.
      const { createNamedTenant, createdTenantText } = await import('./operator/tenant-admin');
      const created = await onDatabase((db) => createNamedTenant(db, options.name, options.role));
      contextOf(command).print(created, () => createdTenantText(options.name, options.role, created));
    });

  const issueKeyCommand = (command: Command) =>
    command
      .requiredOption('--name <name>', 'tenant name', parseName)
      .option('--role <role>', 'role of the key: admin, member or viewer', parseRole, 'member')
      .addHelpText('after', DATABASE_HELP)
      .action(async (options: { name: string; role: ApiRole }, command: Command) => {
        const { issueKey, issuedKeyText } = await import('./operator/tenant-admin');
        const apiKey = await onDatabase((db) => issueKey(db, options.name, options.role));
        contextOf(command).print({ apiKey }, () => issuedKeyText(options.role, apiKey));
      });
  const keys = tenants.command('keys').description("a tenant's API keys (operator: needs DATABASE_URL)");
  issueKeyCommand(keys.command('create').description('issue another API key for a tenant, printed once (operator: needs DATABASE_URL)'));
  // The name it had before `keys create`; kept working, no longer shown.
  issueKeyCommand(tenants.command('key', { hidden: true }).description('the same as tenants keys create'));

  tenants
    .command('limit')
    .description("set how many API requests each of a tenant's keys may make per minute (operator: needs DATABASE_URL)")
    .requiredOption('--name <name>', 'tenant name', parseName)
    .requiredOption('--requests-per-minute <n|default>', "a whole number from 1, or 'default' for the deployment's API_RATE_LIMIT_PER_MINUTE", parseRequestsPerMinute)
    .addHelpText('after', DATABASE_HELP)
    .action(async (options: { name: string; requestsPerMinute: number | 'default' }, command: Command) => {
      const { setRequestLimitByName } = await import('./operator/tenant-admin');
      const perMinute = options.requestsPerMinute === 'default' ? null : options.requestsPerMinute;
      const changed = await onDatabase((db) => setRequestLimitByName(db, options.name, perMinute));
      contextOf(command).print({ tenantId: changed.tenantId, requestsPerMinute: changed.requestsPerMinute }, () => changed.text);
    });

  for (const action of ['pause', 'resume'] as const) {
    const command = tenants.command(action);
    if (action === 'pause') command.option('--incident <id>', 'the incident the pause is about (one of the tenant\'s)');
    command
      .description(
        action === 'pause'
          ? "pause every live run of your key's tenant (admin key; MANUAL_PAUSE, tagged tenant-pause)"
          : "resume the runs your tenant's tenant-wide pause paused (admin key)",
      )
      .option('--reason <text>', 'why, recorded on every run')
      .option('--wait', 'then follow the push until every live run was reached, printing its progress')
      .action(async (options: { reason?: string; incident?: string; wait?: boolean }, command: Command) => {
        const ctx = contextOf(command);
        const body = { ...(options.reason ? { reason: options.reason } : {}), ...(action === 'pause' && options.incident ? { incidentId: options.incident } : {}) };
        const answer = await ctx.api.post<PushAnswer & { tenantId: string }>(`/tenant/${action}`, body);
        ctx.print(answer, () => `tenant ${action}: ${pushText(answer)}`);
        if (options.wait && answer.push !== 'pushed') await followPush(ctx, answer.pushId);
      });
  }

  tenants
    .command('push')
    .argument('[id]', 'a push id (default: the latest)')
    .description("how far a change to your tenant (a policy, a status, a tenant-wide pause or resume) got on its way to the live runs (admin key)")
    .option('--wait', 'follow it until every live run was reached')
    .action(async (id: string | undefined, options: { wait?: boolean }, command: Command) => {
      const ctx = contextOf(command);
      const push = id ? await ctx.api.get<PushView>(`/tenant/pushes/${encodeURIComponent(id)}`) : (await ctx.api.get<{ pushes: PushView[] }>('/tenant/pushes', { limit: '1' })).pushes[0];
      if (!push) {
        ctx.print({ pushes: [] }, () => 'no pushes yet');
        return;
      }
      ctx.print(push, () => `push ${push.pushId} (${push.kind}): ${progressText(push)}`);
      if (options.wait && push.state !== 'pushed') await followPush(ctx, push.pushId);
    });

  for (const [action, status] of [
    ['suspend', 'suspended'],
    ['activate', 'active'],
  ] as const) {
    tenants
      .command(action)
      .description(`mark your key's tenant ${status} (admin key), or with --name any tenant (operator: DATABASE_URL); its live runs re-check their policy`)
      .option('--name <name>', 'the tenant, changed in the database at DATABASE_URL instead of through the API (operator)', parseName)
      .action(async (options: { name?: string }, command: Command) => {
        const ctx = contextOf(command);
        if (options.name) {
          const { setStatusByName } = await import('./operator/tenant-admin');
          const changed = await onDatabase((db) => setStatusByName(db, options.name!, status));
          ctx.print({ tenantId: changed.tenantId, status: changed.status }, () => changed.text);
          return;
        }
        const answer = await ctx.api.post<PushAnswer & { tenantId: string; status: string }>(`/tenant/${action}`);
        ctx.print(answer, () => {
          const told =
            answer.push === 'pushed'
              ? `live runs told: ${answer.signalledRuns ?? 0}`
              : answer.push === 'delivering'
                ? `live runs told so far: ${answer.reachedRuns} of ${answer.totalRuns ?? '?'} (push ${answer.pushId}; 'governed tenants push ${answer.pushId}' follows it)`
                : 'live runs will be told as soon as Temporal answers';
          return `tenant ${answer.tenantId} is ${answer.status}; ${told}`;
        });
      });
  }
}

/** What the API answers about a tenant-wide change (api/contract.ts `push`). */
interface PushAnswer {
  push: 'pushed' | 'delivering' | 'queued';
  pushId: number;
  totalRuns: number | null;
  reachedRuns: number;
  signalledRuns: number;
  skippedRuns?: { runId: string; reason: string }[];
  note?: string;
}

/** `GET /api/v1/tenant/pushes/:id`. */
interface PushView {
  pushId: number;
  kind: string;
  state: 'pushed' | 'delivering' | 'waiting';
  totalRuns: number | null;
  reachedRuns: number;
  signalledRuns: number;
  skippedCount: number;
  nextAttemptAt: string | null;
  lastError: string | null;
}

function pushText(answer: PushAnswer): string {
  const skipped = answer.skippedRuns?.length ? `; skipped ${answer.skippedRuns.length}: ${answer.skippedRuns.map((s) => `${s.runId} (${s.reason})`).join('; ')}` : '';
  if (answer.push === 'pushed') return `every live run reached: ${answer.signalledRuns} signalled of ${answer.totalRuns ?? answer.signalledRuns}${skipped} (push ${answer.pushId})`;
  if (answer.push === 'delivering') {
    return `${answer.reachedRuns} of ${answer.totalRuns ?? '?'} live runs reached so far; the rest are being signalled now (push ${answer.pushId}; 'governed tenants push ${answer.pushId} --wait' follows it)`;
  }
  return `queued: live runs will be signalled as soon as Temporal answers (push ${answer.pushId})`;
}

function progressText(push: PushView): string {
  const of = `${push.reachedRuns} of ${push.totalRuns ?? '?'} live runs reached, ${push.signalledRuns} signalled, ${push.skippedCount} skipped`;
  if (push.state === 'pushed') return `pushed: ${of}`;
  if (push.state === 'delivering') return `delivering: ${of}`;
  return `waiting (next attempt ${push.nextAttemptAt ?? 'soon'}${push.lastError ? `; last error: ${push.lastError}` : ''}): ${of}`;
}

/** Polls the push until it is delivered, printing each change of its progress (one JSON line each under --json). */
async function followPush(ctx: ReturnType<typeof contextOf>, pushId: number): Promise<void> {
  let last = '';
  for (;;) {
    const push = await ctx.api.get<PushView>(`/tenant/pushes/${pushId}`);
    const line = progressText(push);
    if (line !== last) ctx.print(push, () => `push ${pushId}: ${line}`);
    last = line;
    if (push.state === 'pushed') return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Socket-level failures: nothing answered at DATABASE_URL. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'CONNECT_TIMEOUT', '3D000', '28P01', '28000']);

/** One connection to DATABASE_URL; a database that cannot be reached is said to be one, naming the variable (exit 3). */
async function onDatabase<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const { withDb } = await import('./operator/with-db');
  try {
    return await withDb(fn);
  } catch (err) {
    // drizzle wraps the driver's error ("Failed query: …") in its cause.
    let cause: unknown = err;
    while (cause instanceof Error && !UNREACHABLE_CODES.has(String((cause as { code?: unknown }).code)) && cause.cause) cause = cause.cause;
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) {
      const url = databaseUrlShown();
      throw new CliError(
        `cannot use the database at ${url} (${code}${(cause as Error).message ? `: ${(cause as Error).message}` : ''}). This is an operator action on the database, not the API: set DATABASE_URL to the system's Postgres`,
        EXIT.UNREACHABLE,
      );
    }
    throw err;
  }
}

/** DATABASE_URL without its password. */
function databaseUrlShown(): string {
  const raw = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/governed_runs';
  try {
    const url = new URL(raw);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'DATABASE_URL';
  }
}

// Commander turns a parser's null into '', so 'default' stays a word until the action.
function parseRequestsPerMinute(value: string): number | 'default' {
  if (value === 'default') return value;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > 1_000_000) {
    throw new InvalidArgumentError("a whole number from 1 to 1000000, or 'default'");
  }
  return n;
}
