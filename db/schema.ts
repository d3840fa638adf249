import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  doublePrecision,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { SUPPRESSION_REASONS, type AlertSettings } from '../core/alerts';
import type { AuditCheck, AuditVerdict, RunAuditReport } from '../core/audit-reconciliation';
import { INCIDENT_STATUSES } from '../core/incidents';
import type { PlanStep } from '../core/plan';
import type { PolicyRules } from '../core/policy';
import { PROPOSAL_KINDS, type Observation, type PolicyChange } from '../core/lessons';

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();

export const tenants = pgTable('tenants', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: text('name').notNull().unique(),
  status: text('status', { enum: ['active', 'suspended'] }).notNull().default('active'),
  /** The API requests each of the tenant's keys may make per minute; null: the deployment's API_RATE_LIMIT_PER_MINUTE. */
  requestsPerMinute: integer('requests_per_minute'),
  createdAt: createdAt(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** sha256 of the key; the key itself is shown once and never stored. */
    keyHash: text('key_hash').notNull().unique(),
    keyPrefix: text('key_prefix').notNull(),
    role: text('role', { enum: ['admin', 'member', 'viewer'] }).notNull(),
    label: text('label'),
    createdAt: createdAt(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [index('api_keys_tenant_idx').on(t.tenantId)],
);

export const policies = pgTable(
  'policies',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    version: integer('version').notNull(),
    rules: jsonb('rules').$type<PolicyRules>().notNull(),
    changedBy: text('changed_by'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('policies_tenant_version_uq').on(t.tenantId, t.version)],
);

export const runs = pgTable(
  'runs',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    apiKeyId: uuid('api_key_id').references(() => apiKeys.id),
    idempotencyKey: text('idempotency_key'),
    /** sha256 of the submitted body, so a reused Idempotency-Key with another body is refused. */
    requestHash: text('request_hash').notNull(),
    plan: jsonb('plan').$type<PlanStep[]>().notNull(),
    budgetUsd: doublePrecision('budget_usd').notNull(),
    status: text('status').notNull(),
    phase: text('phase').notNull(),
    authorizationDecision: text('authorization_decision', { enum: ['ALLOWED', 'DENIED'] }).notNull(),
    authorizationReason: text('authorization_reason'),
    policyVersion: integer('policy_version').notNull(),
    costUsd: doublePrecision('cost_usd').notNull().default(0),
    tokens: integer('tokens').notNull().default(0),
    stepsCompleted: integer('steps_completed').notNull().default(0),
    /** An agent's model turns and tool calls so far, across the run's agent steps. */
    turns: integer('turns').notNull().default(0),
    toolCalls: integer('tool_calls').notNull().default(0),
    riskLevel: text('risk_level').notNull().default('LOW'),
    observabilityMode: text('observability_mode').notNull(),
    observabilityStatus: text('observability_status').notNull().default('OK'),
    observabilityError: text('observability_error'),
    sagaPhase: text('saga_phase').notNull().default('NOT_STARTED'),
    /** Set while the run waits in a PAUSE, cleared on resume. */
    pauseReason: text('pause_reason'),
    pausedAt: timestamp('paused_at', { withTimezone: true }),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    /** Where its workflow runs; the starter of that queue starts it if the API could not. */
    taskQueue: text('task_queue'),
    /** When Temporal accepted its workflow; null while the run waits for a starter. */
    workflowStartedAt: timestamp('workflow_started_at', { withTimezone: true }),
    createdAt: createdAt(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('runs_tenant_idempotency_uq')
      .on(t.tenantId, t.idempotencyKey)
      .where(sql`${t.idempotencyKey} is not null`),
    index('runs_tenant_created_idx').on(t.tenantId, t.createdAt),
    index('runs_status_idx').on(t.status),
    index('runs_unstarted_idx')
      .on(t.createdAt)
      .where(sql`${t.workflowStartedAt} is null and ${t.phase} = 'CREATED'`),
  ],
);

export const traces = pgTable('traces', {
  id: uuid('id').primaryKey().defaultRandom(),
  runId: uuid('run_id')
    .notNull()
    .unique()
    .references(() => runs.id),
  tenantId: uuid('tenant_id').notNull(),
  status: text('status', { enum: ['running', 'completed'] }).notNull(),
  outcome: text('outcome'),
  rolledBack: boolean('rolled_back').notNull().default(false),
  startedAt: createdAt(),
  completedAt: timestamp('completed_at', { withTimezone: true }),
});

/**
 * One governed step of the run: a plan step, or inside an agent step one model turn (`turn`) or one
 * tool call (`turn`, `callIndex`). A tool call's row exists from the moment the call is sent
 * (status `started`): a retry that finds it knows an earlier attempt may have run the tool.
 */
export const traceSteps = pgTable(
  'trace_steps',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    stepIndex: integer('step_index').notNull(),
    turn: integer('turn'),
    callIndex: integer('call_index'),
    kind: text('kind', { enum: ['step', 'turn', 'tool_call'] }).notNull().default('step'),
    skill: text('skill').notNull(),
    model: text('model').notNull(),
    /** For a tool call: `server.tool`. */
    tool: text('tool'),
    tokensIn: integer('tokens_in').notNull(),
    tokensOut: integer('tokens_out').notNull(),
    costUsd: doublePrecision('cost_usd').notNull(),
    durationMs: integer('duration_ms').notNull(),
    /** `ok`; for a step that failed, `failed`; for a tool call, how it was resolved (see `core/tool-calls.ts`). */
    status: text('status').notNull().default('ok'),
    errorCode: text('error_code'),
    outputPreview: text('output_preview'),
    outputId: uuid('output_id'),
    /** sha256 of the input as the step ran it, its references resolved. */
    inputSha256: text('input_sha256'),
    /** For a tool call: sha256 of the tool and its arguments, what an approval quotes. */
    argsSha256: text('args_sha256'),
    createdAt: createdAt(),
  },
  (t) => [unique('trace_steps_item_uq').on(t.runId, t.stepIndex, t.turn, t.callIndex).nullsNotDistinct()],
);

/**
 * Each governed step's whole output (a plan step's text or JSON, an agent turn's assistant message,
 * a tool call's result), written in the transaction of its trace row and ack.
 */
export const stepOutputs = pgTable(
  'step_outputs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    stepIndex: integer('step_index').notNull(),
    turn: integer('turn'),
    callIndex: integer('call_index'),
    kind: text('kind', { enum: ['step', 'turn', 'tool_call'] }).notNull(),
    contentType: text('content_type', { enum: ['text/plain', 'application/json'] }).notNull(),
    content: text('content').notNull(),
    sha256: text('sha256').notNull(),
    bytes: integer('bytes').notNull(),
    createdAt: createdAt(),
  },
  (t) => [unique('step_outputs_item_uq').on(t.runId, t.stepIndex, t.turn, t.callIndex).nullsNotDistinct()],
);

