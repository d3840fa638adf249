import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { ALERT_DOMAINS, SUPPRESSION_REASONS, type AlertSeverity } from '../core/alerts';
import { AUDIT_VERDICTS } from '../core/audit-reconciliation';
import { COST_METRIC_MODELS, COST_METRIC_SKILLS } from '../core/costs';
import type { AuthorizationDecision } from '../core/authorization';
import { EVENT_TOPICS } from '../core/events';
import { PHASE_STATUS_INVARIANTS, RUN_PHASES, canTransition } from '../core/phases';
import { SKILL_NAMES } from '../core/plan';
import { PAUSE_TIMEOUT_BEHAVIORS } from '../core/policy';
import { PAUSE_REASONS, POLICY_DECISIONS } from '../core/policy-check';
import { TOOL_CALL_RESOLUTIONS } from '../core/tool-calls';

/**
 * The label values each labelled metric is known to take, set at zero when its registry is made (at
 * process start). A series that first appears at 1 is no rise to `rate()` and `increase()`: without
 * its zero, the first event of each label value after a start would be missing from every panel.
 */
export const PAUSE_ENDINGS = [
  /** A person (or a key) resumed or decided it. */
  'operator',
  /** Its SLA ran out under CONTINUE: resumed (or its approval denied) by the system. */
  'timeout',
  /** Its SLA ran out under TERMINATE (or ESCALATE, after the escalation period): the run failed. */
  'terminated',
  /** The run ended while paused for another reason: stopped or cancelled. */
  'stopped',
] as const;
export type PauseEnding = (typeof PAUSE_ENDINGS)[number];

const STEP_OUTCOMES = ['ok', 'error', 'cancelled'] as const;
const SUBMIT_DECISIONS = ['ALLOWED', 'DENIED'] as const satisfies readonly AuthorizationDecision['decision'][];
const ALERT_SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const satisfies readonly AlertSeverity[];
const FINAL_STATUSES = [...PHASE_STATUS_INVARIANTS.COMPLETED, ...PHASE_STATUS_INVARIANTS.FAILED];
const PHASE_MOVES = RUN_PHASES.flatMap((from) => RUN_PHASES.filter((to) => canTransition(from, to)).map((to) => ({ from, to })));
/** Every domain write the activities count, with the results each reports. */
const DOMAIN_WRITES = [
  ...['start_trace', 'trace_step', 'create_log_record'].flatMap((action) => ['inserted', 'existing'].map((result) => ({ domain: 'logs', action, result }))),
  { domain: 'logs', action: 'complete_trace', result: 'upserted' },
  { domain: 'logs', action: 'record_step', result: 'inserted' },
  ...['inserted', 'existing'].map((result) => ({ domain: 'incidents', action: 'create_incident', result })),
  ...['inserted', 'existing'].map((result) => ({ domain: 'policies', action: 'evaluate_policy', result })),
  ...TOOL_CALL_RESOLUTIONS.map((result) => ({ domain: 'tools', action: 'tool_call', result })),
  ...['inserted', 'existing', 'none'].map((result) => ({ domain: 'lessons', action: 'record_lesson', result })),
];

/** Every combination of the values of each label. */
function combinations<L extends string>(values: Record<L, readonly string[]>): LabelValues<L>[] {
  return Object.entries<readonly string[]>(values).reduce<Record<string, string>[]>(
    (sets, [label, each]) => sets.flatMap((set) => each.map((value) => ({ ...set, [label]: value }))),
    [{}],
  ) as LabelValues<L>[];
}

/** Sets each of these label sets of a labelled counter or histogram at zero. */
export function atZero<L extends string>(metric: Counter<L> | Histogram<L>, labelSets: readonly LabelValues<L>[]): void {
  for (const labels of labelSets) {
    if (metric instanceof Histogram) metric.zero(labels);
    else metric.inc(labels, 0);
  }
}

/** The worker's metrics. The Temporal SDK's own runtime metrics are served beside these. */
/** What `governed_retention_pruned_total` counts. */
export const RETENTION_KINDS = ['runs', 'exported_runs', 'outbox', 'control_pushes', 'alerts'] as const;

