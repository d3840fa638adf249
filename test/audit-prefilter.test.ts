/**
 * The reconciler's prefilter (`checkDueRuns`, db/audit.ts) against the rules (core/audit-reconciliation.ts),
 * over runs generated straight into Postgres: a clean baseline (with the evidence real runs carry:
 * plan steps, agent turns, declared tool calls, failed first attempts, non-outcome incidents and
 * mid-run evaluations, resolved findings), each kind of defect the rules find applied alone, and
 * random combinations. The rules stay the definition; the prefilter may call dirty a run the rules
 * call clean, never the reverse:
 *
 *  (a) every run the prefilter calls clean gets from the rules exactly `cleanRunReport`;
 *  (b) every baseline run is called clean by the prefilter (so it is not trivially "dirty");
 *  (c) every run with a defect is called dirty.
 *
 * Seeded: PREFILTER_SEED=<n> reproduces a failure (the seed is in every assertion message).
 */
import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPLETE_TRACE,
  CREATE_INCIDENT,
  CREATE_LOG_RECORD,
  EVALUATE_POLICY,
  FINALIZE_RUN,
  RECORD_LESSON,
  RUN_EXPECTATIONS,
  START_TRACE,
  modelTurnAction,
  stepRecordAction,
  toolCallAction,
  type AckStatus,
  type AuditAction,
} from '../core/audit';
import { actionKey, cleanRunReport, reconcileRun, type RunAuditReport } from '../core/audit-reconciliation';
import { checkDueRuns, loadAuditRecords, type DueRun } from '../db/audit';
import { connectDatabase, type Database } from '../db/client';
import { freshDatabase } from './helpers/fresh-database';

const SEED = Number(process.env.PREFILTER_SEED ?? Date.now() % 2 ** 31);
const BASELINE = 400;
const PER_KIND = 16;
const COMBINATIONS = 300;

/** mulberry32: small, seeded, good enough to pick mutations. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}
type Rng = ReturnType<typeof prng>;

/** A point in time to the microsecond, as Postgres stores it (JS dates stop at the millisecond). */
interface Micros {
  ms: number;
  us: number;
}
const at = (ms: number, us = 0): Micros => ({ ms, us });
const iso = (t: Micros) => new Date(t.ms).toISOString().replace('Z', `${String(t.us).padStart(3, '0')}Z`);

interface Ack {
  id: string;
  domain: string;
  action: string;
  status: AckStatus;
  resultId: string | null;
  createdAt: Micros;
}
interface Item {
  stepIndex: number;
  turn: number | null;
  callIndex: number | null;
  kind: 'step' | 'turn' | 'tool_call';
}
interface GenRun {
  id: string;
  label: string;
  kinds: string[];
  phase: string;
  finalizeAt: Micros;
  expectations: { domain: string; action: string; deadlineAt: Micros | null }[];
  acks: Ack[];
  traces: { id: string; status: 'running' | 'completed'; rolledBack: boolean }[];
  incidents: { id: string; dedupeKey: string; kind: string; rolledBack: boolean }[];
  evaluations: { id: string; dedupeKey: string; kind: 'final' | 'mid_run'; rolledBack: boolean }[];
  logs: { id: string }[];
  steps: (Item & { createdAt: Micros })[];
  outputs: (Item & { id: string })[];
  /** The run's lesson, declared by a run that had one to teach. */
  lessons: { id: string; rolledBack: boolean }[];
  findings: { check: string; resolved: boolean }[];
}

const CONTRACT_ROWS = [START_TRACE, COMPLETE_TRACE, CREATE_INCIDENT, EVALUATE_POLICY, CREATE_LOG_RECORD] as const;
const is = (a: { domain: string; action: string }, b: { domain: string; action: string }) => a.domain === b.domain && a.action === b.action;

/**
 * A clean, finalized run as the product writes it, with some of the evidence real runs carry.
 * Timestamps carry microseconds; the finalize ack comes last but for what a mutation adds.
 */