/**
 * A tool call that waited for a person: what they were shown (the tool and the hash of its exact
 * arguments) and what they decided, by whom and when. One per approval pause.
 */
export const toolApprovals = pgTable(
  'tool_approvals',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    /** The run's n-th pause, which this approval is. */
    pauseNumber: integer('pause_number').notNull(),
    stepIndex: integer('step_index').notNull(),
    turn: integer('turn').notNull(),
    callIndex: integer('call_index').notNull(),
    tool: text('tool').notNull(),
    argsSha256: text('args_sha256').notNull(),
    status: text('status', { enum: ['pending', 'approved', 'denied', 'expired'] }).notNull().default('pending'),
    requestedAt: timestamp('requested_at', { withTimezone: true }).notNull().defaultNow(),
    decidedAt: timestamp('decided_at', { withTimezone: true }),
    decidedBy: text('decided_by'),
    authority: text('authority'),
    requestId: text('request_id'),
    reason: text('reason'),
  },
  (t) => [
    uniqueIndex('tool_approvals_run_pause_uq').on(t.runId, t.pauseNumber),
    index('tool_approvals_pending_idx').on(t.tenantId, t.requestedAt).where(sql`${t.status} = 'pending'`),
  ],
);

/** The incident domain's record of a run: a failure incident, or a recorded "no incident" outcome. */
export const incidents = pgTable(
  'incidents',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    /** Idempotency key within the run: 'outcome' for the final record, others for mid-run incidents. */
    dedupeKey: text('dedupe_key').notNull(),
    kind: text('kind', { enum: ['failure', 'none', 'escalation', 'observability', 'audit', 'delivery', 'tool'] }).notNull(),
    severity: text('severity', { enum: ['NONE', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] }).notNull(),
    errorCode: text('error_code'),
    message: text('message').notNull(),
    rolledBack: boolean('rolled_back').notNull().default(false),
    /** open → acknowledged → resolved; an outcome record of "none" is born resolved. */
    status: text('status', { enum: INCIDENT_STATUSES }).notNull().default('open'),
    acknowledgedAt: timestamp('acknowledged_at', { withTimezone: true }),
    acknowledgedBy: text('acknowledged_by'),
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
    resolvedBy: text('resolved_by'),
    note: text('note'),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('incidents_run_dedupe_uq').on(t.runId, t.dedupeKey),
    index('incidents_tenant_status_idx').on(t.tenantId, t.status, t.createdAt),
  ],
);

