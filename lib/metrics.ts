import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The worker's metrics. The Temporal SDK's own runtime metrics are served beside these. */
export function createWorkerMetrics(registry = new Registry()) {
  collectDefaultMetrics({ register: registry, prefix: 'governed_worker_' });
  return {
    registry,
    runsFinished: new Counter({
      name: 'governed_runs_finished_total',
      help: 'Runs that reached a terminal phase, by final status',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    phaseTransitions: new Counter({
      name: 'governed_run_phase_transitions_total',
      help: 'Run phase transitions recorded',
      labelNames: ['from', 'to'] as const,
      registers: [registry],
    }),
    stepDuration: new Histogram({
      name: 'governed_step_duration_seconds',
      help: 'Duration of one plan step (skill call)',
      labelNames: ['skill', 'outcome'] as const,
      buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    stepCost: new Counter({
      name: 'governed_step_cost_usd_total',
      help: 'Spend reported by plan steps',
      labelNames: ['skill'] as const,
      registers: [registry],
    }),
    domainWrites: new Counter({
      name: 'governed_domain_writes_total',
      help: 'Domain writes by domain, action and result (inserted, existing for an idempotent replay)',
      labelNames: ['domain', 'action', 'result'] as const,
      registers: [registry],
    }),
    policyChecks: new Counter({
      name: 'governed_policy_checks_total',
      help: 'Mid-run policy checks by decision',
      labelNames: ['decision'] as const,
      registers: [registry],
    }),
    policyCheckDuration: new Histogram({
      name: 'governed_policy_check_duration_seconds',
      help: 'Time to read the policy state and decide',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    pauses: new Counter({
      name: 'governed_run_pauses_total',
      help: 'Runs paused, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    pauseDuration: new Histogram({
      name: 'governed_run_pause_duration_seconds',
      help: 'How long runs stayed paused, by reason and how the pause ended',
      labelNames: ['reason', 'ended_by'] as const,
      buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers: [registry],
    }),
    pauseTimeouts: new Counter({
      name: 'governed_run_pause_timeouts_total',
      help: 'Pauses that ran out their SLA, by the timeout behaviour applied',
      labelNames: ['behavior'] as const,
      registers: [registry],
    }),
    auditRunsReconciled: new Counter({
      name: 'governed_audit_runs_reconciled_total',
      help: 'Runs reconciled against their audit contract, by verdict',
      labelNames: ['verdict'] as const,
      registers: [registry],
    }),
    runNeverFinalized: new Counter({
      name: 'governed_run_never_finalized_total',
      help: 'Runs found stale: finalize_run not acked after its deadline (seed §9.1)',
      registers: [registry],
    }),
    unexpectedDomainActions: new Counter({
      name: 'governed_unexpected_domain_action_total',
      help: 'Drift found by the reconciler: acks nobody expected and domain rows no ack names (seed §9.2)',
      registers: [registry],
    }),
    auditPassDuration: new Histogram({
      name: 'governed_audit_pass_duration_seconds',
      help: 'Wall time of one reconciliation pass, first page to recorded',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    auditDueRuns: new Histogram({
      name: 'governed_audit_due_runs',
      help: 'Runs due per reconciliation pass',
      buckets: [0, 1, 10, 100, 1000, 10_000, 100_000],
      registers: [registry],
    }),
    staleRuns: new Gauge({
      name: 'governed_stale_runs',
      help: 'Runs in the latest stale-run report',
      registers: [registry],
    }),
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

export function createApiMetrics(registry = new Registry()) {
  collectDefaultMetrics({ register: registry, prefix: 'governed_api_' });
  return {
    registry,
    httpRequests: new Histogram({
      name: 'governed_http_request_duration_seconds',
      help: 'HTTP requests by route, method and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    runsSubmitted: new Counter({
      name: 'governed_runs_submitted_total',
      help: 'Runs accepted by the API, by authorization decision',
      labelNames: ['decision'] as const,
      registers: [registry],
    }),
    auditLastPassAge: new Gauge({
      name: 'governed_audit_last_pass_age_seconds',
      help: 'Seconds since the last reconciliation pass finished (-1 before the first)',
      registers: [registry],
    }),
  };
}

export type ApiMetrics = ReturnType<typeof createApiMetrics>;
