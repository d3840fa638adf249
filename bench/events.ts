/**
 * Benchmark of the event path on this machine: outbox commit → NOTIFY → relay → Redis Stream →
 * reactor → handler, in a fresh Postgres database (migrated, dropped at the end) and on a stream of
 * its own (`governed:bench:<ts>`, deleted at the end with its `:dead`, `:reactors` and `:handled:*`
 * keys). The relay and the reactor are the product's (`events/relay.ts`, `events/reactor.ts`),
 * wired as `events/service.ts` wires them, with one `*` handler that only records when it ran.
 *
 *   npm run bench -- events [--events 1000] [--rate 200] [--burst 5000] [--batch 50] [--producers 4]
 *                           [--warmup 50] [--timeout 120]
 *   npx tsx bench/events.ts [same options]
 *
 * 1. Latency: `--events` events, each committed in its own transaction (`writeEvents` in
 *    `db.transaction`, as producers do), one at a time, paced at `--rate` per second (0: back to
 *    back). Commit → handler p50/p90/p99/max, and the same path cut into hops (NOTIFY delivery, relay
 *    wake, relay transaction up to XADD, XADD, XREADGROUP, handled-key check, SET + XACK), stamped by
 *    wrapping the relay's and reactor's clients in this process.
 * 2. Throughput: a burst of `--burst` events committed as fast as possible by `--producers`
 *    concurrent producers, `--batch` events per transaction; events/s from the first commit to the
 *    last handled (relay + reactor). Then, with both stopped, the same number committed as a backlog:
 *    relay-only rate (`relay.drain()` publishing it) and reactor-only rate (the reactor started on
 *    the published backlog, until the last is handled).
 * Prints a table, the process's memory and the machine's load average (other benchmarks may share it).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { and, count, isNull } from 'drizzle-orm';
import Redis from 'ioredis';
import postgres from 'postgres';
import { Registry } from 'prom-client';
import type { EventTopic, OutboundEvent, StreamEvent } from '../core/events';
import { connectDatabase, type Database } from '../db/client';
import { runMigrations } from '../db/migrate';
import { writeEvents } from '../db/outbox';
import { outbox } from '../db/schema';
import { createReactor, heartbeatKey, type Reactor } from '../events/reactor';
import { createRelay, OUTBOX_CHANNEL, type Relay } from '../events/relay';
import { createLogger } from '../lib/logger';
import { createEventMetrics } from '../lib/metrics';

/** As `events/service.ts` configures its clients: fail fast when Redis is down. */
const REDIS_OPTIONS = { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true } as const;
const TOPIC: EventTopic = 'run.started';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

function summarize(values: number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.at(-1)!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

const ms = (n: number) => n.toFixed(n < 10 ? 2 : 1);
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

function memory(label: string): void {
  const m = process.memoryUsage();
  console.log(`  memory ${label}: rss ${mib(m.rss)}, heap used ${mib(m.heapUsed)}`);
}

function sleep(msToWait: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msToWait));
}

/** Rejects with `what` when `promise` has not settled within `timeoutMs`. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: () => string | Promise<string>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  // Abandoned on a timeout, it may still fail later: that must not crash the cleanup.
  promise.catch(() => {});
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      Promise.resolve()
        .then(what)
        .then(
          (message) => reject(new Error(`timed out after ${timeoutMs} ms: ${message}`)),
          (err: unknown) => reject(new Error(`timed out after ${timeoutMs} ms (and could not describe why: ${String(err)})`)),
        );
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The events of one phase, by sequence number (`bench:<phase>:<seq>` is each one's dedupe key). */
class Phase {
  readonly handledAt = new Map<number, number>();
  readonly idOf = new Map<number, number>();
  duplicates = 0;
  /** Events handled after one with a higher outbox id: the stream is not in outbox order. */
  inversions = 0;
  lastAt = 0;
  private lastId = 0;
  private waiter: (() => void) | null = null;