export const policyEvaluations = pgTable(
  'policy_evaluations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    /** 'final' for the run's closing evaluation, 'check:<n>' for mid-run checks. */
    dedupeKey: text('dedupe_key').notNull(),
    kind: text('kind', { enum: ['final', 'mid_run'] }).notNull(),
    stepIndex: integer('step_index'),
    decision: text('decision').notNull(),
    reason: text('reason').notNull(),
    violations: jsonb('violations').$type<unknown[]>().notNull().default([]),
    policyVersion: integer('policy_version').notNull(),
    rolledBack: boolean('rolled_back').notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('policy_evaluations_run_dedupe_uq').on(t.runId, t.dedupeKey)],
);

export const runLogs = pgTable('run_logs', {
  id: uuid('id').primaryKey().defaultRandom(),
  runId: uuid('run_id')
    .notNull()
    .unique()
    .references(() => runs.id),
  tenantId: uuid('tenant_id').notNull(),
  status: text('status').notNull(),
  record: jsonb('record').$type<Record<string, unknown>>().notNull(),
  createdAt: createdAt(),
});

export const auditExpectations = pgTable(
  'audit_expectations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    domain: text('domain').notNull(),
    action: text('action').notNull(),
    /** Null makes the contract invalid; the reconciler reports it. */
    deadlineAt: timestamp('deadline_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('audit_expectations_run_action_uq').on(t.runId, t.domain, t.action)],
);

export const domainAcks = pgTable(
  'domain_acks',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    domain: text('domain').notNull(),
    action: text('action').notNull(),
    status: text('status', { enum: ['OK', 'FAILED', 'ROLLED_BACK'] }).notNull(),
    resultId: uuid('result_id'),
    error: text('error'),
    rolledBack: boolean('rolled_back').notNull().default(false),
    rollbackReason: text('rollback_reason'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [
    // One ack of each kind per action: a retried activity or compensation never adds a second.
    uniqueIndex('domain_acks_run_action_status_uq').on(t.runId, t.domain, t.action, t.status),
    check('domain_acks_rollback_ck', sql`(${t.status} = 'ROLLED_BACK') = ${t.rolledBack}`),
  ],
);

/**
 * Every operator or system control of a run (pause, resume, stop, policy change, pause expiry),
 * accepted or not: an ignored signal is recorded here with why.
 */
export const runControlEvents = pgTable(
  'run_control_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    /** Idempotency key within the run, chosen by the workflow. */
    dedupeKey: text('dedupe_key').notNull(),
    kind: text('kind').notNull(),
    actor: text('actor'),
    authority: text('authority'),
    accepted: boolean('accepted').notNull(),
    detail: text('detail'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('run_control_events_run_dedupe_uq').on(t.runId, t.dedupeKey)],
);

/** Events leave only through here, written in the transaction of the change they describe. */
export const outbox = pgTable(
  'outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    topic: text('topic').notNull(),
    runId: uuid('run_id'),
    tenantId: uuid('tenant_id'),
    dedupeKey: text('dedupe_key').notNull().unique(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    createdAt: createdAt(),
    publishedAt: timestamp('published_at', { withTimezone: true }),
    /** Set when a compensation withdrew the event before it was published; it is never sent. */
    retractedAt: timestamp('retracted_at', { withTimezone: true }),
  },
  (t) => [
    index('outbox_unpublished_idx').on(t.id).where(sql`${t.publishedAt} is null and ${t.retractedAt} is null`),
    // What retention prunes, oldest first per tenant (`db/retention.ts`).
    index('outbox_done_idx').on(t.tenantId, t.createdAt).where(sql`${t.publishedAt} is not null or ${t.retractedAt} is not null`),
  ],
);

/**
 * The audit state of one run, created with the run at T0. `due_at` is when the reconciler must look
 * at it next: the deadline at T0, now when `finalize_run` is acked, null once reconciled, and now
 * again when any evidence of a reconciled run changes (a trigger, see migration 0004).
 */
export const auditReconciliations = pgTable(
  'audit_reconciliations',
  {
    runId: uuid('run_id')
      .primaryKey()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    dueAt: timestamp('due_at', { withTimezone: true }),
    finalizedAt: timestamp('finalized_at', { withTimezone: true }),
    /** Null until the first pass; then the verdict of the last one. */
    verdict: text('verdict').$type<AuditVerdict>(),
    report: jsonb('report').$type<RunAuditReport>(),
    passes: integer('passes').notNull().default(0),
    reconciledAt: timestamp('reconciled_at', { withTimezone: true }),
    firstDetectedAt: timestamp('first_detected_at', { withTimezone: true }),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    index('audit_reconciliations_due_idx').on(t.dueAt).where(sql`${t.dueAt} is not null`),
    index('audit_reconciliations_unfinalized_idx').on(t.createdAt).where(sql`${t.finalizedAt} is null`),
  ],
);

/** One check's finding on one run (seed §9.3), with the incident it opened and what was announced. */
export const auditFindings = pgTable(
  'audit_findings',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    check: text('check').$type<AuditCheck>().notNull(),
    severity: text('severity', { enum: ['HIGH', 'MEDIUM'] }).notNull(),
    subjects: jsonb('subjects').$type<string[]>().notNull(),
    /** Every subject an event has announced, so a later pass announces only what is new. */
    announced: jsonb('announced').$type<string[]>().notNull(),
    announcements: integer('announcements').notNull().default(0),
    summary: text('summary').notNull(),
    incidentId: uuid('incident_id').references(() => incidents.id),
    firstDetectedAt: timestamp('first_detected_at', { withTimezone: true }).notNull().defaultNow(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }).notNull().defaultNow(),
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('audit_findings_run_check_uq').on(t.runId, t.check),
    index('audit_findings_open_idx').on(t.tenantId, t.firstDetectedAt, t.id).where(sql`${t.resolvedAt} is null`),
  ],
);

