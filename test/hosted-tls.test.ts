import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectDatabase, type Database } from '../db/client';
import { createTenant } from '../db/tenancy';
import { ConfigError, loadConfig } from '../lib/config';
import { freePort } from '../lib/listen';
import { connectClient, temporalConnectionSettings } from '../lib/temporal';
import { createCa, issueCertificate, type CertificateFiles } from '../testing/certificates';
import { startTlsTerminator, type TlsTerminator } from '../testing/tls-proxy';
import { startProductProcess, startWorkerProcess, type WorkerProcess } from '../testing/worker-process';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * Issue 19 item 3: mTLS to a hosted cluster. The dev server behind a TLS terminator that demands a
 * client certificate from our CA, as a self-hosted cluster's frontend does; the product's own
 * processes (worker/main.ts, api/main.ts) configured by environment alone.
 */

/** A process started with tsx on a loaded two-core machine can take half a minute before it logs a line. */
const START_TIMEOUT_MS = 90_000;

let dir: string;
let ca: CertificateFiles;
let client: CertificateFiles;
let strangerClient: CertificateFiles;
let terminator: TlsTerminator;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'governed-tls-'));
  ca = createCa(dir, 'cluster-ca');
  const server = issueCertificate(dir, ca, 'frontend', 'server');
  client = issueCertificate(dir, ca, 'governed-worker', 'client');
  strangerClient = issueCertificate(dir, createCa(dir, 'another-ca'), 'stranger', 'client');
  const [host, port] = inject('temporalAddress').split(':');
  terminator = await startTlsTerminator({
    target: { host: host!, port: Number(port) },
    key: readFileSync(server.key),
    cert: readFileSync(server.cert),
    ca: readFileSync(ca.cert),
  });
});

afterAll(async () => {
  await terminator?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The environment a hosted deployment sets: the cluster's address and our client certificate. */
function mtlsEnv(certificate: CertificateFiles | null): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: `127.0.0.1:${terminator.port}`,
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca.cert,
    ...(certificate ? { TEMPORAL_TLS_CLIENT_CERT_PATH: certificate.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: certificate.key } : {}),
  };
}