function cleanRun(rng: Rng, label: string, now: number): GenRun {
  const id = randomUUID();
  const start = now - 86_400_000 + rng.int(3_600_000);
  const minute = (m: number) => at(start + m * 60_000 + rng.int(1000), rng.int(1000));
  const failed = rng.chance(0.2);
  const trace = { id: randomUUID(), status: 'completed' as const, rolledBack: false };
  const incident = { id: randomUUID(), dedupeKey: 'outcome', kind: failed ? 'failure' : 'none', rolledBack: false };
  const evaluation = { id: randomUUID(), dedupeKey: 'final', kind: 'final' as const, rolledBack: false };
  const log = { id: randomUUID() };
  const finalizeAt = minute(30);
  // Deadlines on either side of now: a finalized run is settled whatever they say.
  const deadline = rng.chance(0.5) ? at(now + 3_600_000 + rng.int(1000), rng.int(1000)) : at(start + 3_600_000, rng.int(1000));
  const resultOf = (a: AuditAction) =>
    is(a, START_TRACE) || is(a, COMPLETE_TRACE) ? trace.id : is(a, CREATE_INCIDENT) ? incident.id : is(a, EVALUATE_POLICY) ? evaluation.id : is(a, CREATE_LOG_RECORD) ? log.id : id;
  const run: GenRun = {
    id,
    label,
    kinds: [],
    phase: failed ? 'FAILED' : 'COMPLETED',
    finalizeAt,
    expectations: RUN_EXPECTATIONS.map((e) => ({ domain: e.domain, action: e.action, deadlineAt: deadline })),
    acks: RUN_EXPECTATIONS.map((e, i) => ({
      id: randomUUID(),
      domain: e.domain,
      action: e.action,
      status: 'OK' as const,
      resultId: resultOf(e),
      createdAt: is(e, FINALIZE_RUN) ? finalizeAt : minute(20 + i),
    })),
    traces: [trace],
    incidents: [incident],
    evaluations: [evaluation],
    logs: [log],
    steps: [],
    outputs: [],
    lessons: [],
    findings: [],
  };
  // A failed run's lesson: declared, written and acked.
  if (failed && rng.chance(0.7)) {
    const lesson = { id: randomUUID(), rolledBack: false };
    run.lessons.push(lesson);
    run.expectations.push({ ...RECORD_LESSON, deadlineAt: deadline });
    run.acks.push({ id: randomUUID(), ...RECORD_LESSON, status: 'OK', resultId: lesson.id, createdAt: minute(19) });
  }
  // Plan steps: a trace step, its stored output and its record's ack naming it.
  const planSteps = rng.int(4);
  for (let s = 0; s < planSteps; s++) addItem(run, { stepIndex: s, turn: null, callIndex: null, kind: 'step' }, minute(1 + s));
  // An agent step: model turns, and tool calls declared when asked for and acked when resolved.
  if (rng.chance(0.3)) {
    const s = planSteps;
    for (let t = 0; t < 1 + rng.int(3); t++) {
      addItem(run, { stepIndex: s, turn: t, callIndex: null, kind: 'turn' }, minute(6 + t));
      for (let c = 0; c < rng.int(3); c++) {
        run.expectations.push({ ...toolCallAction(s, t, c), deadlineAt: deadline });
        addItem(run, { stepIndex: s, turn: t, callIndex: c, kind: 'tool_call' }, minute(6 + t));
      }
    }
  }
  // A first attempt that failed before the one that counts.
  if (rng.chance(0.2)) {
    const e = rng.pick(RUN_EXPECTATIONS);
    run.acks.push({ id: randomUUID(), domain: e.domain, action: e.action, status: 'FAILED', resultId: null, createdAt: minute(15) });
  }
  // Rows that are not evidence of the contract: a mid-run incident, a mid-run policy check.
  if (rng.chance(0.2)) run.incidents.push({ id: randomUUID(), dedupeKey: 'escalation:1', kind: rng.pick(['escalation', 'tool', 'audit']), rolledBack: false });
  if (rng.chance(0.2)) run.evaluations.push({ id: randomUUID(), dedupeKey: 'check:1', kind: 'mid_run', rolledBack: rng.chance(0.5) });
  // A finding an earlier pass resolved.
  if (rng.chance(0.15)) run.findings.push({ check: 'drift', resolved: true });
  // A trace step written at the very instant of the finalize ack is not after it.
  if (rng.chance(0.1)) run.steps.push({ stepIndex: 90, turn: null, callIndex: null, kind: 'step', createdAt: finalizeAt });
  return run;
}