/** Each completed reconciliation pass; `/healthz` and the pass-age metric read the latest. */
export const auditPasses = pgTable(
  'audit_passes',
  {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  /** The pass's first workflow execution, carried through continue-as-new: one row per pass. */
  passId: text('pass_id').notNull().unique(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
  finishedAt: timestamp('finished_at', { withTimezone: true }).notNull().defaultNow(),
  dueRuns: integer('due_runs').notNull(),
  verdicts: jsonb('verdicts').$type<Partial<Record<AuditVerdict, number>>>().notNull(),
  findingsOpened: integer('findings_opened').notNull(),
  findingsResolved: integer('findings_resolved').notNull(),
  },
  (t) => [index('audit_passes_finished_idx').on(t.finishedAt)],
);

export interface StaleRunEntry {
  runId: string;
  tenantId: string;
  phase: string;
  status: string;
  lastProgressAt: string;
  deadlineAt: string;
  ageSeconds: number;
  overdueSeconds: number;
  temporalStatus: string;
  reason: string;
}

/** What the stale-run cron workflow found, one row per report. */
export const staleRunReports = pgTable(
  'stale_run_reports',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** The cron execution that wrote it: a retried write adds no second report. */
    executionId: text('execution_id').notNull().unique(),
    generatedAt: timestamp('generated_at', { withTimezone: true }).notNull().defaultNow(),
    staleCount: integer('stale_count').notNull(),
    runs: jsonb('runs').$type<StaleRunEntry[]>().notNull(),
  },
  (t) => [index('stale_run_reports_generated_idx').on(t.generatedAt)],
);

