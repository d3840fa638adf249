import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { and, isNull } from 'drizzle-orm';
import { outbox } from '../db/schema';
import { mapLimit } from '../lib/map-limit';
import type { TcpProxy } from '../testing/tcp-proxy';
import { controlFlood } from './control-flood';
import { apiKill, clusterRestart, eventsKill, historyProgress, waitUntilMovedOn } from './process-kills';
import type { Fault, FaultContext } from './fault';
import type { DrillName } from './names';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Between a kill and the worker's restart: the machine is gone for a moment. */
const WORKER_DOWN_MS = 1000;
/** Between a restarted worker and the next kill: runs make progress on it. */
const KILL_EVERY_MS = 3000;
/** How long worker-kill looks for a moment with no skill step running before it kills anyway. */
const AIM_WITHIN_MS = 20_000;
/** temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED */
const ACTIVITY_STARTED = 2;

interface StartedActivities {
  /** Skill steps and domain writes running on the worker about to be killed. */
  skill: number;
  domain: number;
  /** Started on a worker killed earlier, still waiting out their timeouts. */
  stranded: number;
}

/** The run's work (a step, a model turn, a tool call), as opposed to its short writes. */
const SKILL_ACTIVITIES = new Set(['runStep', 'executeStep', 'agentTurn', 'callTool']);

/** Activities of these runs the server has handed to a worker and not seen finish, by where they run. */
async function startedActivities(client: Client, runIds: string[], workerIdentity: string): Promise<StartedActivities> {
  const counts = { skill: 0, domain: 0, stranded: 0 };
  await mapLimit(runIds, 8, async (runId) => {
    const { raw } = await client.workflow.getHandle(runId).describe();
    for (const activity of raw.pendingActivities ?? []) {
      if (activity.state !== ACTIVITY_STARTED) continue;
      if (activity.lastWorkerIdentity !== workerIdentity) counts.stranded += 1;
      else if (SKILL_ACTIVITIES.has(activity.activityType?.name ?? '')) counts.skill += 1;
      else counts.domain += 1;
    }
  });
  return counts;
}

/**
 * Freezes the worker (SIGSTOP), looks at what is running on it, and SIGKILLs it. Frozen, it can
 * take no new task, so what the server says is started on it is what the kill takes down. With
 * `spareSkillSteps` it thaws the worker and tries again until no skill step is among them.
 */
async function killWorker(context: FaultContext, runIds: string[]): Promise<string> {
  const worker = context.stack.worker!;
  // The SDK's default worker identity.
  const identity = `${worker.pid}@${os.hostname()}`;
  const giveUpAt = Date.now() + AIM_WITHIN_MS;
  for (let attempt = 1; ; attempt += 1) {
    process.kill(worker.pid, 'SIGSTOP');
    let started: StartedActivities;
    try {
      // Lets the server record any task it had already handed over before the freeze.
      await sleep(300);
      started = await startedActivities(context.stack.client, runIds, identity);
    } catch (err) {
      process.kill(worker.pid, 'SIGCONT');
      throw err;
    }
    const aimed = context.options.spareSkillSteps;
    if (!aimed || started.skill === 0 || Date.now() > giveUpAt) {
      await worker.kill();
      if (aimed && started.skill > 0) context.fail(`found no moment without a skill step on the worker in ${AIM_WITHIN_MS / 1000}s; killed it anyway`);
      const on = `${started.skill} skill steps and ${started.domain} domain writes running on it`;
      const stranded = started.stranded ? `, ${started.stranded} activities still stranded by an earlier kill` : '';
      return `SIGKILL worker pid ${worker.pid}: ${runIds.length} runs in flight, ${on}${stranded}${aimed ? ` (aimed between skill steps, try ${attempt})` : ''}`;
    }
    process.kill(worker.pid, 'SIGCONT');
    await sleep(100 + Math.random() * 300);
  }
}

/** Cuts the proxy for the outage, then restores it; `beforeRestore` says what the outage held back. */
async function outage(context: FaultContext, proxy: TcpProxy, name: string, beforeRestore = async () => ''): Promise<void> {
  const flying = await context.inFlight();
  const [open, refusedBefore] = [proxy.open, proxy.refused];
  proxy.cut();
  context.note(`cut ${name}: ${open} connections reset, ${flying.length} runs in flight`);
  await sleep(context.options.outageSeconds * 1000);
  const heldBack = await beforeRestore();
  proxy.restore();
  context.note(`restored ${name}; ${proxy.refused - refusedBefore} connection attempts were refused meanwhile${heldBack}`);
}

const CLUSTER_SCRIPT = path.join(__dirname, '..', 'temporal-cluster.sh');

function clusterScript(env: Record<string, string>, ...args: string[]): Promise<unknown> {
  return run('bash', [CLUSTER_SCRIPT, ...args], { env: { ...process.env, ...env } });
}

