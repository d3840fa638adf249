import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { and, inArray, isNull, like, sql } from 'drizzle-orm';
import { outbox, systemIncidents } from '../db/schema';
import { RELAY_LOCK } from '../events/relay';
import { mapLimit } from '../lib/map-limit';
import { deliveryLogKey } from './deliveries';
import type { Fault, FaultContext } from './fault';
import type { ProductChild } from './stack';

// Drills that SIGKILL one copy of a process the product runs in copies (an API, a relay and
// reactor), and the one that stops the whole Temporal cluster: each says how long the survivors
// took to carry on.

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number | undefined) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)}s`);

/** How long events-kill watches for a relay in a batch before it gives up aiming. */
const AIM_WITHIN_MS = 20_000;

/**
 * Each run's history length, as the history service that owns its shard answers it (2 s at most),
 * or -1 once closed; absent when it did not answer: its shard has no live owner yet.
 */
export async function historyProgress(client: Client, runIds: string[]): Promise<Map<string, number>> {
  const progress = new Map<string, number>();
  await mapLimit(runIds, 8, async (runId) => {
    try {
      const { raw, status } = await client.withDeadline(Date.now() + 2000, () => client.workflow.getHandle(runId).describe());
      progress.set(runId, status.name === 'RUNNING' ? Number(raw.workflowExecutionInfo?.historyLength ?? 0) : -1);
    } catch {
      // unanswered
    }
  });
  return progress;
}

/**
 * Polls until each run in `flying` moved on from `before` (its history grew, or it closed), or the
 * deadline; for each, how long after `since` it did.
 */
export async function waitUntilMovedOn(context: FaultContext, flying: string[], before: Map<string, number>, since: number): Promise<number[]> {
  const movedOn = new Map<string, number>();
  while (movedOn.size < flying.length && Date.now() < context.deadline) {
    const pending = flying.filter((id) => !movedOn.has(id));
    const now = await historyProgress(context.stack.client, pending);
    for (const id of pending) {
      const length = now.get(id);
      if (length !== undefined && (length === -1 || length > (before.get(id) ?? 0))) movedOn.set(id, Date.now() - since);
    }
    if (movedOn.size < flying.length) await sleep(100);
  }
  return [...movedOn.values()].sort((a, b) => a - b);
}

/** Polls `done` every 50 ms until it holds or `giveUpAt` passes; how long after `since` it held, or undefined. */
async function timeUntil(giveUpAt: number, since: number, done: () => Promise<boolean>): Promise<number | undefined> {
  while (Date.now() < giveUpAt) {
    if (await done()) return Date.now() - since;
    await sleep(50);
  }
  return undefined;
}

/**
 * The events process whose Postgres session holds the relay's lock right now (it is in a batch), and
 * the drill's events committed and not yet published at that moment, by outbox id.
 */
async function relayLockHolder(context: FaultContext): Promise<{ holder: string | null; waiting: number[] }> {
  // A bigint advisory key shows in pg_locks as its high and low 32 bits.
  const high = Math.floor(RELAY_LOCK / 2 ** 32);
  const low = RELAY_LOCK % 2 ** 32;
  // No array types on our connections (db/client.ts): the ids come back as text.
  const [row] = await context.stack.database.db.execute<{ holder: string | null; waiting: string | null }>(sql`
    select (select a.application_name
              from pg_locks l join pg_stat_activity a on a.pid = l.pid
             where l.locktype = 'advisory' and l.granted and l.classid = ${high} and l.objid = ${low} and l.objsubid = 1
               and l.database = (select oid from pg_database where datname = current_database())) as holder,
           (select string_agg(o.id::text, ',') from ${outbox} o
             where o.published_at is null and o.retracted_at is null and o.run_id in (${sql.join(context.runIds.map((id) => sql`${id}::uuid`), sql`, `)})) as waiting`);
  return { holder: row?.holder ?? null, waiting: row?.waiting ? row.waiting.split(',').map(Number) : [] };
}

export const apiKill: Fault = {
  needs: { apiProcesses: 2 },
  duringSubmits: true,
  defaultTimeoutSeconds: 5 * 60,
  describe: (o) => `SIGKILL one of ${o.apis ?? 2} API processes while submits go to each in turn; a submit that finds no API goes to the next with the same Idempotency-Key`,
  async inject(context) {
    const { apis } = context.stack;
    if (apis.length < 2) {
      context.fail('api-kill needs two API processes or more (--apis)');
      return;
    }
    const victim = apis.at(-1)!;
    // Half the submits out; the rest still go to the dead API's address in turn.
    const half = Math.max(1, Math.floor(context.submitsPlanned / 2));
    while (context.submitsSent() < half) await sleep(10);
    const sent = context.submitsSent();
    await victim.kill();
    context.note(`SIGKILL ${victim.name} (pid ${victim.pid}) after ${sent} of ${context.submitsPlanned} submits sent; its address stays in the rotation`);
  },
};

export const eventsKill: Fault = {
  needs: { eventProcesses: true, eventServices: 2 },
  defaultTimeoutSeconds: 5 * 60,
  describe: () =>
    "SIGKILL, for good, the one of two relay-and-reactor processes caught holding the relay's lock in a batch; the other must take over the relay and the dead reactor's pending events",
  async inject(context) {
    const { stack } = context;
    const { EVENT_STREAM: stream, REACTOR_GROUP: group, REACTOR_CLAIM_IDLE_SECONDS: claimIdle, REACTOR_HEARTBEAT_INTERVAL_SECONDS: beat, REACTOR_HEARTBEAT_MISS_THRESHOLD: misses } =
      stack.eventsConfig;
    const processes = stack.eventProcesses;
    if (processes.length < 2) {
      context.fail('events-kill needs two relay-and-reactor processes or more');
      return;
    }
    // Caught in the act: the relay's advisory lock is held only for a batch's transaction; aimed at
    // a batch with events of the drill's to publish, unless none comes.
    let victim: ProductChild | undefined;
    let waitingIds: number[] = [];
    const giveUpAt = Date.now() + AIM_WITHIN_MS;
    let looks = 0;
    for (; !victim && Date.now() < giveUpAt; looks += 1) {
      const { holder, waiting } = await relayLockHolder(context);
      const found = processes.find((p) => p.name === holder);
      if (found && (waiting.length > 0 || Date.now() > giveUpAt - AIM_WITHIN_MS / 2)) [victim, waitingIds] = [found, waiting];
    }
    const caught = victim !== undefined;
    victim ??= processes[0]!;
    const survivors = processes.filter((p) => p !== victim);
    await victim.kill();
    const killedAt = Date.now();
    const pendingOf = async (consumer: string) => ((await stack.redis.call('XPENDING', stream, group, '-', '+', '1000', consumer)) as unknown[]).length;
    const pending = await pendingOf(victim.name);
    const deliveredAtKill = await stack.redis.llen(deliveryLogKey(stream));
    const flying = await context.inFlight();
    if (!caught) context.fail(`found no moment when an events process held the relay's lock in ${AIM_WITHIN_MS / 1000}s (${looks} looks); killed ${victim.name} anyway`);
    context.note(
      `SIGKILL ${victim.name} (pid ${victim.pid})${caught ? ` holding the relay's lock in a batch (look ${looks})` : ''}: ${flying.length} runs in flight, ${waitingIds.length} events committed and not yet published, ${pending} read by its reactor and not acknowledged`,
    );

    // The relay: what was waiting at the kill goes out through the survivor (the lock died with the
    // session). The reactor: a survivor handles an event after the kill (when any comes), the dead
    // one's pending events are claimed, its silence is reported. Each watched at once, for as long
    // as a claim may take and then some.
    const giveUp = Math.min(context.deadline, killedAt + (claimIdle + 3 * beat * misses) * 1000);
    const [relayed, handled, claimed, reported] = await Promise.all([
      timeUntil(giveUp, killedAt, async () => waitingIds.length === 0 || (await stack.database.db.$count(outbox, and(inArray(outbox.id, waitingIds), isNull(outbox.publishedAt)))) === 0),
      timeUntil(giveUp, killedAt, async () => (await stack.redis.llen(deliveryLogKey(stream))) > deliveredAtKill),
      timeUntil(giveUp, killedAt, async () => (await pendingOf(victim.name)) === 0),
      timeUntil(giveUp, killedAt, async () => (await stack.database.db.$count(systemIncidents, like(systemIncidents.dedupeKey, `reactor-unhealthy:${victim.name}:%`))) > 0),
    ]);
    if (relayed === undefined) context.fail(`events committed before the kill were still in the outbox at the drill's timeout`);
    if (claimed === undefined) context.fail(`the killed reactor's pending events were never claimed`);
    if (reported === undefined) context.fail(`the killed reactor's silence was never reported`);
    context.note(
      `taken over by ${survivors.map((s) => s.name).join(', ')}: the ${waitingIds.length} events waiting at the kill published within ${seconds(relayed)}; ${handled === undefined ? 'no event came to handle after it' : `an event handled by a survivor within ${seconds(handled)}`}; the dead reactor's ${pending} pending events claimed within ${seconds(claimed)} (claim idle ${claimIdle}s); its silence reported within ${seconds(reported)} (${misses} missed ${beat}s beats)`,
    );
  },
};