/** Incidents of the system itself (a reactor that stopped beating, a dead-lettered event of no run). */
export const systemIncidents = pgTable('system_incidents', {
  id: uuid('id').primaryKey().defaultRandom(),
  /** One incident per occurrence, e.g. `reactor-unhealthy:<consumer>:<last beat>`. */
  dedupeKey: text('dedupe_key').notNull().unique(),
  kind: text('kind').notNull(),
  severity: text('severity', { enum: ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] }).notNull(),
  message: text('message').notNull(),
  detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
  createdAt: createdAt(),
  resolvedAt: timestamp('resolved_at', { withTimezone: true }),
});

/** A tenant's alert-fatigue settings (seed §13.6); a tenant without a row gets the defaults. */
export const alertSettings = pgTable('alert_settings', {
  tenantId: uuid('tenant_id')
    .primaryKey()
    .references(() => tenants.id),
  settings: jsonb('settings').$type<AlertSettings>().notNull(),
  updatedBy: text('updated_by'),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Every alert the reactor decided on: sent (to which sinks) or suppressed, and why. */
export const alerts = pgTable(
  'alerts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** The outbox id of the event that raised it: a redelivered event raises nothing new. */
    eventId: bigint('event_id', { mode: 'number' }).notNull(),
    rule: text('rule').notNull(),
    tenantId: uuid('tenant_id'),
    runId: uuid('run_id'),
    domain: text('domain').notNull(),
    severity: text('severity').notNull(),
    title: text('title').notNull(),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull(),
    /** `pending` between the decision to send and the sinks' acceptance. */
    status: text('status', { enum: ['pending', 'sent', 'suppressed'] }).notNull(),
    suppressedReason: text('suppressed_reason', { enum: SUPPRESSION_REASONS }),
    sinks: jsonb('sinks').$type<string[]>().notNull().default([]),
    createdAt: createdAt(),
    sentAt: timestamp('sent_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('alerts_event_rule_uq').on(t.eventId, t.rule),
    index('alerts_tenant_created_idx').on(t.tenantId, t.createdAt),
  ],
);

/**
 * A change that live runs must hear about (a policy version, a tenant's status, a tenant-wide pause
 * or resume), committed with the change itself. The pusher takes its targets once (a delivery row
 * each, below), signals them run by run and marks it pushed; while Temporal is unreachable it stays
 * here and is retried from where it stopped, so no change is lost and no reached run is signalled again.
 */
export const controlPushes = pgTable(
  'control_pushes',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    kind: text('kind').notNull(),
    /** The workflow signal to send and its payload. */
    signal: text('signal').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    /** Which of the tenant's runs: every live one, or only those paused. */
    target: text('target', { enum: ['live', 'paused'] }).notNull(),
    createdAt: createdAt(),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull().defaultNow(),
    lastError: text('last_error'),
    pushedAt: timestamp('pushed_at', { withTimezone: true }),
    signalledRuns: integer('signalled_runs'),
    /** The runs it targets, counted when it took them (its delivery rows); null until then. */
    totalRuns: integer('total_runs'),
    /** Of those, the runs it is done with: signalled, gone (finished meanwhile) or skipped. */
    reachedRuns: integer('reached_runs').notNull().default(0),
    skippedRuns: integer('skipped_runs').notNull().default(0),
    /** Who delivers it now, and until when (a lease, renewed as it goes): a deliverer that died leaves it to another once it lapses. */
    claimedBy: text('claimed_by'),
    claimedUntil: timestamp('claimed_until', { withTimezone: true }),
    /** Attempts in a row that reached no run: the backoff grows with them, not with the attempts that made progress. */
    stalledAttempts: integer('stalled_attempts').notNull().default(0),
  },
  (t) => [
    index('control_pushes_pending_idx').on(t.nextAttemptAt).where(sql`${t.pushedAt} is null`),
    // What retention prunes, oldest first per tenant (`db/retention.ts`).
    index('control_pushes_pushed_idx').on(t.tenantId, t.pushedAt).where(sql`${t.pushedAt} is not null`),
  ],
);

export const PUSH_DELIVERY_OUTCOMES = ['pending', 'signalled', 'gone', 'skipped'] as const;

/**
 * One run a push targets, taken when its delivery began: pending until the run is signalled, gone
 * (its workflow had closed) or skipped (it refuses the signal for good: Temporal's signal limit, or
 * a signal that failed `attempts` times while the push reached other runs). A retried push signals
 * only the pending ones, in run id order.
 */
export const controlPushDeliveries = pgTable(
  'control_push_deliveries',
  {
    pushId: bigint('push_id', { mode: 'number' })
      .notNull()
      .references(() => controlPushes.id, { onDelete: 'cascade' }),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id),
    outcome: text('outcome', { enum: PUSH_DELIVERY_OUTCOMES }).notNull().default('pending'),
    /** Failed signals charged to this run (a failure while the push reached others). */
    attempts: integer('attempts').notNull().default(0),
    /** Why it was skipped, or its last failure. */
    detail: text('detail'),
    reachedAt: timestamp('reached_at', { withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.pushId, t.runId] }),
    index('control_push_deliveries_pending_idx').on(t.pushId, t.runId).where(sql`${t.outcome} = 'pending'`),
  ],
);

