// What `npm start` (scripts/up.sh) checks before it touches anything, and what its banner says about
// the system once the API answers. Plain Node with no dependency, so it runs before `npm ci` and in
// a fraction of the time tsx takes to start.
//
//   node scripts/preflight.mjs running       exit 3 when this system's API already answers on
//                                            API_HOST:API_PORT (another `npm start`), 4 when
//                                            something else answers HTTP there; 0 otherwise
//   node scripts/preflight.mjs deps          probe DATABASE_URL and REDIS_URL: exit 1 when Postgres
//                                            cannot be reached (nothing works without it); Redis
//                                            down is a warning (runs still run)
//   node scripts/preflight.mjs health        one /healthz answer as the banner's lines: exit 0 when
//                                            it is 200, 2 when it is another answer (degraded),
//                                            1 when nothing answers
//
// The defaults are lib/config.ts's (test/unit/preflight.test.ts holds them equal).
import net from 'node:net';
import { pathToFileURL } from 'node:url';

export const DEFAULTS = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/governed_runs',
  REDIS_URL: 'redis://127.0.0.1:6379',
  API_HOST: '127.0.0.1',
  API_PORT: '8080',
};

const PROBE_TIMEOUT_MS = 2000;

function setting(env, name) {
  return env[name] || DEFAULTS[name];
}

/** The API's base URL as a client reaches it (a wildcard listen address is reached on loopback). */
export function apiUrl(env = process.env) {
  const host = setting(env, 'API_HOST');
  const reach = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  return `http://${reach.includes(':') ? `[${reach}]` : reach}:${setting(env, 'API_PORT')}`;
}

/** A URL fit to print: its password replaced. */
export function shown(raw) {
  try {
    const url = new URL(raw);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return raw.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
  }
}

/**
 * Where a client of the URL connects: `{host, port}`, `{path}` for a Unix socket, or null when it
 * cannot be told (then nothing is probed and nothing refused).
 */
export function endpointOf(raw, defaultPort) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  const port = Number(url.port || defaultPort);
  // postgres://user@/db?host=/var/run/postgresql: the socket's directory is in the query.
  const socketDir = url.searchParams.get('host');
  if (socketDir && socketDir.startsWith('/')) return { path: `${socketDir}/.s.PGSQL.${port}`, label: socketDir };
  if (url.protocol === 'unix:' || url.protocol === 'redis+unix:') return url.pathname ? { path: url.pathname, label: url.pathname } : null;
  const host = url.hostname.replace(/^\[|\]$/g, '') || 'localhost';
  if (host.includes(',')) return null; // several hosts: the driver picks one
  return { host, port, label: `${host.includes(':') ? `[${host}]` : host}:${port}` };
}

/** Connects and hangs up: null when something accepted, else why not, in words. */
export function probe(endpoint, timeoutMs = PROBE_TIMEOUT_MS) {
  return new Promise((resolve) => {
    const socket = endpoint.path ? net.connect({ path: endpoint.path }) : net.connect({ host: endpoint.host, port: endpoint.port });
    const done = (why) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    socket.once('connect', () => done(null));
    socket.once('error', (err) => {
      const words = { ECONNREFUSED: 'connection refused (nothing listens there)', ENOTFOUND: 'no such host', ENOENT: 'no such socket', EHOSTUNREACH: 'host unreachable' };
      done(words[err.code] ?? err.message);
    });
  });
}

/** What runs without each dependency, said where `npm start` finds it down. */
export const WITHOUT = {
  postgres: [
    'Nothing works without it: migrations, runs, the API and the audit keep their records there.',
    'Nothing was started.',
  ],
  redis: [
    'Starting anyway. Without Redis, runs are still accepted and run to the end; their events wait in',
    'the Postgres outbox and go out when Redis answers. Meanwhile no event reaches the reactor, so no',
    'alert is sent, /healthz answers 503 (redis: down), the control and failed-key limits are counted',
    'per process, and the worker and the API repeat a "redis" warning every few seconds until it is back.',
  ],
};

const DEPENDENCIES = [
  { key: 'postgres', name: 'Postgres', variable: 'DATABASE_URL', defaultPort: 5432, fix: ' (npm start creates the database in it)' },
  { key: 'redis', name: 'Redis', variable: 'REDIS_URL', defaultPort: 6379, fix: '' },
];

