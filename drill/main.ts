/**
 * Failure drills against the whole product on this machine, each on a stack of its own (Temporal
 * dev server, database, worker process, API, event relay and reactor), torn down afterwards.
 *
 *   npm run drill -- worker-kill       SIGKILL the worker mid-run (--kills 3), restart it each time
 *   npm run drill -- temporal-restart  stop the dev server mid-run, start it on the same file and ports
 *   npm run drill -- db-outage         cut Postgres for the worker, API and relay (--outage-s 8)
 *   npm run drill -- redis-outage      cut Redis for the relay, reactor and API (--outage-s 8)
 *   npm run drill -- control-flood     flood controls past the rate limits, undecodable and 100 KB signals (--flood-s 8)
 *   npm run drill -- history-kill --cluster   SIGKILL one of the cluster's two history processes mid-run, say how long the runs took to move on
 *   npm run drill -- api-kill          SIGKILL one of two API processes (--apis 2) while submits go to each in turn
 *   npm run drill -- events-kill       SIGKILL the one of two relay-and-reactor processes caught holding the relay's lock
 *   npm run drill -- cluster-restart --cluster   stop the whole Temporal cluster mid-batch, start it again (--outage-s 8)
 *
 * Options: --runs 20, --steps 4, --step-ms 1500, --timeout-s (per drill), --spare-skill-steps, --flood-s 8,
 * --workers 1 (worker processes; with more, worker-kill kills --kills of them for good), --event-services 1
 * (copies of the relay and the reactor), --cluster (on the Temporal cluster of ./temporal-cluster.sh,
 * which must be up, instead of a dev server of the drill's own).
 * Prints what it did and what it found; exits 1 when any run was lost, duplicated or stuck, or any
 * event was not handled exactly once.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DRILL_NAMES, type DrillName } from './names';

// Ctrl-C tears the drill's stack down; a second one leaves at once (the children die with us).
// Registered before the drill's modules load, which takes seconds: no window where a signal
// would kill the process before it can clean up.
const interrupt = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupt.signal.aborted) process.exit(130);
    console.error(`\n${signal}: tearing the drill's stack down`);
    interrupt.abort();
  });
}

const USAGE = `usage: npm run drill -- <${DRILL_NAMES.join('|')}> [--runs N] [--steps N] [--step-ms MS] [--kills N] [--outage-s S] [--flood-s S] [--timeout-s S] [--spare-skill-steps] [--workers N] [--event-services N] [--apis N] [--cluster]`;

function wholeNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, not '${value}'`);
  return n;
}

/** The frontend of ./temporal-cluster.sh's cluster; it must be up (the drill does not start it). */
function clusterAddress(): string {
  const script = path.join(__dirname, '..', 'temporal-cluster.sh');
  try {
    execFileSync('bash', [script, 'status'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    throw new Error('--cluster: the Temporal cluster is not up; start it with ./temporal-cluster.sh start');
  }
  return execFileSync('bash', [script, 'address'], { encoding: 'utf8' }).trim();
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      runs: { type: 'string' },
      steps: { type: 'string' },
      'step-ms': { type: 'string' },
      kills: { type: 'string' },
      'outage-s': { type: 'string' },
      'flood-s': { type: 'string' },
      'timeout-s': { type: 'string' },
      'spare-skill-steps': { type: 'boolean', default: false },
      workers: { type: 'string' },
      'event-services': { type: 'string' },
      apis: { type: 'string' },
      cluster: { type: 'boolean', default: false },
    },
  });
  const name = positionals[0] as DrillName | undefined;
  if (!name || !DRILL_NAMES.includes(name) || positionals.length > 1) {
    console.error(USAGE);
    return 2;
  }
  const temporalAddress = values.cluster ? clusterAddress() : undefined;
  const { runDrill } = await import('./run');
  interrupt.signal.throwIfAborted();
  const result = await runDrill(name, {
    runs: wholeNumber('runs', values.runs, 20),
    steps: wholeNumber('steps', values.steps, 4),
    stepMs: wholeNumber('step-ms', values['step-ms'], 1500),
    kills: wholeNumber('kills', values.kills, 3),
    outageSeconds: wholeNumber('outage-s', values['outage-s'], 8),
    floodSeconds: wholeNumber('flood-s', values['flood-s'], 8),
    timeoutSeconds: values['timeout-s'] === undefined ? undefined : wholeNumber('timeout-s', values['timeout-s'], 0),
    spareSkillSteps: values['spare-skill-steps'],
    workers: Math.max(1, wholeNumber('workers', values.workers, 1)),
    eventServices: Math.max(1, wholeNumber('event-services', values['event-services'], 1)),
    apis: values.apis === undefined ? undefined : Math.max(1, wholeNumber('apis', values.apis, 2)),
    temporalAddress,
    // The cluster's script reads its settings from this process's environment.
    clusterEnv: values.cluster ? {} : undefined,
    print: (line) => console.log(line),
    signal: interrupt.signal,
  });
  return result.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(interrupt.signal.aborted ? 130 : 2);
  },
);