/**
 * Spend, rolled up as it is recorded: one row per tenant, hour (UTC), submitting API key, model,
 * skill and tool, added to in the transaction that records each step, turn or tool call (only when
 * that record is new, so a retried activity adds nothing). Reports read these, never the traces;
 * a day is the sum of its hours. Owned by `db/costs.ts`.
 */
export const costRollups = pgTable(
  'cost_rollups',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** The hour the records were written in, truncated in UTC. */
    bucketStart: timestamp('bucket_start', { withTimezone: true }).notNull(),
    /** The API key that submitted the run; null for a run submitted without one. */
    keyId: uuid('key_id').references(() => apiKeys.id),
    /** The model the provider billed; '' for a tool call. */
    model: text('model').notNull(),
    skill: text('skill').notNull(),
    /** `server.tool` for a tool call; '' otherwise. */
    tool: text('tool').notNull().default(''),
    /** Exact: each record's cost added as numeric, so the sum is the traces' sum to the digit. */
    costUsd: numeric('cost_usd').notNull().default('0'),
    tokensIn: bigint('tokens_in', { mode: 'number' }).notNull().default(0),
    tokensOut: bigint('tokens_out', { mode: 'number' }).notNull().default(0),
    /** Records added: plan steps, model turns or tool calls. */
    calls: integer('calls').notNull().default(0),
  },
  (t) => [
    // Led by tenant and hour: it is also the index a report's range reads.
    unique('cost_rollups_dims_uq').on(t.tenantId, t.bucketStart, t.keyId, t.model, t.skill, t.tool).nullsNotDistinct(),
  ],
);

