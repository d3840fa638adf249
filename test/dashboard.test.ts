import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../lib/listen';
import { exposedMetrics, isExposed, metricNames } from './helpers/promql';
import { simPlan, startStack, type Stack } from './helpers/stack';

const DASHBOARD = path.join(__dirname, '..', 'dashboards', 'governed-runs.json');

interface Target {
  expr?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; templating: { list: Record<string, unknown>[] }; panels: Panel[] };
/** Every panel, those inside collapsed rows too. */
const panels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queries = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr ?? '' })));

describe('the Grafana dashboard', () => {
  it('imports anywhere: Prometheus is a template variable every query uses', () => {
    expect(dashboard.uid).toBe('governed-runs');
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets!) {
        expect(target.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
        expect(target.expr, panel.title).toMatch(/\S/);
      }
    }
  });

  it('reads metric names out of PromQL', () => {
    expect(metricNames('histogram_quantile(0.95, sum by (le, skill) (rate(governed_step_duration_seconds_bucket{skill!="x"}[$__rate_interval])))')).toEqual([
      'governed_step_duration_seconds_bucket',
    ]);
    expect(metricNames('sum(increase(a_total{status!="ok"}[$__range])) / clamp_min(sum(b_total offset 5m), 1) * 3600 + on(job) group_left(x) c')).toEqual(['a_total', 'b_total', 'c']);
  });
});

describe('the dashboard against what the product exports', () => {
  let stack: Stack;
  let sdkMetricsPort: number;

  beforeAll(async () => {
    sdkMetricsPort = await freePort();
    stack = await startStack({ sdkMetricsPort });
    // A run, so the SDK has recorded its task latencies: its exporter lists a metric once it has a value.
    const tenant = await stack.createTenant();
    const runId = await stack.submitRun(tenant.apiKey, { plan: simPlan(2) });
    await stack.waitForPhase(runId, ['COMPLETED']);
  });
  afterAll(() => stack?.close());

  it('references only metrics the API, the worker, the event services and the Temporal SDK really export', async () => {
    const [api, worker, sdk] = await Promise.all([
      fetch(`${stack.baseUrl}/metrics`).then((r) => r.text()),
      // The worker's registry, which the relay, the reactor and the alerts record on too.
      stack.workerMetrics.registry.metrics(),
      fetch(`http://127.0.0.1:${sdkMetricsPort}/metrics`).then((r) => r.text()),
    ]);
    const exposed = new Map([...exposedMetrics(api), ...exposedMetrics(worker), ...exposedMetrics(sdk)]);
    expect(exposed.get('temporal_activity_schedule_to_start_latency')).toBe('histogram');

    const referenced = queries.flatMap(({ panel, expr }) => metricNames(expr).map((name) => ({ panel, name })));
    const missing = referenced.filter(({ name }) => !isExposed(name, exposed)).map(({ panel, name }) => `${name} (panel "${panel}")`);
    expect(missing).toEqual([]);

    // What the dashboard is for, each at least once.
    const names = new Set(referenced.map((r) => r.name.replace(/_(bucket|sum|count)$/, '')));
    for (const name of [
      'governed_run_phase_transitions_total',
      'governed_runs_finished_total',
      'governed_step_duration_seconds',
      'governed_step_cost_usd_total',
      'governed_cost_usd_total',
      'governed_policy_checks_total',
      'governed_run_pauses_total',
      'governed_run_pause_duration_seconds',
      'governed_audit_runs_reconciled_total',
      'governed_audit_due_runs',
      'governed_stale_runs',
      'governed_relay_lag_seconds',
      'governed_alerts_suppressed_total',
      'temporal_activity_schedule_to_start_latency',
      'temporal_workflow_task_schedule_to_start_latency',
    ]) {
      expect(names, name).toContain(name);
    }
  });
});