const CLUSTER_SCRIPT = path.join(__dirname, '..', 'temporal-cluster.sh');

export const clusterRestart: Fault = {
  needs: {},
  // A step's result the worker could not report while the cluster was down is retried after its
  // heartbeat timeout (core/step-heartbeat.ts); a domain write's, after its start-to-close.
  defaultTimeoutSeconds: 8 * 60,
  describe: (o) => `stop the whole Temporal cluster mid-batch (./temporal-cluster.sh stop), start it again ${o.outageSeconds}s later`,
  async inject(context) {
    const env = context.options.clusterEnv;
    if (!env) {
      context.fail('cluster-restart needs the Temporal cluster (--cluster); on a dev server it is temporal-restart');
      return;
    }
    const script = (...args: string[]) => run('bash', [CLUSTER_SCRIPT, ...args], { env: { ...process.env, ...env } });
    const flying = await context.inFlight();
    const before = await historyProgress(context.stack.client, flying);
    const stopping = Date.now();
    await script('stop');
    context.note(`stopped the Temporal cluster (5 services, SIGTERM) with ${flying.length} runs in flight, in ${seconds(Date.now() - stopping)}`);
    await sleep(context.options.outageSeconds * 1000);
    const startedAt = Date.now();
    await script('start');
    const upAt = Date.now();
    context.note(`started it again (./temporal-cluster.sh start): up after ${seconds(upAt - startedAt)}`);
    const waits = await waitUntilMovedOn(context, flying, before, upAt);
    if (waits.length < flying.length) context.fail(`${flying.length - waits.length} runs in flight at the stop never moved on after the start`);
    const last = waits.at(-1);
    context.note(
      `recovered: every run in flight at the stop moved on within ${seconds(last)} of the cluster being up (median ${seconds(waits[Math.floor(waits.length / 2)])}, ${flying.length} runs; ${seconds(last === undefined ? undefined : upAt + last - stopping)} after the stop)`,
    );
  },
};