describe('through a TLS terminator that requires a client certificate', () => {
  let database: { url: string; drop(): Promise<void> };
  let db: Database;
  const processes: WorkerProcess[] = [];

  beforeAll(async () => {
    database = await freshDatabase(`tls_${randomUUID().slice(0, 8)}`);
    db = connectDatabase(database.url, { max: 2 });
  });

  afterAll(async () => {
    for (const p of processes) await p.kill();
    await db?.close();
    await database?.drop();
  });

  it('runs a worker and an API with the client certificate, and a run goes to COMPLETED through it', { timeout: 240_000 }, async () => {
    const taskQueue = `tls-${randomUUID()}`;
    const common = {
      ...mtlsEnv(client),
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      TEMPORAL_TASK_QUEUE: taskQueue,
      LOG_LEVEL: 'info',
    };
    const worker = await startWorkerProcess({
      ...common,
      WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
      WORKER_METRICS_PORT: '0',
      WORKER_SDK_METRICS_PORT: '0',
      // The relay and reactor run in the worker on a stream of this test's own, through the same connection.
      EVENTS_IN_WORKER: 'true',
      EVENT_STREAM: `governed:test:${randomUUID()}`,
      REACTOR_CONSUMER: `tls-${randomUUID().slice(0, 8)}`,
      // The API must start the run itself: no dispatcher to start it another way.
      DISPATCHER_IN_WORKER: 'false',
    }, { startTimeoutMs: START_TIMEOUT_MS });
    processes.push(worker);
    expect(worker.output()).toContain(`over TLS (client certificate CN=governed-worker from TEMPORAL_TLS_CLIENT_CERT_PATH (${client.cert})`);

    const apiPort = await freePort();
    const api = await startProductProcess(path.join('api', 'main.ts'), 'api listening', { ...common, API_HOST: '127.0.0.1', API_PORT: String(apiPort) }, { startTimeoutMs: START_TIMEOUT_MS });
    processes.push(api);

    const { apiKey } = await createTenant(db.db, { name: `tls-${randomUUID().slice(0, 8)}` });
    const submitted = await fetch(`http://127.0.0.1:${apiPort}/api/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plan: simPlan(3) }),
    });
    const body = (await submitted.json()) as { runId: string };
    expect(submitted.status, JSON.stringify(body)).toBe(202);

    const run = await waitFor(
      'the run to complete',
      async () => {
        const res = await fetch(`http://127.0.0.1:${apiPort}/api/v1/runs/${body.runId}`, { headers: { authorization: `Bearer ${apiKey}` } });
        const view = (await res.json()) as { run: { phase: string; workflowStartedAt: string | null } };
        return ['COMPLETED', 'FAILED', 'CANCELLED'].includes(view.run.phase) && view.run;
      },
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nworker:\n${worker.output()}\napi:\n${api.output()}`);
    });
    expect(run.phase).toBe('COMPLETED');
    // Started by the API's own client (the worker's dispatcher is off), through the terminator.
    expect(run.workflowStartedAt).not.toBeNull();

    // The workflow is on the cluster behind the terminator: read it back through it, as an operator would.
    const temporal: Client = await connectClient(temporalConnectionSettings(loadConfig({ ...mtlsEnv(client) })));
    try {
      const described = await temporal.workflow.getHandle(body.runId).describe();
      expect(described.status.name).toBe('COMPLETED');
      expect(described.taskQueue).toBe(taskQueue);
    } finally {
      await temporal.connection.close();
    }
    expect(terminator.refusals).toEqual([]);
    // The worker's native connection, the API's client and the test's own: each its own TLS session.
    expect(terminator.forwarded).toBeGreaterThanOrEqual(3);
  });

  it('the temporal CLI reaches the cluster with the same variables', async () => {
    // Asynchronously: the terminator runs in this process and must go on accepting meanwhile.
    const { stdout: out } = await promisify(execFile)(inject('temporalCliPath'), ['operator', 'namespace', 'describe', '--namespace', 'default', '--output', 'json'], {
      env: { ...process.env, ...mtlsEnv(client) },
      encoding: 'utf8',
    });
    expect(JSON.parse(out).namespaceInfo.name).toBe('default');
  });

  // OpenSSL names the first refusal; the second (a certificate it cannot verify) reaches Node's
  // server as the client's hang-up after the alert.
  it.each([
    ['no client certificate', () => mtlsEnv(null), /peer did not return a certificate/],
    ['a certificate from another CA', () => mtlsEnv(strangerClient), /.+/],
  ])('refuses a worker with %s, and the worker exits saying so', { timeout: 150_000 }, async (_case, env, refusal) => {
    const refusedBefore = terminator.refusals.length;
    const forwardedBefore = terminator.forwarded;
    const started = startWorkerProcess({
      ...env(),
      DATABASE_URL: database.url,
      TEMPORAL_TASK_QUEUE: `tls-refused-${randomUUID()}`,
      WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
      WORKER_METRICS_PORT: '0',
      WORKER_SDK_METRICS_PORT: '0',
      EVENTS_IN_WORKER: 'false',
      DISPATCHER_IN_WORKER: 'false',
    }, { startTimeoutMs: START_TIMEOUT_MS });
    const failure = await started.then(
      (p) => {
        processes.push(p);
        throw new Error(`the worker started without a good client certificate:\n${p.output()}`);
      },
      (err: Error) => err.message,
    );
    expect(failure).toMatch(/exited \(1\) before it started/);
    expect(failure).toContain(`worker failed: cannot connect to Temporal at 127.0.0.1:${terminator.port} over TLS`);
    expect(failure).not.toMatch(/^\s+at /m);
    expect(terminator.refusals.length).toBeGreaterThan(refusedBefore);
    expect(terminator.refusals.slice(refusedBefore).join('\n')).toMatch(refusal);
    // Not a byte of it reached the server.
    expect(terminator.forwarded).toBe(forwardedBefore);
  });
});

describe('bad TLS settings stop a process at start, naming the variable', () => {
  const settingsError = (env: Record<string, string>): string => {
    try {
      temporalConnectionSettings(loadConfig(env));
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  it('names what is wrong', () => {
    const notPem = path.join(dir, 'not-pem.txt');
    writeFileSync(notPem, 'hello\n');
    expect(settingsError({ TEMPORAL_TLS_CLIENT_KEY_PATH: client.key })).toContain('set TEMPORAL_TLS_CLIENT_CERT_PATH');
    expect(settingsError({ TEMPORAL_TLS_CLIENT_CERT_PATH: client.cert })).toContain('set TEMPORAL_TLS_CLIENT_KEY_PATH');
    expect(settingsError({ TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'missing.crt'), TEMPORAL_TLS_CLIENT_KEY_PATH: client.key })).toBe(
      `invalid configuration: TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read ${path.join(dir, 'missing.crt')}: ENOENT`,
    );
    expect(settingsError({ TEMPORAL_TLS_CLIENT_CERT_PATH: notPem, TEMPORAL_TLS_CLIENT_KEY_PATH: client.key })).toBe(
      `invalid configuration: TEMPORAL_TLS_CLIENT_CERT_PATH (${notPem}) holds no PEM certificate`,
    );
    expect(settingsError({ TEMPORAL_TLS_CLIENT_CERT_PATH: client.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: notPem })).toContain(
      `TEMPORAL_TLS_CLIENT_KEY_PATH (${notPem}) holds no PEM private key`,
    );
    expect(settingsError({ TEMPORAL_TLS_CLIENT_CERT_PATH: client.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: strangerClient.key })).toBe(
      `invalid configuration: the key in TEMPORAL_TLS_CLIENT_KEY_PATH (${strangerClient.key}) is not the key of the certificate in TEMPORAL_TLS_CLIENT_CERT_PATH (${client.cert})`,
    );
    expect(settingsError({ TEMPORAL_TLS_SERVER_CA_CERT_DATA: 'nonsense' })).toBe('invalid configuration: TEMPORAL_TLS_SERVER_CA_CERT_DATA holds no PEM certificate');
    expect(settingsError({ TEMPORAL_TLS_CLIENT_CERT_PATH: client.cert, TEMPORAL_TLS_CLIENT_CERT_DATA: readFileSync(client.cert, 'utf8'), TEMPORAL_TLS_CLIENT_KEY_PATH: client.key })).toBe(
      'invalid configuration: set TEMPORAL_TLS_CLIENT_CERT_PATH or TEMPORAL_TLS_CLIENT_CERT_DATA, not both',
    );
  });

  it('accepts inline PEMs as well as files', () => {
    const settings = temporalConnectionSettings(
      loadConfig({ TEMPORAL_TLS_CLIENT_CERT_DATA: readFileSync(client.cert, 'utf8'), TEMPORAL_TLS_CLIENT_KEY_DATA: readFileSync(client.key, 'utf8') }),
    );
    expect(settings.tls && settings.tls.clientCertPair?.crt.toString()).toBe(readFileSync(client.cert, 'utf8'));
    expect(settings.describe).toBe('over TLS (client certificate CN=governed-worker from TEMPORAL_TLS_CLIENT_CERT_DATA)');
    expect(temporalConnectionSettings(loadConfig({})).tls).toBe(false);
  });

  it.each([
    ['worker', path.join('worker', 'main.ts')],
    ['api', path.join('api', 'main.ts')],
  ])('the %s process exits 1 with the message and no stack trace', { timeout: 150_000 }, async (name, entry) => {
    const failure = await startProductProcess(entry, 'never', {
      TEMPORAL_ADDRESS: '127.0.0.1:1',
      TEMPORAL_TLS_CLIENT_KEY_PATH: client.key,
      DATABASE_URL: inject('databaseUrl'),
      WORKER_METRICS_PORT: '0',
      WORKER_SDK_METRICS_PORT: '0',
      API_PORT: '0',
    }, { startTimeoutMs: START_TIMEOUT_MS }).then(
      () => 'started',
      (err: Error) => err.message,
    );
    expect(failure).toMatch(/exited \(1\) before it started/);
    expect(failure).toContain(`${name} failed: invalid configuration: a client key needs its certificate: set TEMPORAL_TLS_CLIENT_CERT_PATH (or _DATA)`);
    expect(failure).not.toMatch(/^\s+at /m);
  });
});