export const FAULTS: Record<DrillName, Fault> = {
  'control-flood': controlFlood,
  'api-kill': apiKill,
  'events-kill': eventsKill,
  'cluster-restart': clusterRestart,

  'worker-kill': {
    needs: {},
    // Until skill activities heartbeat, a killed skill step waits out its 10-minute start-to-close.
    defaultTimeoutSeconds: 13 * 60,
    describe: (o) =>
      (o.workers ?? 1) > 1
        ? `SIGKILL ${Math.min(o.kills, o.workers! - 1)} of ${o.workers} workers mid-run, for good`
        : `SIGKILL the worker ${o.kills} times mid-run, restarting it after each`,
    async inject(context) {
      // With more than one worker the others take over what the dead one held: nothing is restarted.
      const spares = (context.options.workers ?? 1) - 1;
      const kills = spares > 0 ? Math.min(context.options.kills, spares) : context.options.kills;
      for (let kill = 1; kill <= kills; kill += 1) {
        if (kill > 1) await sleep(KILL_EVERY_MS);
        const flying = await context.inFlight();
        if (flying.length === 0) {
          context.note(`every run had finished before kill ${kill}; no more kills`);
          return;
        }
        context.note(await killWorker(context, flying));
        if (spares > 0) continue;
        await sleep(WORKER_DOWN_MS);
        const startedAt = Date.now();
        const worker = await context.stack.startWorker();
        context.note(`worker restarted: pid ${worker.pid}, polling after ${((Date.now() - startedAt) / 1000).toFixed(1)}s`);
      }
    },
  },

  'history-kill': {
    needs: {},
    defaultTimeoutSeconds: 5 * 60,
    describe: () => "SIGKILL one of the Temporal cluster's two history processes mid-run (its shards move to the other), start it again once every run has moved on",
    async inject(context) {
      const env = context.options.clusterEnv;
      if (!env) {
        context.fail('history-kill needs the Temporal cluster (--cluster): a dev server has one history service in its one process');
        return;
      }
      const { client } = context.stack;
      const flying = await context.inFlight();
      const before = await historyProgress(client, flying);
      await clusterScript(env, 'kill', 'history-2');
      const killedAt = Date.now();
      context.note(`SIGKILL history-2 with ${flying.length} runs in flight; its shards must move to history-1`);
      // When each run in flight at the kill next moved on: its history grew (or it closed), as a
      // live owner of its shard says. A step's own writes to our database do not count: they go on
      // while the run's history service is dead.
      const waits = await waitUntilMovedOn(context, flying, before, killedAt);
      const seconds = (ms: number | undefined) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)}s`);
      if (waits.length < flying.length) context.fail(`${flying.length - waits.length} runs in flight at the history kill never moved on`);
      context.note(
        `recovered: every run in flight at the kill moved on within ${seconds(waits.at(-1))} of it (median ${seconds(waits[Math.floor(waits.length / 2)])}, ${flying.length} runs)`,
      );
      await clusterScript(env, 'start');
      context.note('history-2 started again (./temporal-cluster.sh start)');
    },
  },

  'temporal-restart': {
    needs: { fileBackedTemporal: true },
    // A skill result the worker gave up reporting while the server was down (the SDK retries the
    // completion for a few seconds) is retried only after the step's 10-minute start-to-close.
    defaultTimeoutSeconds: 13 * 60,
    describe: (o) => `stop the Temporal dev server mid-run (SIGTERM), start it again ${o.outageSeconds}s later on the same SQLite file and ports`,
    async inject(context) {
      const { temporal } = context.stack;
      const flying = await context.inFlight();
      const pid = temporal.pid;
      await temporal.stop();
      context.note(`stopped the Temporal dev server (pid ${pid}, SIGTERM) with ${flying.length} runs in flight`);
      await sleep(context.options.outageSeconds * 1000);
      const startedAt = Date.now();
      await temporal.start();
      context.note(`started it again on ${temporal.address} and the same file: pid ${temporal.pid}, healthy after ${((Date.now() - startedAt) / 1000).toFixed(1)}s`);
    },
  },

  'db-outage': {
    needs: { postgresProxy: true },
    defaultTimeoutSeconds: 3 * 60,
    describe: (o) => `cut Postgres for the worker, the API and the relay for ${o.outageSeconds}s, then restore it`,
    inject: (context) => outage(context, context.stack.postgresProxy!, 'Postgres'),
  },

  'redis-outage': {
    needs: { redisProxy: true },
    defaultTimeoutSeconds: 3 * 60,
    describe: (o) => `cut Redis for the relay, the reactor, the alerter and the API for ${o.outageSeconds}s, then restore it`,
    inject: (context) =>
      outage(context, context.stack.redisProxy!, 'Redis', async () => {
        const waiting = await context.stack.database.db.$count(outbox, and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)));
        return `, ${waiting} events waited in the outbox`;
      }),
  },
};
