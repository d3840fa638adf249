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

/** The outbox relay, the event reactor and the alerts, on the registry of the process that runs them. */
export function createEventMetrics(registry: Registry) {
  return {
    eventsRelayed: new Counter({
      name: 'governed_events_relayed_total',
      help: 'Outbox events written to the Redis Stream, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    relayLag: new Gauge({
      name: 'governed_relay_lag_seconds',
      help: 'Age of the oldest committed event not yet on the stream (0 when none waits)',
      registers: [registry],
    }),
    eventsReceived: new Counter({
      name: 'governed_events_received_total',
      help: 'Stream messages read by the reactor, by topic (redeliveries included)',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    eventsHandled: new Counter({
      name: 'governed_events_handled_total',
      help: 'Events whose handlers all succeeded and were acknowledged, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    eventsFailed: new Counter({
      name: 'governed_events_failed_total',
      help: 'Handler attempts that failed, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    eventsDeadLettered: new Counter({
      name: 'governed_events_dead_lettered_total',
      help: 'Events moved to the dead-letter stream after their last attempt, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    eventHandleLatency: new Histogram({
      name: 'governed_event_commit_to_handled_seconds',
      help: 'From the outbox row (stamped at the start of the transaction that wrote the change) to the end of its handlers',
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    alertsSent: new Counter({
      name: 'governed_alerts_sent_total',
      help: 'Alerts delivered, by domain and severity',
      labelNames: ['domain', 'severity'] as const,
      registers: [registry],
    }),
    alertsSuppressed: new Counter({
      name: 'governed_alerts_suppressed_total',
      help: 'Alerts held back by the fatigue controller, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    reactorHeartbeats: new Counter({
      name: 'governed_reactor_heartbeat_total',
      help: 'Heartbeats this process\'s reactor sent',
      registers: [registry],
    }),
    reactorHeartbeatsMissed: new Counter({
      name: 'governed_reactor_heartbeat_missed_total',
      help: 'Reactors found past the missed-beat threshold, each time one is found',
      registers: [registry],
    }),
  };
}

export type EventMetrics = ReturnType<typeof createEventMetrics>;

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