/** The run's lesson, declared, written and acked first if the run had none. */
function withLesson(run: GenRun): { id: string; rolledBack: boolean } {
  if (run.lessons[0]) return run.lessons[0];
  const lesson = { id: randomUUID(), rolledBack: false };
  run.lessons.push(lesson);
  run.expectations.push({ ...RECORD_LESSON, deadlineAt: run.expectations[0]!.deadlineAt });
  run.acks.push({ id: randomUUID(), ...RECORD_LESSON, status: 'OK', resultId: lesson.id, createdAt: later(run.finalizeAt, -3000) });
  return lesson;
}

function itemAction(item: Item): AuditAction {
  if (item.kind === 'step') return stepRecordAction(item.stepIndex);
  if (item.kind === 'turn') return modelTurnAction(item.stepIndex, item.turn!);
  return toolCallAction(item.stepIndex, item.turn!, item.callIndex!);
}

/** One of the run's items, as the product writes it: its trace step, stored output and OK ack. */
function addItem(run: GenRun, item: Item, createdAt: Micros): void {
  const output = { ...item, id: randomUUID() };
  run.steps.push({ ...item, createdAt });
  run.outputs.push(output);
  run.acks.push({ id: randomUUID(), ...itemAction(item), status: 'OK', resultId: output.id, createdAt });
}

/** One of the run's OK acks of these actions (a combination may have removed them all). */
const contractAck = (run: GenRun, rng: Rng, among: readonly AuditAction[] = RUN_EXPECTATIONS): Ack | undefined => {
  const acks = run.acks.filter((a) => a.status === 'OK' && among.some((action) => is(a, action)));
  return acks.length > 0 ? rng.pick(acks) : undefined;
};
const later = (t: Micros, ms: number, us = 0): Micros => at(t.ms + ms, us);

/**
 * Each kind of defect the rules find, applied to a clean run. `rulesClean`: the rules still call
 * the run clean (the pass must look at it all the same, or the prefilter errs on the safe side).
 */