/** Probes Postgres and Redis where the environment points: what to say, and whether to stop. */
export async function checkDeps(env = process.env) {
  const down = [];
  for (const dep of DEPENDENCIES) {
    const raw = setting(env, dep.variable);
    const endpoint = endpointOf(raw, dep.defaultPort);
    const why = endpoint ? await probe(endpoint) : null;
    if (why !== null) down.push({ ...dep, raw, endpoint, why });
  }
  const fatal = down.some((d) => d.key === 'postgres');
  const lines = [];
  for (const d of down) {
    lines.push(
      `up: ${d.name} is not reachable at ${d.endpoint.label}: ${d.why}.`,
      `    ${d.variable}=${shown(d.raw)}${env[d.variable] ? '' : ' (the default: the variable is not set)'}`,
      // With Postgres down nothing starts, so what would run without Redis is beside the point.
      ...(fatal && d.key === 'redis' ? [] : WITHOUT[d.key].map((line) => `    ${line}`)),
      `    Start ${d.name} there, or set ${d.variable} to one that runs${d.fix}.`,
    );
  }
  return { fatal, lines };
}

async function healthz(env, timeoutMs = PROBE_TIMEOUT_MS) {
  try {
    const res = await fetch(`${apiUrl(env)}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      // not this API's answer
    }
    return { status: res.status, body };
  } catch {
    return null;
  }
}

/** Whether an answer is this system's /healthz. */
function isOurs(body) {
  return Boolean(body && typeof body === 'object' && 'postgres' in body && 'redis' in body && 'temporal' in body && 'audit' in body);
}

/** The banner's lines about what /healthz says is not well, each naming the variable that points at it. */
export function healthLines(body, env = process.env) {
  const lines = [];
  const where = { postgres: ['Postgres', 'DATABASE_URL'], redis: ['Redis', 'REDIS_URL'], temporal: ['Temporal', 'TEMPORAL_ADDRESS'] };
  for (const [key, [name, variable]] of Object.entries(where)) {
    if (body[key] === 'ok') continue;
    const value = key === 'temporal' ? env.TEMPORAL_ADDRESS || '127.0.0.1:7233' : shown(setting(env, variable));
    lines.push(`  ${name.padEnd(10)} ${body[key]} (${variable}=${value})`);
    if (key === 'redis') lines.push(`             runs still run; events wait in the outbox and no alert is sent until Redis answers`);
  }
  if (typeof body.audit === 'string' && body.audit !== 'ok' && !body.audit.startsWith('waiting')) lines.push(`  Audit      ${body.audit}`);
  for (const [consumer, state] of Object.entries(body.reactors ?? {})) {
    if (!String(state).startsWith('ok')) lines.push(`  Reactor    ${consumer}: ${state}`);
  }
  return lines;
}

async function main(command) {
  const env = process.env;
  if (command === 'running') {
    const answer = await healthz(env);
    if (!answer) return 0;
    const url = apiUrl(env);
    if (isOurs(answer.body)) {
      console.error(
        [
          `up: this system is already running: its API answers at ${url}/healthz (status ${answer.body.status ?? answer.status}).`,
          `    A second one would rebuild the workflow bundle under the running worker and start a second worker,`,
          `    auditor and API on the same database. Use the one that runs, or stop it first: Ctrl-C in its terminal`,
          `    (or SIGTERM to its npm start) stops the worker, the auditor and the API; the Temporal dev server keeps running.`,
        ].join('\n'),
      );
      return 3;
    }
    const port = setting(env, 'API_PORT');
    console.error(`up: API port ${port} is already in use (API_PORT): ${url} answers HTTP ${answer.status}, and not as this system's API. Stop what listens there, or set API_PORT.`);
    return 4;
  }
  if (command === 'deps') {
    const { fatal, lines } = await checkDeps(env);
    if (lines.length) console.error(lines.join('\n'));
    return fatal ? 1 : 0;
  }
  if (command === 'health') {
    const answer = await healthz(env);
    if (!answer || !isOurs(answer.body)) return 1;
    const lines = healthLines(answer.body, env);
    if (lines.length) console.log([`  Degraded   /healthz answers ${answer.status}:`, ...lines].join('\n'));
    return answer.status === 200 ? 0 : 2;
  }
  console.error(`preflight: unknown command '${command}' (running | deps | health)`);
  return 64;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv[2]).then(
    (code) => process.exit(code),
    (err) => {
      console.error(`preflight: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(70);
    },
  );
}
