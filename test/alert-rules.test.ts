import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiMetrics, createEventMetrics, createWorkerMetrics } from '../lib/metrics';
import { freePort } from '../lib/listen';
import { exposedMetrics, metricNames } from './helpers/promql';
import { waitFor } from './helpers/wait';

/**
 * The Prometheus alerting rules (`monitoring/alerts.yml`) for when the watchers are down, checked
 * and unit-tested by promtool against `monitoring/alerts.test.yml`, and held to the metrics the
 * product really exports. promtool comes with Debian's `prometheus` package (`.ci/run` installs
 * it); without it the promtool tests are skipped on a developer's machine and fail under CI.
 */

const MONITORING = path.join(__dirname, '..', 'monitoring');
const RULES = path.join(MONITORING, 'alerts.yml');
const RULE_TESTS = path.join(MONITORING, 'alerts.test.yml');

function findPromtool(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const promtool = findPromtool();
/** Skipped only where promtool is missing and this is not CI: under CI a missing promtool fails. */
const withPromtool = it.skipIf(promtool === null && !process.env.CI);

function runPromtool(...args: string[]): { status: number | null; output: string } {
  if (promtool === null) throw new Error('promtool is not installed: apt-get install -y prometheus (CI installs it in .ci/run)');
  const result = spawnSync(promtool, args, { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/**
 * Each rule's alert name and expression. Not a YAML parser: the rules file keeps one shape (an
 * `expr:` on one line, or `expr: |` and a block indented under it), which is all this reads.
 */
function rulesOf(text: string): { alert: string; expr: string }[] {
  const lines = text.split('\n');
  const rules: { alert: string; expr: string }[] = [];
  for (let i = 0; i < lines.length; i += 1) {
    const alert = /^\s*- alert: (\S+)/.exec(lines[i]!)?.[1];
    if (alert) rules.push({ alert, expr: '' });
    const expr = /^(\s*)expr: (.*)$/.exec(lines[i]!);
    if (!expr) continue;
    const rule = rules[rules.length - 1]!;
    if (expr[2] !== '|') {
      rule.expr = expr[2]!;
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > expr[1]!.length)) block.push(lines[(i += 1)]!);
    rule.expr = block.join('\n').trim();
  }
  return rules;
}

const rules = rulesOf(readFileSync(RULES, 'utf8'));

describe('the alerting rules', () => {
  it('cover each watcher the product must not lose', () => {
    expect(rules.map((r) => r.alert)).toEqual([
      'GovernedAuditPassLate',
      'GovernedRunQueueNoPollers',
      'GovernedReactorSilent',
      'GovernedReactorMissedHeartbeats',
      'GovernedOutboxLag',
      'GovernedRunsStale',
    ]);
    for (const rule of rules) expect(rule.expr, rule.alert).toMatch(/\S/);
  });

  withPromtool('are valid rules (promtool check rules)', () => {
    const { status, output } = runPromtool('check', 'rules', RULES);
    expect(status, output).toBe(0);
    expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  withPromtool('fire when their watcher is down, and only then (promtool test rules)', () => {
    const { status, output } = runPromtool('test', 'rules', RULE_TESTS);
    expect(status, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  withPromtool('are tested for real: a wrong expectation fails promtool', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'governed-alerts-'));
    try {
      copyFileSync(RULES, path.join(dir, 'alerts.yml'));
      // The stale-runs case expects no alert where the rule fires.
      const tests = readFileSync(RULE_TESTS, 'utf8');
      const broken = tests.replace(/(- eval_time: 5m\n\s+alertname: GovernedRunsStale\n\s+exp_alerts:)\n[\s\S]*$/, '$1 []\n');
      expect(broken).not.toBe(tests);
      writeFileSync(path.join(dir, 'alerts.test.yml'), broken);
      const { status, output } = runPromtool('test', 'rules', path.join(dir, 'alerts.test.yml'));
      expect(status).not.toBe(0);
      expect(output).toContain('GovernedRunsStale');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the metrics the rules read', () => {
  const referenced = [...new Set(rules.flatMap((r) => metricNames(r.expr)))].sort();

  it('are the product\'s own, as the API, the worker, the auditor and the event services register them', async () => {
    const worker = createWorkerMetrics();
    createEventMetrics(worker.registry);
    const api = createApiMetrics();
    const exported = new Set([...worker.registry.getMetricsAsArray(), ...api.registry.getMetricsAsArray()].map((m) => m.name));
    const ours = referenced.filter((name) => name.startsWith('governed_'));
    expect(ours).toEqual([
      'governed_audit_last_pass_age_seconds',
      'governed_reactor_heartbeat_missed_total',
      'governed_reactor_heartbeat_total',
      'governed_relay_lag_seconds',
      'governed_stale_runs',
    ]);
    expect(ours.filter((name) => !exported.has(name))).toEqual([]);
    // Nothing else: the SDK's, checked below against a worker's exporter.
    expect(referenced.filter((name) => !name.startsWith('governed_'))).toEqual(['temporal_num_pollers', 'temporal_worker_task_slots_available']);
  });

  describe('and the Temporal SDK exports, with the labels they select on', () => {
    let sdkMetricsPort: number;
    let connection: NativeConnection;
    let worker: Worker;
    let running: Promise<void>;
    const taskQueue = `alert-rules-${randomUUID()}`;

    beforeAll(async () => {
      sdkMetricsPort = await freePort();
      Runtime.install({
        logger: new DefaultLogger('ERROR'),
        telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${sdkMetricsPort}` } } },
      });
      connection = await NativeConnection.connect({ address: inject('temporalAddress') });
      // A run worker's shape: workflows and activities, on its queue.
      worker = await Worker.create({
        connection,
        taskQueue,
        workflowBundle: { codePath: inject('workflowBundlePath') },
        activities: { async noop() {} },
      });
      running = worker.run();
    });
    afterAll(async () => {
      worker?.shutdown();
      await running;
      await connection?.close();
    });

    it('as a polling worker shows them on its SDK metrics port', async () => {
      const exposition = await waitFor(
        'the worker\'s pollers on its SDK metrics port',
        async () => {
          const text = await (await fetch(`http://127.0.0.1:${sdkMetricsPort}/metrics`)).text();
          return /^temporal_num_pollers\{[^}]*poller_type="activity_task"/m.test(text) ? text : undefined;
        },
        30_000,
      );
      const exposed = exposedMetrics(exposition);
      expect(exposed.get('temporal_num_pollers')).toBe('gauge');
      expect(exposed.get('temporal_worker_task_slots_available')).toBe('gauge');
      const series = exposition.split('\n').filter((line) => line.includes(`task_queue="${taskQueue}"`));
      const value = (metric: string, label: string) =>
        Number(series.find((line) => line.startsWith(`${metric}{`) && line.includes(label))?.split(' ').pop() ?? NaN);
      // The selectors of GovernedRunQueueNoPollers, on this worker's queue.
      expect(value('temporal_num_pollers', 'poller_type="workflow_task"')).toBeGreaterThanOrEqual(1);
      expect(value('temporal_num_pollers', 'poller_type="activity_task"')).toBeGreaterThanOrEqual(1);
      expect(value('temporal_worker_task_slots_available', 'worker_type="WorkflowWorker"')).toBeGreaterThanOrEqual(1);
      expect(value('temporal_worker_task_slots_available', 'worker_type="ActivityWorker"')).toBeGreaterThanOrEqual(1);
    });
  });
});
