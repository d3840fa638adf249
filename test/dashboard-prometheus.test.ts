import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_ROUTES } from '../api/contract';
import type { PassTotals } from '../core/audit-reconciliation';
import { runs } from '../db/schema';
import { freePort } from '../lib/listen';
import { serveMetrics } from '../lib/metrics-server';
import { reconcileAuditWorkflow } from '../workflows/audit';
import { freshDatabase } from './helpers/fresh-database';
import { simPlan, startStack, type Stack } from './helpers/stack';
import { waitFor } from './helpers/wait';

/**
 * The dashboard's own panel queries (read from `dashboards/governed-runs.json`), evaluated by a
 * real Prometheus that scraped the API and the worker every second while this test made known
 * events happen: the numbers on the panels must be the numbers of what happened. Prometheus comes
 * with Debian's `prometheus` package (`.ci/run` installs it); without it this is skipped on a
 * developer's machine and fails under CI.
 */

const DASHBOARD = path.join(__dirname, '..', 'dashboards', 'governed-runs.json');

interface Panel {
  title: string;
  targets?: { expr?: string; legendFormat?: string }[];
  panels?: Panel[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
const panels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);

/** The queries of the panel titled `title`, in its order. */
function panelQueries(title: string): string[] {
  const panel = panels.find((p) => p.title === title);
  if (!panel) throw new Error(`no panel "${title}" in the dashboard`);
  return (panel.targets ?? []).map((t) => t.expr ?? '');
}

function findBinary(name: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const prometheusBin = findBinary('prometheus');
if (prometheusBin === null && !process.env.CI) {
  console.warn('dashboard-prometheus.test.ts skipped: no prometheus binary (apt-get install -y prometheus; CI installs it in .ci/run)');
}

type Sample = { metric: Record<string, string>; value: [number, string] };

describe.skipIf(prometheusBin === null && !process.env.CI)('the dashboard, read by a real Prometheus', () => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let stack: Stack;
  let workerMetricsServer: Server;
  let prometheus: ChildProcess;
  let prometheusOutput = '';
  let promUrl: string;
  let dataDir: string;
  let startedAt: number;

  /** What the test made happen, the truth the panels are held to. */
  const made = {
    submitted: { ALLOWED: 0, DENIED: 0 },
    runIds: [] as string[],
    clientErrors: new Map<string, number>(),
    pass: null as (PassTotals & { dueBefore?: string }) | null,
  };

  async function query(expr: string): Promise<Sample[]> {
    const url = `${promUrl}/api/v1/query?${new URLSearchParams({ query: expr, time: String(Date.now() / 1000) })}`;
    const body = (await (await fetch(url)).json()) as { status: string; error?: string; data: { resultType: string; result: Sample[] } };
    if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
    return body.data.result;
  }

  /** The dashboard's time range: from before Prometheus started to now. */
  function windowSeconds(): number {
    return Math.ceil((Date.now() - startedAt) / 1000) + 5;
  }

  /** A panel query as Grafana sends it with that range (and each rate over the whole of it). */
  async function panel(expr: string): Promise<Sample[]> {
    const window = `${windowSeconds()}s`;
    return query(expr.replaceAll('$__range', window).replaceAll('$__rate_interval', window));
  }

  const single = (samples: Sample[]) => {
    expect(samples, 'one series').toHaveLength(1);
    return Number(samples[0]!.value[1]);
  };
  /** Each series' value (times `scale`: a rate over the window times the window is a count), rounded to a whole count; zeros left out. */
  function counts(samples: Sample[], label: string, scale = 1): Record<string, number> {
    const found: Record<string, number> = {};
    for (const s of samples) {
      const count = Math.round(Number(s.value[1]) * scale);
      if (count !== 0) found[s.metric[label] ?? ''] = count;
    }
    return found;
  }

  /** A request straight to the API, its status tallied when it is a client error. */
  async function call(method: string, url: string, apiKey?: string): Promise<number> {
    const res = await fetch(`${stack.baseUrl}${url}`, { method, headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
    await res.arrayBuffer();
    if (res.status >= 400 && res.status < 500) made.clientErrors.set(String(res.status), (made.clientErrors.get(String(res.status)) ?? 0) + 1);
    return res.status;
  }

  beforeAll(async () => {
    if (prometheusBin === null) throw new Error('prometheus is not installed: apt-get install -y prometheus (CI installs it in .ci/run)');
    // A database of the file's own: the reconciliation pass below reads every due run in it.
    database = await freshDatabase(`dashprom_${randomUUID().slice(0, 8)}`);
    stack = await startStack({ databaseUrl: database.url });
    // The worker's metrics port, as worker/main.ts serves it (WORKER_METRICS_PORT).
    const workerPort = await freePort();
    workerMetricsServer = await serveMetrics(stack.workerMetrics.registry, workerPort, { name: 'worker metrics port', variable: 'WORKER_METRICS_PORT' });

    dataDir = mkdtempSync(path.join(os.tmpdir(), 'governed-prometheus-'));
    const config = path.join(dataDir, 'prometheus.yml');
    const apiTarget = new URL(stack.baseUrl).host;
    writeFileSync(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 900ms',
        'scrape_configs:',
        '  - job_name: api',
        `    static_configs: [{ targets: ['${apiTarget}'] }]`,
        '  - job_name: worker',
        `    static_configs: [{ targets: ['127.0.0.1:${workerPort}'] }]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    startedAt = Date.now();
    prometheus = spawn(
      prometheusBin,
      [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dataDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (chunk: Buffer) => {
      prometheusOutput = (prometheusOutput + chunk.toString()).slice(-10_000);
    };
    prometheus.stdout!.on('data', keep);
    prometheus.stderr!.on('data', keep);
    // Both targets scraped twice before anything happens: what follows is a rise from what was there.
    await waitFor(
      'Prometheus to scrape the API and the worker twice',
      async () => {
        if (prometheus.exitCode !== null) throw new Error(`prometheus exited (${prometheus.exitCode}):\n${prometheusOutput}`);
        const samples = await query('count_over_time(up[1m]) and up == 1').catch(() => []);
        return samples.length === 2 && samples.every((s) => Number(s.value[1]) >= 2);
      },
      20_000,
    );

    // Runs: ten allowed (eight succeed, one fails its step, one pauses for approval and is
    // terminated by its 2 s SLA), one denied at submit.
    const tenant = await stack.createTenant();
    const approvals = await stack.createTenant({
      policy: { approvalSkills: ['sim.llm'], pauseSlaSeconds: 2, pauseWarningSeconds: 1, pauseTimeoutBehavior: 'TERMINATE' },
    });
    const submit = async (apiKey: string, body: unknown) => {
      const res = await stack.request('POST', '/api/v1/runs', { apiKey, body });
      expect(res.status).toBe(202);
      made.submitted[res.body.authorizationDecision as 'ALLOWED' | 'DENIED'] += 1;
      made.runIds.push(res.body.runId as string);
      return res.body.runId as string;
    };
    await Promise.all([
      ...Array.from({ length: 8 }, () => submit(tenant.apiKey, { plan: simPlan(1) })),
      submit(tenant.apiKey, { plan: [{ skill: 'sim.llm', input: { prompt: 'broken', fail: true } }] }),
      submit(approvals.apiKey, { plan: simPlan(1) }),
      submit(tenant.apiKey, { plan: simPlan(1), budgetUsd: 1_000 }),
    ]);

    // Failing and succeeding requests to the same routes, and one to no route at all.
    const someRun = made.runIds[0]!;
    for (let i = 0; i < 3; i += 1) expect(await call('GET', `/api/v1/runs/${someRun}`, tenant.apiKey)).toBe(200);
    for (let i = 0; i < 2; i += 1) expect(await call('GET', `/api/v1/runs/${randomUUID()}`, tenant.apiKey)).toBe(404);
    expect(await call('GET', `/api/v1/runs/${someRun}`, 'not-a-key')).toBe(401);
    expect(await call('GET', '/api/v1/runs', approvals.apiKey)).toBe(200);
    expect(await call('GET', '/api/v1/runs?limit=nope', approvals.apiKey)).toBe(400);
    expect(await call('GET', '/api/v1/no-such-thing', tenant.apiKey)).toBe(404);

    for (const runId of made.runIds) await stack.waitForPhase(runId, 'terminal', 40_000);
    // One reconciliation pass over them all, on the stack's worker.
    made.pass = await stack.client.workflow.execute(reconcileAuditWorkflow, { taskQueue: stack.taskQueue, workflowId: `dash-prom-pass-${randomUUID()}`, args: [{}] });

    // A scrape of each target that began after all of it.
    const done = Date.now() / 1000;
    await waitFor(
      'a scrape of both targets after the events',
      async () => {
        const samples = await query('timestamp(up)');
        return samples.length === 2 && samples.every((s) => Number(s.value[1]) > done + 0.2);
      },
      15_000,
    );
  }, 120_000);

  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus.once('exit', r));
      prometheus.kill('SIGTERM');
      await exited;
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (workerMetricsServer) await new Promise((r) => workerMetricsServer.close(r));
    await stack?.close();
    await database?.drop();
  });

  /**
   * increase() and rate() extrapolate a series to the range's edges, so on a loaded machine (scrapes
   * late against the query's time) a panel reads up to a fraction more than happened: 11.6 for 11.
   * A count is right when it is at least what happened and less than a quarter over it.
   */
  function expectAbout(actual: number, expected: number, what: string): void {
    expect(actual, `${what}: ${actual} for ${expected}`).toBeGreaterThanOrEqual(expected - 0.01);
    expect(actual, `${what}: ${actual} for ${expected}`).toBeLessThan(expected * 1.25 + 0.5);
  }
  function expectAboutEach(samples: Sample[], label: string, scale: number, expected: Record<string, number>): void {
    const found: Record<string, number> = {};
    for (const sample of samples) {
      const value = Number(sample.value[1]) * scale;
      if (value > 0.01) found[sample.metric[label] ?? ''] = value;
    }
    expect(Object.keys(found).sort()).toEqual(Object.keys(expected).sort());
    for (const [key, value] of Object.entries(found)) expectAbout(value, expected[key]!, `${label}=${key}`);
  }

  it('counts the runs submitted, finished and denied at submit', async () => {
    const total = made.submitted.ALLOWED + made.submitted.DENIED;
    expect(made.submitted).toEqual({ ALLOWED: 10, DENIED: 1 });
    expectAbout(single(await panel(panelQueries('Runs submitted')[0]!)), total, 'Runs submitted');
    expectAbout(single(await panel(panelQueries('Denied at submit')[0]!)), 1, 'Denied at submit');
    expectAboutEach(await panel(panelQueries('Runs submitted by decision')[0]!), 'decision', windowSeconds(), { ALLOWED: 10, DENIED: 1 });
    expectAbout(single(await panel(panelQueries('Runs finished')[0]!)), total, 'Runs finished');
  });

  it('shows the share of runs that failed, as stored', async () => {
    const stored = await stack.db.select({ status: runs.status }).from(runs);
    const statuses: Record<string, number> = {};
    for (const { status } of stored) statuses[status] = (statuses[status] ?? 0) + 1;
    // The failed step, the denied run and the terminated pause.
    expect(statuses).toEqual({ succeeded: 8, failed: 1, failed_policy: 2 });
    expect(single(await panel(panelQueries('Failed share')[0]!))).toBeCloseTo(3 / 11, 2);
    expectAboutEach(await panel(panelQueries('Runs finished by status')[0]!), 'status', windowSeconds(), statuses);
  });

  it('shows the pause, its timeout and that it ended terminated', async () => {
    expect(Math.round(single(await panel(panelQueries('Pauses')[0]!)))).toBe(1);
    expect(counts(await panel(panelQueries('Pause timeouts by behaviour')[0]!), 'behavior')).toEqual({ TERMINATE: 1 });
    expect(counts(await panel(panelQueries('How pauses ended')[0]!), 'ended_by')).toEqual({ terminated: 1 });
  });

  it('reads the due runs of the pass within the resolution the panel promises', async () => {
    const due = made.pass!.runs;
    // Every finished run was due at once: the pass read them all.
    expect(due).toBe(11);
    const [mean, p95] = panelQueries('Due runs per pass');
    expect(single(await panel(mean!))).toBeCloseTo(due, 5);
    const read = single(await panel(p95!));
    expect(Math.abs(read - due) / due, `p95 reads ${read} for a pass of ${due}`).toBeLessThanOrEqual(0.25);
  });

  it('labels every answer with its route template, errors included, and unmatched paths with one value', async () => {
    const documented = new Set(API_ROUTES.map((r) => r.path));
    const routes = (await panel(panelQueries('API latency by route (p95)')[0]!)).map((s) => s.metric.route ?? '');
    expect(routes.filter((r) => !documented.has(r) && r !== 'unmatched')).toEqual([]);
    expect(routes).toEqual(expect.arrayContaining(['/api/v1/runs', '/api/v1/runs/:id', 'unmatched']));

    const [serverErrors, clientErrors] = panelQueries('API errors');
    expect(counts(await panel(serverErrors!), 'status', windowSeconds())).toEqual({});
    expect(counts(await panel(clientErrors!), 'status', windowSeconds())).toEqual(Object.fromEntries(made.clientErrors));
  });
});