/** A tenant's retention settings (`core/retention.ts`); a tenant without a row gets the defaults. */
export const tenantRetention = pgTable('tenant_retention', {
  tenantId: uuid('tenant_id')
    .primaryKey()
    .references(() => tenants.id),
  runsDays: integer('runs_days').notNull(),
  outboxHours: integer('outbox_hours').notNull(),
  controlPushesHours: integer('control_pushes_hours').notNull(),
  alertsDays: integer('alerts_days').notNull(),
  exportBeforePrune: boolean('export_before_prune').notNull(),
  updatedBy: text('updated_by'),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * What is left of a run its tenant's retention removed: that it existed, when, how it ended, the
 * audit's last word on it and where its records were exported (with the file's sha256), so a
 * reference to the run (an audit question, a Temporal history, a log line) finds an answer.
 */
export const runTombstones = pgTable(
  'run_tombstones',
  {
    runId: uuid('run_id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    phase: text('phase').notNull(),
    runCreatedAt: timestamp('run_created_at', { withTimezone: true }).notNull(),
    runFinishedAt: timestamp('run_finished_at', { withTimezone: true }),
    /** The reconciler's last verdict, null if it never reached one. */
    auditVerdict: text('audit_verdict').$type<AuditVerdict>(),
    /** Rows removed with the run, all tables together. */
    records: integer('records').notNull(),
    exportLocation: text('export_location'),
    exportSha256: text('export_sha256'),
    prunedAt: timestamp('pruned_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('run_tombstones_tenant_pruned_idx').on(t.tenantId, t.prunedAt)],
);

/**
 * The run's evidence chain (README, "Evidence"): one link per version of each record the audit
 * contract covers, appended by a trigger in the transaction that writes the record (hand-written
 * SQL in this table's migration). A link holds the hash of the record's content and the hash of
 * the link before it, so an edit of a record, or of a link, shows where the chain first breaks.
 * Owned by `db/evidence.ts`.
 */
export const evidenceLinks = pgTable(
  'evidence_links',
  {
    runId: uuid('run_id').notNull(),
    tenantId: uuid('tenant_id').notNull(),
    /** 1, 2, … in the order the records were written. */
    seq: integer('seq').notNull(),
    /** `run`, `trace`, `trace_step`, `output`, `approval`, `incident`, `evaluation`, `log`, `ack`, `control`, `verdict`. */
    recordKind: text('record_kind').notNull(),
    /** The record's id (a verdict's: the run's). */
    recordKey: text('record_key').notNull(),
    contentHash: text('content_hash').notNull(),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
    createdAt: createdAt(),
  },
  // The key is the only index: the head, the export and the check all read a run's links by it.
  (t) => [primaryKey({ columns: [t.runId, t.seq] })],
);

/**
 * The tenant's chain of its runs' evidence: when a run finalizes, the head of its chain (seq and
 * hash) is linked here after the tenant's previous finalized run, so a run's chain cannot later be
 * cut short or rewritten without breaking its tenant's.
 */
export const tenantEvidenceLinks = pgTable(
  'tenant_evidence_links',
  {
    tenantId: uuid('tenant_id').notNull(),
    seq: integer('seq').notNull(),
    runId: uuid('run_id').notNull().unique(),
    runSeq: integer('run_seq').notNull(),
    runHash: text('run_hash').notNull(),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.seq] })],
);

/**
 * What a run that failed or came close had to teach (core/lessons.ts), one per run, written by the
 * governance saga's lesson step and acked `lessons/record_lesson`. Filed under its primary
 * observation, whose fields are columns so a tenant's patterns are a grouping of rows; a rolled-back
 * saga marks it rolled back (never deleted) and it leaves the patterns.
 */
export const lessons = pgTable(
  'lessons',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    runId: uuid('run_id')
      .notNull()
      .unique()
      .references(() => runs.id),
    tenantId: uuid('tenant_id').notNull(),
    kind: text('kind', { enum: ['failure', 'near_miss'] }).notNull(),
    code: text('code').notNull(),
    phase: text('phase'),
    stepIndex: integer('step_index'),
    skill: text('skill'),
    tool: text('tool'),
    policyRule: text('policy_rule'),
    spendUsd: doublePrecision('spend_usd'),
    /** For a tool call, how it was resolved (`not_allowed`, `denied`, …). */
    detail: text('detail'),
    /** `core/lessons.ts` patternKeyOf: what groups it with the same lesson of other runs. */
    patternKey: text('pattern_key').notNull(),
    planKey: text('plan_key').notNull(),
    policyVersion: integer('policy_version'),
    observations: jsonb('observations').$type<Observation[]>().notNull(),
    rolledBack: boolean('rolled_back').notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [
    index('lessons_tenant_pattern_idx').on(t.tenantId, t.patternKey).where(sql`not ${t.rolledBack}`),
    index('lessons_tenant_created_idx').on(t.tenantId, t.createdAt),
  ],
);

/**
 * A policy change a pattern proposes (core/lessons.ts), for an admin to accept (a new policy
 * version, pushed to live runs) or dismiss. At most one per tenant, kind and pattern, ever: a
 * dismissal stands, and the pattern growing does not ask again.
 */
export const policyProposals = pgTable(
  'policy_proposals',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    kind: text('kind', { enum: PROPOSAL_KINDS }).notNull(),
    patternKey: text('pattern_key').notNull(),
    reason: text('reason').notNull(),
    changes: jsonb('changes').$type<PolicyChange[]>().notNull(),
    evidence: jsonb('evidence').$type<Record<string, number | string>>().notNull(),
    /** The policy version the proposal was made against. */
    basedOnVersion: integer('based_on_version').notNull(),
    status: text('status', { enum: ['open', 'accepted', 'dismissed'] }).notNull().default('open'),
    decidedAt: timestamp('decided_at', { withTimezone: true }),
    decidedBy: text('decided_by'),
    /** The policy version accepting it made. */
    acceptedVersion: integer('accepted_version'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('policy_proposals_tenant_pattern_uq').on(t.tenantId, t.kind, t.patternKey), index('policy_proposals_tenant_status_idx').on(t.tenantId, t.status, t.createdAt)],
);