  constructor(
    readonly name: string,
    readonly expected: number,
  ) {}

  key(seq: number): string {
    return `bench:${this.name}:${seq}`;
  }

  record(seq: number, id: number, at: number): void {
    if (this.handledAt.has(seq)) {
      this.duplicates += 1;
      return;
    }
    this.handledAt.set(seq, at);
    this.idOf.set(seq, id);
    if (id < this.lastId) this.inversions += 1;
    this.lastId = Math.max(this.lastId, id);
    this.lastAt = at;
    if (this.handledAt.size >= this.expected) this.waiter?.();
  }

  done(): Promise<void> {
    if (this.handledAt.size >= this.expected) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

/** Per outbox id: when each hop of the relay and the reactor happened (performance.now()). */
interface Hops {
  notifies: number[];
  txBegin: Map<number, number>;
  xaddSent: Map<number, number>;
  xaddAcked: Map<number, number>;
  txEnd: Map<number, number>;
  read: Map<number, number>;
  acked: Map<number, number>;
}

function idField(fields: readonly unknown[]): number | null {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'id') return Number(fields[i + 1]);
  return null;
}

/**
 * Stamps the relay's transactions and XADDs, and the reactor's XREADGROUP replies and XACKs, by
 * wrapping the clients they are given (own properties shadowing the prototypes' methods).
 */
function instrument(relayDb: Database, relayRedis: Redis, reactorRedis: Redis, hops: Hops): void {
  let txIds: number[] | null = null;
  let txBegin = 0;
  const transaction = relayDb.db.transaction.bind(relayDb.db);
  relayDb.db.transaction = (async (...args: Parameters<typeof transaction>) => {
    const ids: number[] = [];
    txIds = ids;
    txBegin = performance.now();
    try {
      return await transaction(...args);
    } finally {
      const end = performance.now();
      for (const id of ids) hops.txEnd.set(id, end);
      txIds = null;
    }
  }) as typeof relayDb.db.transaction;

  const pipeline = relayRedis.pipeline.bind(relayRedis);
  (relayRedis as any).pipeline = (...args: unknown[]) => {
    const p = (pipeline as (...a: unknown[]) => any)(...args);
    const ids: number[] = [];
    const xadd = p.xadd.bind(p);
    p.xadd = (...xargs: unknown[]) => {
      const star = xargs.indexOf('*');
      const id = idField(xargs.slice(star + 1));
      if (id !== null) ids.push(id);
      return xadd(...xargs);
    };
    const exec = p.exec.bind(p);
    p.exec = async (...eargs: unknown[]) => {
      const sent = performance.now();
      const begin = txBegin;
      const inTx = txIds;
      const result = await exec(...eargs);
      const acked = performance.now();
      for (const id of ids) {
        hops.xaddSent.set(id, sent);
        hops.xaddAcked.set(id, acked);
        if (inTx) {
          hops.txBegin.set(id, begin);
          inTx.push(id);
        }
      }
      return result;
    };
    return p;
  };

  const messageIds = new Map<string, number>();
  const xreadgroup = (reactorRedis.xreadgroup as (...a: unknown[]) => Promise<unknown>).bind(reactorRedis);
  (reactorRedis as any).xreadgroup = async (...args: unknown[]) => {
    const reply = (await xreadgroup(...args)) as [string, [string, string[] | null][]][] | null;
    const at = performance.now();
    for (const [messageId, fields] of reply?.[0]?.[1] ?? []) {
      const id = fields ? idField(fields) : null;
      if (id === null) continue;
      messageIds.set(messageId, id);
      if (!hops.read.has(id)) hops.read.set(id, at);
    }
    return reply;
  };
  const call = (reactorRedis.call as (...a: unknown[]) => Promise<unknown>).bind(reactorRedis);
  (reactorRedis as any).call = async (...args: unknown[]) => {
    const result = await call(...args);
    if (args[0] === 'XACK') {
      const id = messageIds.get(String(args[3]));
      if (id !== undefined) {
        hops.acked.set(id, performance.now());
        messageIds.delete(String(args[3]));
      }
    }
    return result;
  };
}

export async function benchEvents(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: 'string', default: '1000' },
      /** Latency events per second; 0 sends them back to back (each still waits for its commit). */
      rate: { type: 'string', default: '200' },
      burst: { type: 'string', default: '5000' },
      /** Events per transaction in the burst and the backlog. */
      batch: { type: 'string', default: '50' },
      /** Concurrent producers of the burst and the backlog. */
      producers: { type: 'string', default: '4' },
      warmup: { type: 'string', default: '50' },
      /** Seconds any one phase may take before the benchmark gives up. */
      timeout: { type: 'string', default: '120' },
    },
  });
  const EVENTS = Number(values.events);
  const RATE = Number(values.rate);
  const BURST = Number(values.burst);
  const BATCH = Number(values.batch);
  const PRODUCERS = Number(values.producers);
  const WARMUP = Number(values.warmup);
  const TIMEOUT_MS = Number(values.timeout) * 1000;
  for (const [name, v, min] of [
    ['events', EVENTS, 1],
    ['rate', RATE, 0],
    ['burst', BURST, 1],
    ['batch', BATCH, 1],
    ['producers', PRODUCERS, 1],
    ['warmup', WARMUP, 0],
    ['timeout', TIMEOUT_MS / 1000, 0.001],
  ] as const) {
    if (!Number.isFinite(v) || v < min || (name !== 'rate' && name !== 'timeout' && !Number.isInteger(v))) throw new Error(`--${name} must be a number >= ${min}, got ${values[name]}`);
  }

  const stamp = Date.now();
  const admin = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `governed_bench_events_${stamp}`;
  const url = new URL(admin);
  url.pathname = `/${dbName}`;
  const stream = `governed:bench:${stamp}`;
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const logger = createLogger('bench-events', process.env.LOG_LEVEL ?? 'warn');
  const metrics = createEventMetrics(new Registry());
  const scope = { runId: randomUUID(), tenantId: randomUUID() };
  const loadAtStart = load();

  // The last resort if a cleanup step itself hangs: the phases time out on their own before this.
  const watchdog = setTimeout(
    () => {
      console.error(`bench events: still running after the watchdog's limit; exiting (database ${dbName} and stream ${stream} may be left behind)`);
      process.exit(2);
    },
    TIMEOUT_MS * 5 + 120_000,
  );
  watchdog.unref();

  let producerDb: Database | null = null;
  let relayDb: Database | null = null;
  const clients: Redis[] = [];
  let relay: Relay | null = null;
  let reactor: Reactor | null = null;
  let relayRunning = false;
  let reactorRunning = false;
  let unlistenBench: (() => Promise<void>) | null = null;
  let migrated = false;

  try {
    console.log(
      `events benchmark: ${os.cpus().length} cores, load average ${loadAtStart} (1/5/15 min) at start; database ${dbName}, stream ${stream}`,
    );
    const migrateStart = performance.now();
    migrated = true; // from here a half-created database is dropped too
    await withTimeout(runMigrations(url.toString()), TIMEOUT_MS, () => 'migrating the benchmark database');
    console.log(`  migrated in ${(performance.now() - migrateStart).toFixed(0)} ms`);
    producerDb = connectDatabase(url.toString(), { max: 10 });
    relayDb = connectDatabase(url.toString(), { max: 4 });
    const relayRedis = new Redis(redisUrl, REDIS_OPTIONS);
    const reactorRedis = new Redis(redisUrl, REDIS_OPTIONS);
    clients.push(relayRedis, reactorRedis);
    for (const client of clients) {
      client.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
      await withTimeout(client.connect(), TIMEOUT_MS, () => `connecting to Redis at ${redisUrl}`);
    }

    const hops: Hops = { notifies: [], txBegin: new Map(), xaddSent: new Map(), xaddAcked: new Map(), txEnd: new Map(), read: new Map(), acked: new Map() };
    instrument(relayDb, relayRedis, reactorRedis, hops);
    // Same LISTEN connection as the relay's (postgres.js shares one per client): stamps its wake-up.
    const listening = await relayDb.sql.listen(OUTBOX_CHANNEL, () => hops.notifies.push(performance.now()));
    unlistenBench = listening.unlisten;

    const phases = new Map<string, Phase>();
    const handle = async (event: StreamEvent): Promise<void> => {
      const at = performance.now();
      const [, name, seq] = event.dedupeKey.split(':');
      phases.get(name ?? '')?.record(Number(seq), event.id, at);
    };
    relay = createRelay({ db: relayDb.db, sql: relayDb.sql, redis: relayRedis, stream, group: 'bench', maxLen: 1_000_000, logger, metrics });
    reactor = createReactor({
      redis: reactorRedis,
      stream,
      group: 'bench',
      consumer: `bench-${process.pid}`,
      handlers: { '*': { bench: handle } },
      // A safety net should the cleanup below not run: the product remembers handled events 7 days.
      handledTtlSeconds: 3600,
      onDeadLetter: async (letter) => {
        throw new Error(`an event was dead-lettered: ${letter.error}`);
      },
      onUnhealthy: async () => {},
      logger,
      metrics,
    });

    const db = producerDb.db;
    const rdb = relayDb.db;
    const describe = async (phase: Phase): Promise<string> => {
      const [unpublished] = await rdb
        .select({ n: count() })
        .from(outbox)
        .where(and(isNull(outbox.publishedAt), isNull(outbox.retractedAt)));
      const length = await relayRedis.xlen(stream).catch(() => -1);
      const pending = (await relayRedis.call('XPENDING', stream, 'bench').catch(() => null)) as unknown[] | null;
      return `phase ${phase.name}: ${phase.handledAt.size}/${phase.expected} handled; ${unpublished?.n ?? '?'} outbox rows unpublished, stream length ${length}, ${pending?.[0] ?? '?'} pending in the group; relay ${relayRunning ? 'running' : 'stopped'}, reactor ${reactorRunning ? 'running' : 'stopped'}`;
    };
    const events = (phase: Phase, from: number, to: number): OutboundEvent[] =>
      Array.from({ length: to - from }, (_, i) => ({ topic: TOPIC, dedupeKey: phase.key(from + i), payload: { bench: phase.name, seq: from + i } }));
    const commit = (phase: Phase, from: number, to: number) =>
      withTimeout(
        db.transaction((tx) => writeEvents(tx, scope, events(phase, from, to))),
        TIMEOUT_MS,
        () => `committing events ${from}..${to - 1} of phase ${phase.name}`,
      );
    /** `total` events, `BATCH` per transaction, `PRODUCERS` transactions at a time; the wall time. */
    const burst = async (phase: Phase, total: number): Promise<{ firstAt: number; lastAt: number }> => {
      let next = 0;
      const firstAt = performance.now();
      let lastAt = firstAt;
      await Promise.all(
        Array.from({ length: PRODUCERS }, async () => {
          while (next < total) {
            const from = next;
            next = Math.min(total, next + BATCH);
            await commit(phase, from, next);
            lastAt = performance.now();
          }
        }),
      );
      return { firstAt, lastAt };
    };
    const startAll = async () => {
      await relay!.start();
      relayRunning = true;
      await reactor!.start();
      reactorRunning = true;
    };
    const cpu = () => process.cpuUsage();
    const cpuMs = (since: NodeJS.CpuUsage) => {
      const d = process.cpuUsage(since);
      return (d.user + d.system) / 1000;
    };

    await withTimeout(startAll(), TIMEOUT_MS, () => 'starting the relay and the reactor');
    memory('after start');

    // Warm-up: connections, JIT, the group's first reads.
    if (WARMUP > 0) {
      const warm = new Phase('warmup', WARMUP);
      phases.set(warm.name, warm);
      for (let i = 0; i < WARMUP; i += 1) await commit(warm, i, i + 1);
      await withTimeout(warm.done(), TIMEOUT_MS, () => describe(warm));
    }

    // 1. Latency.
    const lat = new Phase('latency', EVENTS);
    phases.set(lat.name, lat);
    hops.notifies.length = 0;
    metrics.eventHandleLatency.reset();
    const committedAt: number[] = [];
    const beganAt: number[] = [];
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    let cpuStart = cpu();
    let phaseStart = performance.now();
    for (let i = 0; i < EVENTS; i += 1) {
      if (RATE > 0) {
        const wait = phaseStart + (i * 1000) / RATE - performance.now();
        if (wait > 0) await sleep(wait);
      }
      beganAt[i] = performance.now();
      await commit(lat, i, i + 1);
      committedAt[i] = performance.now();
    }
    await withTimeout(lat.done(), TIMEOUT_MS, () => describe(lat));
    eld.disable();
    const latWall = performance.now() - phaseStart;
    const latCpu = cpuMs(cpuStart);
    const latLoad = load();
    const latencies = Array.from({ length: EVENTS }, (_, i) => lat.handledAt.get(i)! - committedAt[i]!);
    const total = summarize(latencies)!;

    const hop = (from: (seq: number, id: number) => number | undefined, to: (seq: number, id: number) => number | undefined) => {
      const out: number[] = [];
      for (let seq = 0; seq < EVENTS; seq += 1) {
        const id = lat.idOf.get(seq)!;
        const a = from(seq, id);
        const b = to(seq, id);
        if (a !== undefined && b !== undefined) out.push(b - a);
      }
      return summarize(out);
    };
    // One transaction, one statement, one NOTIFY per latency event: the k-th notification is the k-th event's.
    const notifyOk = hops.notifies.length === EVENTS;
    const notifyAt = (seq: number) => (notifyOk ? hops.notifies[seq] : undefined);
    const commitAt = (seq: number) => committedAt[seq];
    const handledAt = (seq: number) => lat.handledAt.get(seq);
    const at = (m: Map<number, number>) => (_: number, id: number) => m.get(id);
    const hopRows: [string, Summary | null][] = [
      ['producer transaction (BEGIN, INSERT, COMMIT)', hop((seq) => beganAt[seq], commitAt)],
      ['commit resolved -> NOTIFY received', hop(commitAt, notifyAt)],
      ['NOTIFY -> relay transaction begins', hop(notifyAt, at(hops.txBegin))],
      ['relay tx begins -> XADD sent (BEGIN, lock, SELECT)', hop(at(hops.txBegin), at(hops.xaddSent))],
      ['XADD sent -> XADD acked', hop(at(hops.xaddSent), at(hops.xaddAcked))],
      ['XADD acked -> XREADGROUP returned', hop(at(hops.xaddAcked), at(hops.read))],
      ['XREADGROUP returned -> handler runs (decode, EXISTS)', hop(at(hops.read), handledAt)],
      ['commit resolved -> handler runs (end to end)', total],
      ['handler runs -> XACK done (SET, XACK)', hop(handledAt, at(hops.acked))],
      ['XADD acked -> relay tx committed (UPDATE, COMMIT)', hop(at(hops.xaddAcked), at(hops.txEnd))],
    ];
    // The relay's transactions that carried latency events: how long each held the relay's loop.
    const relayTxs = new Map<number, number>();
    for (const id of lat.idOf.values()) {
      const begin = hops.txBegin.get(id);
      const end = hops.txEnd.get(id);
      if (begin !== undefined && end !== undefined) relayTxs.set(begin, end - begin);
    }
    const relayTx = summarize([...relayTxs.values()]);
    const relayBusy = [...relayTxs.values()].reduce((a, v) => a + v, 0);
    // The product's own histogram, for comparison: it measures from the outbox row's created_at
    // (now() in the producer's transaction, i.e. its start, on the database's clock) to after XACK.
    const productMetric = (await metrics.eventHandleLatency.get()).values;
    const metricSum = productMetric.find((v) => v.metricName?.endsWith('_sum'))?.value ?? NaN;
    const metricCount = productMetric.find((v) => v.metricName?.endsWith('_count'))?.value ?? NaN;
    const toAck = hop(commitAt, at(hops.acked));

    console.log(
      `\n  latency: ${EVENTS} events, 1 per transaction, sequential, ${RATE > 0 ? `paced at ${RATE}/s` : 'back to back'} (achieved ${((EVENTS / latWall) * 1000).toFixed(0)}/s; ${latWall.toFixed(0)} ms, ${ms(latCpu)} ms CPU of this process, load ${latLoad})`,
    );
    console.log(
      `    commit -> handler: p50 ${ms(total.p50)} ms, p90 ${ms(total.p90)} ms, p99 ${ms(total.p99)} ms, max ${ms(total.max)} ms  (goal p50 <= 20 ms: ${total.p50 <= 20 ? 'met' : 'MISSED'}, p99 <= 100 ms: ${total.p99 <= 100 ? 'met' : 'MISSED'})`,
    );
    console.log(`    hops (ms)                                              p50      p90      p99      max     mean`);
    for (const [label, s] of hopRows) {
      console.log(
        `    ${label.padEnd(52)} ${s ? [s.p50, s.p90, s.p99, s.max, s.mean].map((v) => ms(v).padStart(8)).join(' ') : '   (not correlated)'}`,
      );
    }
    if (!notifyOk) console.log(`    (NOTIFY hops left out: ${hops.notifies.length} notifications for ${EVENTS} events)`);
    if (relayTx) {
      console.log(
        `    relay: ${relayTxs.size} transactions (${(EVENTS / relayTxs.size).toFixed(2)} events each), each p50 ${ms(relayTx.p50)} ms, p99 ${ms(relayTx.p99)} ms; in a transaction ${((100 * relayBusy) / latWall).toFixed(0)}% of the phase (plus one lag query after each drain)`,
      );
    }
    console.log(
      `    event loop delay p50 ${ms(eld.percentile(50) / 1e6)} ms, p99 ${ms(eld.percentile(99) / 1e6)} ms, max ${ms(eld.max / 1e6)} ms; product metric governed_event_commit_to_handled_seconds mean ${ms((metricSum / metricCount) * 1000)} ms over ${metricCount} (measured commit -> XACK mean ${toAck ? ms(toAck.mean) : '?'} ms)`,
    );
    memory('after latency');

    // 2a. Burst through relay + reactor.
    const burstPhase = new Phase('burst', BURST);
    phases.set(burstPhase.name, burstPhase);
    cpuStart = cpu();
    const b = await burst(burstPhase, BURST);
    await withTimeout(burstPhase.done(), TIMEOUT_MS, () => describe(burstPhase));
    const burstRow = { wall: burstPhase.lastAt - b.firstAt, cpu: cpuMs(cpuStart), load: load() };
    const commitRow = { wall: b.lastAt - b.firstAt };
    memory('after burst');

    // 2b. Relay only: a backlog committed with the relay and the reactor stopped, then drained.
    await withTimeout(reactor.stop(), TIMEOUT_MS, () => 'stopping the reactor');
    reactorRunning = false;
    await withTimeout(relay.stop(), TIMEOUT_MS, () => 'stopping the relay');
    relayRunning = false;
    const backlog = new Phase('backlog', BURST);
    phases.set(backlog.name, backlog);
    await burst(backlog, BURST);
    cpuStart = cpu();
    phaseStart = performance.now();
    const drained = await withTimeout(relay.drain(), TIMEOUT_MS, () => describe(backlog));
    const relayRow = { wall: performance.now() - phaseStart, cpu: cpuMs(cpuStart), load: load() };
    if (drained !== BURST) throw new Error(`relay.drain() published ${drained} events, ${BURST} were committed`);

    // 2c. Reactor only: the published backlog, read by a reactor started on it.
    cpuStart = cpu();
    phaseStart = performance.now();
    await withTimeout(reactor.start(), TIMEOUT_MS, () => 'starting the reactor');
    reactorRunning = true;
    await withTimeout(backlog.done(), TIMEOUT_MS, () => describe(backlog));
    const reactorRow = { wall: backlog.lastAt - phaseStart, cpu: cpuMs(cpuStart), load: load() };
    memory('after backlog');

    const rows: [string, number, { wall: number; cpu?: number; load?: string }][] = [
      [`relay + reactor: burst, first commit -> last handled`, BURST, burstRow],
      [`  of which the producers' commits`, BURST, commitRow],
      [`relay only: drain() of a backlog (500 per relay tx)`, BURST, relayRow],
      [`reactor only: published backlog -> last handled`, BURST, reactorRow],
    ];
    console.log(
      `\n  throughput: ${BURST} events, ${BATCH} per transaction, ${PRODUCERS} concurrent producers`,
    );
    console.log(`    ${'phase'.padEnd(54)} ${'events'.padStart(7)} ${'wall ms'.padStart(9)} ${'events/s'.padStart(9)} ${'CPU ms'.padStart(8)}  load 1/5/15`);
    for (const [label, n, r] of rows) {
      console.log(
        `    ${label.padEnd(54)} ${String(n).padStart(7)} ${r.wall.toFixed(0).padStart(9)} ${((n / r.wall) * 1000).toFixed(0).padStart(9)} ${(r.cpu === undefined ? '' : r.cpu.toFixed(0)).padStart(8)}  ${r.load ?? ''}`,
      );
    }
    const all = [...phases.values()];
    const dups = all.reduce((a, p) => a + p.duplicates, 0);
    console.log(
      `    handled twice: ${dups}; handled out of outbox-id order: ${all.map((p) => `${p.name} ${p.inversions}`).join(', ')}`,
    );
    const m = process.memoryUsage();
    console.log(`\n  rss ${mib(m.rss)} (heap used ${mib(m.heapUsed)}); load average ${loadAtStart} at start, ${load()} at end (${os.cpus().length} cores)`);
  } finally {
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await withTimeout(fn(), 30_000, () => what);
      } catch (err) {
        console.error(`  cleanup: ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    if (reactorRunning && reactor) await step('stopping the reactor', () => reactor!.stop());
    if (relayRunning && relay) await step('stopping the relay', () => relay!.stop());
    if (unlistenBench) await step('unlisten', unlistenBench);
    const redis = clients[0];
    if (redis) {
      await step('deleting the stream and its keys', async () => {
        let cursor = '0';
        do {
          const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${stream}:handled:*`, 'COUNT', 1000);
          cursor = nextCursor;
          if (keys.length) await redis.unlink(...keys);
        } while (cursor !== '0');
        await redis.del(stream, `${stream}:dead`, heartbeatKey(stream));
      });
    }
    for (const client of clients) client.disconnect();
    if (producerDb) await step('closing the producer pool', () => producerDb!.close());
    if (relayDb) await step('closing the relay pool', () => relayDb!.close());
    if (migrated) {
      const sql = postgres(admin, { max: 1, onnotice: () => {}, connect_timeout: 10 });
      await step(`dropping database ${dbName}`, () => sql.unsafe(`drop database if exists "${dbName}" with (force)`));
      await step('closing the admin connection', () => sql.end({ timeout: 5 }));
    }
    clearTimeout(watchdog);
  }
}

if (require.main === module) {
  // Piped into `head`: a closed stdout must not kill the process before its cleanup.
  process.stdout.on('error', () => {});
  benchEvents(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  });
}