const MUTATIONS: Record<string, { apply: (run: GenRun, rng: Rng) => void; rulesClean?: boolean }> = {
  'missing ack': {
    apply: (run, rng) => {
      const ack = contractAck(run, rng);
      run.acks = run.acks.filter((a) => a !== ack);
    },
  },
  'FAILED ack only': {
    apply: (run, rng) => {
      const ack = contractAck(run, rng);
      if (!ack) return;
      run.acks = run.acks.filter((a) => !(is(a, ack) && a.status === 'FAILED'));
      Object.assign(ack, { status: 'FAILED', resultId: null });
    },
  },
  'undeclared ack (drift)': {
    apply: (run, rng) =>
      run.acks.push({
        id: randomUUID(),
        domain: rng.pick(['logs', 'policies', 'incidents', 'orchestrator']),
        action: rng.pick(['extra_write', 'start_trace_again', 'record:1']),
        status: rng.pick(['OK', 'FAILED'] as const),
        resultId: rng.chance(0.5) ? randomUUID() : null,
        createdAt: later(run.finalizeAt, -1000),
      }),
  },
  'undeclared tool call (drift)': {
    apply: (run) => addItem(run, { stepIndex: 7, turn: 0, callIndex: 0, kind: 'tool_call' }, later(run.finalizeAt, -1000)),
  },
  'ack naming no row (phantom)': {
    apply: (run, rng) => {
      const ack = contractAck(run, rng, [...CONTRACT_ROWS, FINALIZE_RUN]);
      if (ack) ack.resultId = rng.chance(0.8) ? randomUUID() : null;
    },
  },
  'ack naming a rolled-back row (phantom)': {
    apply: (run, rng) => {
      const row = rng.pick([run.traces[0]!, run.incidents[0]!, run.evaluations[0]!]);
      row.rolledBack = true;
    },
  },
  'lesson rolled back under its OK ack (phantom)': {
    apply: (run) => {
      withLesson(run).rolledBack = true;
    },
  },
  'lesson ack naming no row (phantom)': {
    apply: (run) => {
      withLesson(run);
      const ack = run.acks.find((a) => is(a, RECORD_LESSON) && a.status === 'OK');
      // Another defect of the combination may have taken the OK ack away: one naming nothing comes back.
      if (ack) ack.resultId = randomUUID();
      else run.acks.push({ id: randomUUID(), ...RECORD_LESSON, status: 'OK', resultId: randomUUID(), createdAt: later(run.finalizeAt, -3000) });
    },
  },
  'lesson row no ack names (drift)': {
    apply: (run) => {
      if (run.lessons.length === 0) run.lessons.push({ id: randomUUID(), rolledBack: false });
      else run.acks = run.acks.filter((a) => !is(a, RECORD_LESSON));
    },
  },
  'trace not completed (phantom)': {
    apply: (run) => {
      run.traces[0]!.status = 'running';
    },
  },
  'ROLLED_BACK ack': {
    apply: (run, rng) => {
      const e = rng.pick(RUN_EXPECTATIONS);
      run.acks.push({ id: randomUUID(), ...e, status: 'ROLLED_BACK', resultId: null, createdAt: later(run.finalizeAt, -500) });
    },
  },
  'expectation without deadline': {
    apply: (run, rng) => {
      rng.pick(run.expectations).deadlineAt = null;
    },
  },
  'contract action not declared': {
    apply: (run, rng) => {
      const e = rng.pick(RUN_EXPECTATIONS);
      run.expectations = run.expectations.filter((x) => !is(x, e));
    },
  },
  'trace step after finalize': {
    apply: (run, rng) => run.steps.push({ stepIndex: 50, turn: null, callIndex: null, kind: 'step', createdAt: later(run.finalizeAt, 1 + rng.int(60_000), rng.int(1000)) }),
  },
  'step ack without its output': {
    apply: (run, rng) =>
      run.acks.push({ id: randomUUID(), ...stepRecordAction(40), status: 'OK', resultId: rng.chance(0.8) ? randomUUID() : null, createdAt: later(run.finalizeAt, -2000) }),
  },
  'turn ack without its output': {
    apply: (run) => run.acks.push({ id: randomUUID(), ...modelTurnAction(41, 0), status: 'OK', resultId: randomUUID(), createdAt: later(run.finalizeAt, -2000) }),
  },
  'tool-call ack without its output': {
    apply: (run) => {
      run.expectations.push({ ...toolCallAction(42, 0, 0), deadlineAt: run.expectations[0]!.deadlineAt });
      run.acks.push({ id: randomUUID(), ...toolCallAction(42, 0, 0), status: 'OK', resultId: randomUUID(), createdAt: later(run.finalizeAt, -2000) });
    },
  },
  'output no ack names (drift)': {
    apply: (run, rng) => {
      const item = { stepIndex: 43, turn: rng.chance(0.5) ? 0 : null, callIndex: null, kind: 'step' as const };
      run.outputs.push({ ...item, id: randomUUID() });
    },
  },
  'ack naming another output (phantom)': {
    apply: (run) => {
      addItem(run, { stepIndex: 44, turn: null, callIndex: null, kind: 'step' }, later(run.finalizeAt, -2000));
      run.acks.at(-1)!.resultId = randomUUID();
    },
  },
  'outcome row no ack names (drift)': {
    apply: (run, rng) => {
      if (rng.chance(0.5)) run.incidents.push({ id: randomUUID(), dedupeKey: 'outcome:2', kind: rng.pick(['failure', 'none']), rolledBack: false });
      else run.evaluations.push({ id: randomUUID(), dedupeKey: 'final:2', kind: 'final', rolledBack: false });
    },
  },
  'declared tool call never resolved': {
    apply: (run) => run.expectations.push({ ...toolCallAction(45, 0, 0), deadlineAt: run.expectations[0]!.deadlineAt }),
  },
  'open finding': {
    apply: (run, rng) => {
      const check = rng.pick(['drift', 'missing', 'phantom']);
      run.findings = [...run.findings.filter((f) => f.check !== check), { check, resolved: false }];
    },
    rulesClean: true,
  },
  'run not in a terminal phase': {
    apply: (run, rng) => {
      run.phase = rng.pick(['EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'AUTHORIZED']);
    },
  },
  'not finalized': {
    apply: (run, rng) => {
      run.acks = run.acks.filter((a) => !is(a, FINALIZE_RUN) || (a.status === 'FAILED' && rng.chance(0.5)));
      if (rng.chance(0.5)) run.phase = 'EXECUTING';
    },
  },
};

/** What the prefilter may call dirty though the rules call it clean: it compares to the microsecond. */
const EDGES: Record<string, (run: GenRun) => void> = {
  'trace step a microsecond after finalize': (run) => {
    if (run.finalizeAt.us < 999) run.steps.push({ stepIndex: 60, turn: null, callIndex: null, kind: 'step', createdAt: at(run.finalizeAt.ms, run.finalizeAt.us + 1) });
  },
};

function isClean(r: RunAuditReport): boolean {
  return r.verdict === 'COMPLETE' && r.settled && r.findings.length === 0 && r.stale === null && [r.missing, r.drift, r.invalid, r.phantom].every((s) => s.length === 0);
}

/** The fields a pass stores and acts on. */
const essentials = (r: RunAuditReport) => ({
  runId: r.runId,
  verdict: r.verdict,
  settled: r.settled,
  finalizedAt: r.finalizedAt?.toISOString() ?? null,
  nextCheckAt: r.nextCheckAt?.toISOString() ?? null,
  missing: r.missing,
  drift: r.drift,
  stale: r.stale,
  invalid: r.invalid,
  phantom: r.phantom,
  findings: r.findings,
});

async function insert(sql: postgres.Sql, table: string, columns: string, rows: readonly Record<string, unknown>[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 2000) {
    const chunk = rows.slice(i, i + 2000);
    const names = columns.split(',').map((c) => c.trim().split(' ')[0]);
    await sql.unsafe(`insert into ${table} (${names.join(', ')}) select ${names.join(', ')} from jsonb_to_recordset($1::text::jsonb) as x(${columns})`, [
      JSON.stringify(chunk),
    ]);
  }
}

async function store(sql: postgres.Sql, tenantId: string, runs: readonly GenRun[]): Promise<void> {
  const item = (i: Item) => ({ step_index: i.stepIndex, turn: i.turn, call_index: i.callIndex, kind: i.kind });
  await insert(
    sql,
    'runs',
    'id uuid, tenant_id uuid, request_hash text, plan jsonb, budget_usd float8, status text, phase text, authorization_decision text, policy_version int, observability_mode text',
    runs.map((r) => ({
      id: r.id,
      tenant_id: tenantId,
      request_hash: r.id,
      plan: [],
      budget_usd: 1,
      status: r.phase === 'FAILED' ? 'failed' : r.phase === 'COMPLETED' ? 'succeeded' : 'running',
      phase: r.phase,
      authorization_decision: 'ALLOWED',
      policy_version: 1,
      observability_mode: 'DEGRADED',
    })),
  );
  await insert(
    sql,
    'audit_reconciliations',
    'run_id uuid, tenant_id uuid, due_at timestamptz, finalized_at timestamptz',
    runs.map((r) => ({ run_id: r.id, tenant_id: tenantId, due_at: new Date(Date.now() - 60_000).toISOString(), finalized_at: iso(r.finalizeAt) })),
  );
  await insert(
    sql,
    'audit_expectations',
    'run_id uuid, domain text, action text, deadline_at timestamptz',
    runs.flatMap((r) => r.expectations.map((e) => ({ run_id: r.id, domain: e.domain, action: e.action, deadline_at: e.deadlineAt && iso(e.deadlineAt) }))),
  );
  await insert(
    sql,
    'traces',
    'id uuid, run_id uuid, tenant_id uuid, status text, rolled_back boolean',
    runs.flatMap((r) => r.traces.map((t) => ({ id: t.id, run_id: r.id, tenant_id: tenantId, status: t.status, rolled_back: t.rolledBack }))),
  );
  await insert(
    sql,
    'incidents',
    'id uuid, run_id uuid, tenant_id uuid, dedupe_key text, kind text, severity text, message text, rolled_back boolean',
    runs.flatMap((r) =>
      r.incidents.map((i) => ({ id: i.id, run_id: r.id, tenant_id: tenantId, dedupe_key: i.dedupeKey, kind: i.kind, severity: 'LOW', message: 'generated', rolled_back: i.rolledBack })),
    ),
  );
  await insert(
    sql,
    'policy_evaluations',
    'id uuid, run_id uuid, tenant_id uuid, dedupe_key text, kind text, decision text, reason text, policy_version int, rolled_back boolean',
    runs.flatMap((r) =>
      r.evaluations.map((p) => ({
        id: p.id,
        run_id: r.id,
        tenant_id: tenantId,
        dedupe_key: p.dedupeKey,
        kind: p.kind,
        decision: 'COMPLIANT',
        reason: 'generated',
        policy_version: 1,
        rolled_back: p.rolledBack,
      })),
    ),
  );
  await insert(
    sql,
    'lessons',
    'id uuid, run_id uuid, tenant_id uuid, kind text, code text, pattern_key text, plan_key text, observations jsonb, rolled_back boolean',
    runs.flatMap((r) =>
      r.lessons.map((l) => ({ id: l.id, run_id: r.id, tenant_id: tenantId, kind: 'failure', code: 'STEP_FAILED', pattern_key: 'STEP_FAILED:step:0:-', plan_key: '', observations: [], rolled_back: l.rolledBack })),
    ),
  );
  await insert(
    sql,
    'run_logs',
    'id uuid, run_id uuid, tenant_id uuid, status text, record jsonb',
    runs.flatMap((r) => r.logs.map((l) => ({ id: l.id, run_id: r.id, tenant_id: tenantId, status: 'succeeded', record: {} }))),
  );
  await insert(
    sql,
    'trace_steps',
    'run_id uuid, step_index int, turn int, call_index int, kind text, skill text, model text, tokens_in int, tokens_out int, cost_usd float8, duration_ms int, created_at timestamptz',
    runs.flatMap((r) =>
      r.steps.map((s) => ({ run_id: r.id, ...item(s), skill: 'sim.llm', model: 'sim', tokens_in: 1, tokens_out: 1, cost_usd: 0, duration_ms: 1, created_at: iso(s.createdAt) })),
    ),
  );
  await insert(
    sql,
    'step_outputs',
    'id uuid, run_id uuid, tenant_id uuid, step_index int, turn int, call_index int, kind text, content_type text, content text, sha256 text, bytes int',
    runs.flatMap((r) => r.outputs.map((o) => ({ id: o.id, run_id: r.id, tenant_id: tenantId, ...item(o), content_type: 'text/plain', content: 'x', sha256: 'x', bytes: 1 }))),
  );
  await insert(
    sql,
    'domain_acks',
    'id uuid, run_id uuid, domain text, action text, status text, result_id uuid, rolled_back boolean, created_at timestamptz',
    runs.flatMap((r) =>
      r.acks.map((a) => ({
        id: a.id,
        run_id: r.id,
        domain: a.domain,
        action: a.action,
        status: a.status,
        result_id: a.resultId,
        rolled_back: a.status === 'ROLLED_BACK',
        created_at: iso(a.createdAt),
      })),
    ),
  );
  await insert(
    sql,
    'audit_findings',
    'run_id uuid, tenant_id uuid, "check" text, severity text, subjects jsonb, announced jsonb, summary text, resolved_at timestamptz',
    runs.flatMap((r) =>
      r.findings.map((f) => ({
        run_id: r.id,
        tenant_id: tenantId,
        check: f.check,
        severity: 'HIGH',
        subjects: ['x'],
        announced: ['x'],
        summary: 'generated',
        resolved_at: f.resolved ? new Date().toISOString() : null,
      })),
    ),
  );
}

describe('the reconciler prefilter against the rules', () => {
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let db: Database;
  const generated: GenRun[] = [];
  let page: { runs: DueRun[]; now: Date };
  const reports = new Map<string, RunAuditReport>();
  const why = (run: GenRun, extra = '') => `seed ${SEED} (PREFILTER_SEED=${SEED}), run ${run.id} (${run.label}: ${run.kinds.join(' + ') || 'clean'})${extra}`;

  beforeAll(async () => {
    database = await freshDatabase('audit_prefilter');
    db = connectDatabase(database.url);
    const rng = prng(SEED);
    const now = Date.now();
    for (let i = 0; i < BASELINE; i++) generated.push(cleanRun(rng, 'baseline', now));
    for (const [kind, mutation] of Object.entries(MUTATIONS)) {
      for (let i = 0; i < PER_KIND; i++) {
        const run = cleanRun(rng, 'one defect', now);
        mutation.apply(run, rng);
        run.kinds.push(kind);
        generated.push(run);
      }
    }
    for (const [kind, edge] of Object.entries(EDGES)) {
      for (let i = 0; i < PER_KIND; i++) {
        const run = cleanRun(rng, 'edge', now);
        edge(run);
        run.kinds.push(kind);
        generated.push(run);
      }
    }
    const kinds = Object.keys(MUTATIONS);
    for (let i = 0; i < COMBINATIONS; i++) {
      const run = cleanRun(rng, 'combination', now);
      const n = 2 + rng.int(3);
      for (let k = 0; k < n; k++) {
        const kind = rng.pick(kinds);
        MUTATIONS[kind]!.apply(run, rng);
        run.kinds.push(kind);
      }
      generated.push(run);
    }
    // Unique keys a mutation may collide with (one ack per action and status, one output per item).
    for (const run of generated) {
      const seen = new Set<string>();
      run.acks = run.acks.filter((a) => !seen.has(`${actionKey(a)}:${a.status}`) && Boolean(seen.add(`${actionKey(a)}:${a.status}`)));
      const items = new Set<string>();
      const itemKey = (i: Item) => `${i.stepIndex}.${i.turn}.${i.callIndex}`;
      run.outputs = run.outputs.filter((o) => !items.has(itemKey(o)) && Boolean(items.add(itemKey(o))));
      items.clear();
      run.steps = run.steps.filter((s) => !items.has(itemKey(s)) && Boolean(items.add(itemKey(s))));
      const keys = new Set<string>();
      run.expectations = run.expectations.filter((e) => !keys.has(actionKey(e)) && Boolean(keys.add(actionKey(e))));
      const dedupe = new Set<string>();
      run.incidents = run.incidents.filter((i) => !dedupe.has(i.dedupeKey) && Boolean(dedupe.add(i.dedupeKey)));
      dedupe.clear();
      run.evaluations = run.evaluations.filter((p) => !dedupe.has(p.dedupeKey) && Boolean(dedupe.add(p.dedupeKey)));
    }

    const sql = postgres(database.url, { max: 1, onnotice: () => {} });
    try {
      const [tenant] = await sql<{ id: string }[]>`insert into tenants (name) values ('prefilter') returning id`;
      await store(sql, tenant!.id, generated);
    } finally {
      await sql.end();
    }

    // As a pass's page does it: the prefilter, then the rules on the runs' loaded records.
    await db.db.transaction(async (tx) => {
      const checked = await checkDueRuns(tx, { dueBefore: null, limit: generated.length + 10 });
      page = checked;
      const records = await loadAuditRecords(
        tx,
        generated.map((r) => r.id),
      );
      for (const record of records.values()) reports.set(record.runId, reconcileRun({ ...record, now: checked.now }));
    });
  }, 120_000);

  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  const verdicts = () => new Map(page.runs.map((r) => [r.runId, r]));

  it('checks every due run once, and the rules read every run', () => {
    expect(page.runs.length, `seed ${SEED}`).toBe(generated.length);
    expect(new Set(page.runs.map((r) => r.runId)).size, `seed ${SEED}`).toBe(generated.length);
    expect(reports.size, `seed ${SEED}`).toBe(generated.length);
  });

  it('(a) a run the prefilter calls clean gets exactly cleanRunReport from the rules', () => {
    const byId = new Map(generated.map((r) => [r.id, r]));
    let clean = 0;
    for (const due of page.runs) {
      if (!due.clean) continue;
      clean++;
      const run = byId.get(due.runId)!;
      expect(due.finalizedAt, why(run)).not.toBeNull();
      const rules = reports.get(due.runId)!;
      expect(essentials(rules), why(run, `: rules say ${JSON.stringify(essentials(rules))}`)).toEqual(essentials(cleanRunReport(due.runId, due.finalizedAt!)));
    }
    expect(clean, `seed ${SEED}`).toBeGreaterThanOrEqual(BASELINE);
  });

  it('(b) every baseline run is clean by the rules and by the prefilter', () => {
    const due = verdicts();
    for (const run of generated.filter((r) => r.label === 'baseline')) {
      expect(isClean(reports.get(run.id)!), why(run, `: rules say ${JSON.stringify(essentials(reports.get(run.id)!))}`)).toBe(true);
      expect(due.get(run.id)!.clean, why(run)).toBe(true);
    }
  });

  it('(c) every kind of defect, alone or combined, is called dirty', () => {
    const due = verdicts();
    const dirtyByKind = new Map<string, number>();
    for (const run of generated.filter((r) => r.label === 'one defect' || r.label === 'combination')) {
      expect(due.get(run.id)!.clean, why(run)).toBe(false);
      const rulesClean = run.kinds.every((k) => MUTATIONS[k]!.rulesClean);
      // The generator made a real defect: the rules find it too (but an open finding, which they resolve).
      if (!rulesClean) expect(isClean(reports.get(run.id)!), why(run, ': the rules found nothing')).toBe(false);
      if (run.label === 'one defect') dirtyByKind.set(run.kinds[0]!, (dirtyByKind.get(run.kinds[0]!) ?? 0) + 1);
    }
    expect([...dirtyByKind.keys()].sort(), `seed ${SEED}`).toEqual(Object.keys(MUTATIONS).sort());
    expect([...dirtyByKind.values()].every((n) => n === PER_KIND), `seed ${SEED}`).toBe(true);
  });
});