export function createWorkerMetrics(registry = new Registry()) {
  collectDefaultMetrics({ register: registry, prefix: 'governed_worker_' });
  const metrics = {
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
    /** Labels bounded by what the worker knows (`core/costs.ts`): per tenant and key, read `GET /api/v1/costs`. */
    costUsd: new Counter({
      name: 'governed_cost_usd_total',
      help: 'Spend recorded (plan steps, model turns, tool calls), by billed model and skill',
      labelNames: ['model', 'skill'] as const,
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
      // A pass reads what finalized or fell due since the last (a minute): a few to thousands. Each
      // count up to 6, then steps of at most a third, so histogram_quantile reads a p95 that near the truth.
      buckets: [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10_000, 20_000, 50_000, 100_000],
      registers: [registry],
    }),
    staleRuns: new Gauge({
      name: 'governed_stale_runs',
      help: 'Runs in the latest stale-run report',
      registers: [registry],
    }),
    /** Served by the auditor, whose queue carries the retention passes. */
    retentionPruned: new Counter({
      name: 'governed_retention_pruned_total',
      help: "Rows removed by tenants' retention, by kind: runs (each with all its records), exported runs, outbox rows, control pushes, alerts",
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
  };
  atZero(metrics.retentionPruned, RETENTION_KINDS.map((kind) => ({ kind })));
  atZero(metrics.runsFinished, FINAL_STATUSES.map((status) => ({ status })));
  atZero(metrics.phaseTransitions, PHASE_MOVES);
  atZero(metrics.stepDuration, combinations({ skill: SKILL_NAMES, outcome: STEP_OUTCOMES }));
  atZero(metrics.stepCost, SKILL_NAMES.map((skill) => ({ skill })));
  atZero(metrics.costUsd, combinations({ model: COST_METRIC_MODELS, skill: COST_METRIC_SKILLS }));
  atZero(metrics.domainWrites, DOMAIN_WRITES);
  atZero(metrics.policyChecks, POLICY_DECISIONS.map((decision) => ({ decision })));
  atZero(metrics.pauses, PAUSE_REASONS.map((reason) => ({ reason })));
  atZero(metrics.pauseDuration, combinations({ reason: PAUSE_REASONS, ended_by: PAUSE_ENDINGS }));
  atZero(metrics.pauseTimeouts, PAUSE_TIMEOUT_BEHAVIORS.map((behavior) => ({ behavior })));
  atZero(metrics.auditRunsReconciled, AUDIT_VERDICTS.map((verdict) => ({ verdict })));
  return metrics;
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

/** The outbox relay, the event reactor and the alerts, on the registry of the process that runs them. */
export function createEventMetrics(registry: Registry) {
  const metrics = {
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
  const topics = EVENT_TOPICS.map((topic) => ({ topic }));
  for (const counter of [metrics.eventsRelayed, metrics.eventsReceived, metrics.eventsHandled]) atZero(counter, topics);
  // A message that is no event at all fails and is dead-lettered as `malformed`.
  for (const counter of [metrics.eventsFailed, metrics.eventsDeadLettered]) atZero(counter, [...topics, { topic: 'malformed' }]);
  atZero(metrics.alertsSent, combinations({ domain: ALERT_DOMAINS, severity: ALERT_SEVERITIES }));
  atZero(metrics.alertsSuppressed, SUPPRESSION_REASONS.map((reason) => ({ reason })));
  return metrics;
}

export type EventMetrics = ReturnType<typeof createEventMetrics>;

export function createApiMetrics(registry = new Registry()) {
  collectDefaultMetrics({ register: registry, prefix: 'governed_api_' });
  const metrics = {
    registry,
    /** Labelled, and set at zero for each route's answers, by `api/http-metrics.ts`. */
    httpRequests: new Histogram({
      name: 'governed_http_request_duration_seconds',
      help: 'HTTP requests by route template (unmatched: no route), method and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    httpAnswers: new Counter({
      name: 'governed_http_requests_total',
      help: 'HTTP answers by route template (unmatched: no route), method and status; every status a route may answer starts at zero',
      labelNames: ['method', 'route', 'status'] as const,
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
  atZero(metrics.runsSubmitted, SUBMIT_DECISIONS.map((decision) => ({ decision })));
  return metrics;
}

export type ApiMetrics = ReturnType<typeof createApiMetrics>;
