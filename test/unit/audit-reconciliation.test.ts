import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RUN_EXPECTATIONS, type AckStatus } from '../../core/audit';
import { actionKey, reconcileRun, type AckRecord, type RunAuditInput } from '../../core/audit-reconciliation';

const RUN = '00000000-0000-4000-8000-000000000001';
const IDS = {
  trace: '00000000-0000-4000-8000-0000000000a1',
  incident: '00000000-0000-4000-8000-0000000000b1',
  evaluation: '00000000-0000-4000-8000-0000000000c1',
  log: '00000000-0000-4000-8000-0000000000d1',
};
const T0 = new Date('2026-11-24T10:00:00Z');
const DEADLINE = new Date('2026-11-24T11:05:00Z');
const FINALIZED = new Date('2026-11-24T10:00:05Z');
const BEFORE_DEADLINE = new Date('2026-11-24T10:30:00Z');
const AFTER_DEADLINE = new Date('2026-11-24T11:10:00Z');

const RESULT_OF: Record<string, string> = {
  'logs/start_trace': IDS.trace,
  'logs/complete_trace': IDS.trace,
  'incidents/create_incident': IDS.incident,
  'policies/evaluate_policy': IDS.evaluation,
  'logs/create_log_record': IDS.log,
  'orchestrator/finalize_run': RUN,
};

let ackNumber = 0;
function ack(key: string, status: AckStatus = 'OK', overrides: Partial<AckRecord> = {}): AckRecord {
  const [domain, action] = key.split('/') as [string, string];
  ackNumber += 1;
  return {
    id: `ack-${ackNumber}`,
    domain,
    action,
    status,
    resultId: status === 'FAILED' ? null : (RESULT_OF[key] ?? null),
    createdAt: key === 'orchestrator/finalize_run' ? FINALIZED : T0,
    ...overrides,
  };
}

const ALL_KEYS = RUN_EXPECTATIONS.map(actionKey);

/** A run that completed with every record written and acked once. */
function cleanRun(overrides: Partial<RunAuditInput> = {}): RunAuditInput {
  return {
    runId: RUN,
    expectations: RUN_EXPECTATIONS.map((e) => ({ ...e, deadlineAt: DEADLINE })),
    acks: ALL_KEYS.map((k) => ack(k)),
    evidence: {
      run: { phase: 'COMPLETED' },
      traces: [{ id: IDS.trace, status: 'completed', rolledBack: false }],
      outcomeIncidents: [{ id: IDS.incident, rolledBack: false }],
      finalEvaluations: [{ id: IDS.evaluation, rolledBack: false }],
      logRecords: [{ id: IDS.log }],
      traceSteps: [{ stepIndex: 0, createdAt: T0 }],
      outputs: [],
      lessons: [],
    },
    now: AFTER_DEADLINE,
    ...overrides,
  };
}

const withoutAcks = (...keys: string[]) => ALL_KEYS.filter((k) => !keys.includes(k)).map((k) => ack(k));

describe('the reconciler validation matrix (seed §9.3)', () => {
  it('calls a run with every ack and every row COMPLETE, with no findings', () => {
    const report = reconcileRun(cleanRun());
    expect(report).toMatchObject({ verdict: 'COMPLETE', missing: [], drift: [], stale: null, invalid: [], phantom: [], findings: [] });
    expect(report.expectations.every((e) => e.satisfied)).toBe(true);
  });

  const table: [string, Partial<RunAuditInput>, string, Record<string, unknown>][] = [
    [
      'missing: a domain that never acked',
      { acks: withoutAcks('incidents/create_incident'), evidence: { ...cleanRun().evidence, outcomeIncidents: [] } },
      'INCOMPLETE',
      { missing: [{ domain: 'incidents', action: 'create_incident', because: 'NO_ACK' }] },
    ],
    [
      'missing: a FAILED ack does not satisfy',
      { acks: [...withoutAcks('logs/start_trace'), ack('logs/start_trace', 'FAILED')] },
      'INCOMPLETE',
      { missing: [{ domain: 'logs', action: 'start_trace', because: 'FAILED' }] },
    ],
    [
      'missing: a ROLLED_BACK ack withdraws the OK one',
      {
        acks: [...ALL_KEYS.map((k) => ack(k)), ack('policies/evaluate_policy', 'ROLLED_BACK')],
        evidence: { ...cleanRun().evidence, finalEvaluations: [{ id: IDS.evaluation, rolledBack: true }] },
      },
      'INCOMPLETE',
      { missing: [{ domain: 'policies', action: 'evaluate_policy', because: 'ROLLED_BACK' }], phantom: [], drift: [] },
    ],
    [
      'drift: an ack nobody declared',
      { acks: [...ALL_KEYS.map((k) => ack(k)), ack('logs/rogue_write', 'OK', { id: 'rogue-ack' })] },
      'INCOMPLETE',
      { drift: [{ domain: 'logs', action: 'rogue_write', kind: 'UNDECLARED_ACK', id: 'rogue-ack' }] },
    ],
    [
      'drift: a second outcome incident no ack names',
      { evidence: { ...cleanRun().evidence, outcomeIncidents: [{ id: IDS.incident, rolledBack: false }, { id: 'second', rolledBack: false }] } },
      'INCOMPLETE',
      { drift: [{ domain: 'incidents', action: 'create_incident', kind: 'UNACKED_ROW', id: 'second' }] },
    ],
    [
      'drift: a trace step written after the run finalized',
      { evidence: { ...cleanRun().evidence, traceSteps: [{ stepIndex: 0, createdAt: T0 }, { stepIndex: 7, createdAt: new Date(FINALIZED.getTime() + 1) }] } },
      'INCOMPLETE',
      { drift: [{ domain: 'logs', action: 'trace_step', kind: 'LATE_TRACE_STEP', stepIndex: 7 }] },
    ],
    [
      'drift: a log record of a run that never acked it',
      { acks: withoutAcks('logs/create_log_record') },
      'INCOMPLETE',
      {
        missing: [{ domain: 'logs', action: 'create_log_record', because: 'NO_ACK' }],
        drift: [{ domain: 'logs', action: 'create_log_record', kind: 'UNACKED_ROW', id: IDS.log }],
      },
    ],
    [
      'stale: finalize_run never acked, workflow still running',
      {
        acks: withoutAcks('orchestrator/finalize_run'),
        evidence: { ...cleanRun().evidence, run: { phase: 'FINALIZING' } },
        liveness: { state: 'running', phase: 'FINALIZING', since: FINALIZED },
      },
      'STALE',
      {
        missing: [{ domain: 'orchestrator', action: 'finalize_run', because: 'NO_ACK' }],
        stale: { deadlineAt: DEADLINE, overdueSeconds: 300, reason: `workflow still running, stuck in phase FINALIZING since ${FINALIZED.toISOString()}` },
      },
    ],
    [
      'stale: the workflow closed without finalizing',
      { acks: [], evidence: { ...cleanRun().evidence, traces: [], outcomeIncidents: [], finalEvaluations: [], logRecords: [], traceSteps: [], run: { phase: 'EXECUTING' } }, liveness: { state: 'closed', status: 'FAILED', closedAt: null } },
      'STALE',
      { stale: { reason: 'workflow closed (FAILED) without finalizing' }, missing: ALL_KEYS.map((k) => expect.objectContaining({ because: 'NO_ACK', action: k.split('/')[1] })) },
    ],
    [
      'stale: no workflow at all',
      { acks: [], evidence: { ...cleanRun().evidence, traces: [], outcomeIncidents: [], finalEvaluations: [], logRecords: [], traceSteps: [], run: { phase: 'CREATED' } }, liveness: { state: 'not_found' } },
      'STALE',
      { stale: { reason: 'workflow not found' } },
    ],
    [
      'invalid: an expectation without a deadline',
      { expectations: RUN_EXPECTATIONS.map((e) => ({ ...e, deadlineAt: e.action === 'evaluate_policy' ? null : DEADLINE })) },
      'INVALID',
      { invalid: [{ domain: 'policies', action: 'evaluate_policy', because: 'NO_DEADLINE' }] },
    ],
    [
      'invalid: a contract that lacks a required action (and the ack is then drift)',
      { expectations: RUN_EXPECTATIONS.filter((e) => e.action !== 'create_log_record').map((e) => ({ ...e, deadlineAt: DEADLINE })) },
      'INVALID',
      {
        invalid: [{ domain: 'logs', action: 'create_log_record', because: 'NOT_DECLARED' }],
        drift: [expect.objectContaining({ action: 'create_log_record', kind: 'UNDECLARED_ACK' })],
      },
    ],
    [
      'phantom: an OK ack whose row is gone',
      { evidence: { ...cleanRun().evidence, finalEvaluations: [] } },
      'INCOMPLETE',
      { phantom: [{ domain: 'policies', action: 'evaluate_policy', resultId: IDS.evaluation, because: 'ROW_MISSING' }], missing: [] },
    ],
    [
      'phantom: an OK ack whose row was rolled back without a rollback ack',
      { evidence: { ...cleanRun().evidence, outcomeIncidents: [{ id: IDS.incident, rolledBack: true }] } },
      'INCOMPLETE',
      { phantom: [{ domain: 'incidents', action: 'create_incident', resultId: IDS.incident, because: 'ROW_ROLLED_BACK' }] },
    ],
    [
      'phantom: finalize_run acked while the run is not in a final phase',
      { evidence: { ...cleanRun().evidence, run: { phase: 'EXECUTING' } } },
      'INCOMPLETE',
      { phantom: [{ domain: 'orchestrator', action: 'finalize_run', resultId: RUN, because: 'RUN_NOT_FINAL' }] },
    ],
  ];

  it.each(table)('%s', (_name, overrides, verdict, sets) => {
    const report = reconcileRun(cleanRun(overrides));
    expect(report.verdict).toBe(verdict);
    for (const [set, expected] of Object.entries(sets)) {
      if (Array.isArray(expected)) expect(report[set as keyof typeof report]).toEqual(expected);
      else expect(report[set as keyof typeof report]).toMatchObject(expected as object);
    }
  });

  it('gives each non-empty check one finding with the seed severity', () => {
    const report = reconcileRun(cleanRun({ acks: [...withoutAcks('orchestrator/finalize_run', 'logs/complete_trace'), ack('x/y', 'OK', { id: 'u' })] }));
    expect(report.findings.map((f) => [f.check, f.severity, f.subjects])).toEqual([
      ['missing', 'HIGH', ['logs/complete_trace', 'orchestrator/finalize_run']],
      ['drift', 'MEDIUM', ['ack:x/y:u']],
      ['stale', 'HIGH', ['orchestrator/finalize_run']],
    ]);
    expect(report.findings[2]!.summary).toMatch(/workflow state unknown/);
  });
});

describe('a run not yet settled', () => {
  it('is PENDING before its deadline, with what is outstanding and no findings', () => {
    const report = reconcileRun(cleanRun({ acks: [ack('logs/start_trace')], now: BEFORE_DEADLINE, evidence: { ...cleanRun().evidence, run: { phase: 'EXECUTING' } } }));
    expect(report.verdict).toBe('PENDING');
    expect(report.settled).toBe(false);
    expect(report.missing.map(actionKey)).toEqual(ALL_KEYS.filter((k) => k !== 'logs/start_trace'));
    expect(report.stale).toBeNull();
    expect(report.findings).toEqual([]);
    expect(report.nextCheckAt).toEqual(DEADLINE);
    expect(reconcileRun(cleanRun()).nextCheckAt).toBeNull();
  });

  it('is settled by its finalize ack before the deadline', () => {
    expect(reconcileRun(cleanRun({ now: BEFORE_DEADLINE })).verdict).toBe('COMPLETE');
    const lost = reconcileRun(cleanRun({ now: BEFORE_DEADLINE, acks: withoutAcks('logs/complete_trace') }));
    expect(lost.verdict).toBe('INCOMPLETE');
  });

  it('still reports a malformed contract at once', () => {
    const report = reconcileRun(cleanRun({ now: BEFORE_DEADLINE, acks: [], expectations: [] }));
    expect(report.verdict).toBe('INVALID');
    expect(report.findings.map((f) => f.check)).toEqual(['invalid']);
  });
});

describe("a run's own items: steps, model turns, tool calls", () => {
  const out = (n: number) => `00000000-0000-4000-8000-0000000001${String(n).padStart(2, '0')}`;
  const itemAck = (domain: string, action: string, resultId: string | null, status: 'OK' | 'FAILED' = 'OK') => ({
    id: `ack-${action}`,
    domain,
    action,
    status,
    resultId,
    createdAt: T0,
  });
  const toolCall = { domain: 'tools', action: 'tool_call:0.0.0', deadlineAt: DEADLINE };
  const agentRun = (changes: { acks?: ReturnType<typeof itemAck>[]; outputs?: string[]; expect?: boolean; phase?: 'COMPLETED' | 'EXECUTING'; finalized?: boolean } = {}) => {
    const base = cleanRun();
    const acks = changes.acks ?? [itemAck('logs', 'model_turn:0.0', out(1)), itemAck('tools', 'tool_call:0.0.0', out(2)), itemAck('logs', 'model_turn:0.1', out(3)), itemAck('logs', 'record_step:0', out(4))];
    return reconcileRun({
      ...base,
      expectations: [...base.expectations, ...(changes.expect === false ? [] : [toolCall])],
      acks: [...(changes.finalized === false ? withoutAcks('orchestrator/finalize_run') : base.acks), ...acks],
      evidence: { ...base.evidence, run: { phase: changes.phase ?? 'COMPLETED' }, outputs: (changes.outputs ?? [1, 2, 3, 4].map(out)).map((id) => ({ id })) },
    });
  };

  it('finds nothing when each ack has its stored output and the declared call is resolved', () => {
    expect(agentRun()).toMatchObject({ verdict: 'COMPLETE', findings: [] });
  });

  it('calls an OK step, turn or call ack without its stored output a phantom', () => {
    const report = agentRun({ outputs: [out(1), out(2), out(3)] });
    expect(report.phantom).toEqual([{ domain: 'logs', action: 'record_step:0', resultId: out(4), because: 'ROW_MISSING' }]);
    expect(report.findings.map((f) => f.check)).toEqual(['phantom']);
  });

  it('calls a tool call executed without its expectation drift', () => {
    const report = agentRun({ expect: false });
    expect(report.drift).toEqual([expect.objectContaining({ domain: 'tools', action: 'tool_call:0.0.0', kind: 'UNDECLARED_ACK' })]);
  });

  it('calls an expected call never resolved missing, and stale with the run once past its deadline', () => {
    const acks = [itemAck('logs', 'model_turn:0.0', out(1))];
    expect(agentRun({ acks, outputs: [out(1)] }).missing).toEqual([{ domain: 'tools', action: 'tool_call:0.0.0', because: 'NO_ACK' }]);
    const stale = agentRun({ acks, outputs: [out(1)], phase: 'EXECUTING', finalized: false });
    expect(stale.verdict).toBe('STALE');
    expect(stale.stale!.unresolvedToolCalls).toEqual(['tools/tool_call:0.0.0']);
    expect(stale.findings.find((f) => f.check === 'stale')!.subjects).toContain('tools/tool_call:0.0.0');
  });

  it('calls an output no ack names drift', () => {
    const report = agentRun({ outputs: [1, 2, 3, 4, 5].map(out) });
    expect(report.drift).toEqual([expect.objectContaining({ action: 'step_output', kind: 'UNACKED_ROW', id: out(5) })]);
  });
});

describe('properties', () => {
  const keySubset = fc.subarray(ALL_KEYS);

  it('never finds anything in a clean run, whatever its trace steps and retried acks', () => {
    fc.assert(
      fc.property(fc.nat({ max: 50 }), fc.subarray(ALL_KEYS), (steps, retried) => {
        const base = cleanRun();
        const report = reconcileRun({
          ...base,
          // A retried activity may leave a FAILED ack beside its later OK one.
          acks: [...base.acks, ...retried.map((k) => ack(k, 'FAILED'))],
          evidence: { ...base.evidence, traceSteps: Array.from({ length: steps }, (_, i) => ({ stepIndex: i, createdAt: T0 })) },
        });
        expect(report.findings).toEqual([]);
        expect(report.verdict).toBe('COMPLETE');
      }),
    );
  });

  it('reports exactly the acks a crashed worker never wrote, and STALE whenever finalize is among them', () => {
    fc.assert(
      fc.property(keySubset, (lost) => {
        const report = reconcileRun(cleanRun({ acks: withoutAcks(...lost), evidence: { ...cleanRun().evidence, run: { phase: 'EXECUTING' } } }));
        expect(report.missing.map(actionKey).sort()).toEqual([...lost].sort());
        // Short of finalize, the run is still EXECUTING: its finalize ack is then a phantom.
        expect(report.verdict).toBe(lost.includes('orchestrator/finalize_run') ? 'STALE' : 'INCOMPLETE');
      }),
    );
  });
});

describe('a broken evidence chain', () => {
  it('is its own finding, tampered (HIGH), and makes an otherwise clean run INCOMPLETE', () => {
    expect(reconcileRun(cleanRun()).verdict).toBe('COMPLETE');
    const report = reconcileRun(cleanRun({ tampered: { line: 0, seq: 5, kind: 'output', key: 'o1', because: 'CONTENT_CHANGED', detail: '' } }));
    expect(report.verdict).toBe('INCOMPLETE');
    expect(report.findings).toEqual([
      { check: 'tampered', severity: 'HIGH', subjects: ['output:o1'], summary: 'tampered: the evidence chain breaks at record #5 (output o1): CONTENT_CHANGED' },
    ]);
  });

  it('is reported before the run is settled too, once found', () => {
    const report = reconcileRun(cleanRun({ now: BEFORE_DEADLINE, acks: [], tampered: { line: 0, seq: null, kind: 'ack', key: 'a1', because: 'UNCHAINED', detail: '' } }));
    expect(report.settled).toBe(false);
    expect(report.findings.map((f) => f.check)).toEqual(['tampered']);
  });
});

describe("a run's lesson in its contract", () => {
  const LESSON_ID = '00000000-0000-4000-8000-0000000000e1';
  const LESSON = 'lessons/record_lesson';
  const owed = (evidence: { id: string; rolledBack: boolean }[], acks: AckRecord[]): RunAuditInput => {
    const base = cleanRun();
    return {
      ...base,
      expectations: [...base.expectations, { domain: 'lessons', action: 'record_lesson', deadlineAt: DEADLINE }],
      acks: [...base.acks, ...acks],
      evidence: { ...base.evidence, lessons: evidence },
    };
  };

  it('a run that owes none (nothing declared, nothing written) is COMPLETE, as runs recorded before lessons are', () => {
    expect(reconcileRun(cleanRun()).verdict).toBe('COMPLETE');
  });

  it('a declared lesson acked OK with its row standing is COMPLETE', () => {
    expect(reconcileRun(owed([{ id: LESSON_ID, rolledBack: false }], [ack(LESSON, 'OK', { resultId: LESSON_ID })]))).toMatchObject({ verdict: 'COMPLETE', findings: [] });
  });

  it('a declared lesson never written is missing; one rolled back is missing ROLLED_BACK', () => {
    expect(reconcileRun(owed([], [])).missing).toEqual([{ domain: 'lessons', action: 'record_lesson', because: 'NO_ACK' }]);
    const rolledBack = reconcileRun(owed([{ id: LESSON_ID, rolledBack: true }], [ack(LESSON, 'OK', { resultId: LESSON_ID }), ack(LESSON, 'ROLLED_BACK', { resultId: LESSON_ID })]));
    expect(rolledBack.missing).toEqual([{ domain: 'lessons', action: 'record_lesson', because: 'ROLLED_BACK' }]);
    expect(rolledBack.phantom).toEqual([]);
  });

  it('an OK ack whose lesson row is gone or rolled back is a phantom; a lesson row no ack names is drift', () => {
    expect(reconcileRun(owed([], [ack(LESSON, 'OK', { resultId: LESSON_ID })])).phantom).toEqual([{ domain: 'lessons', action: 'record_lesson', resultId: LESSON_ID, because: 'ROW_MISSING' }]);
    expect(reconcileRun(owed([{ id: LESSON_ID, rolledBack: true }], [ack(LESSON, 'OK', { resultId: LESSON_ID })])).phantom).toEqual([
      { domain: 'lessons', action: 'record_lesson', resultId: LESSON_ID, because: 'ROW_ROLLED_BACK' },
    ]);
    const unacked = reconcileRun({ ...cleanRun(), evidence: { ...cleanRun().evidence, lessons: [{ id: LESSON_ID, rolledBack: false }] } });
    expect(unacked.drift).toEqual([{ domain: 'lessons', action: 'record_lesson', kind: 'UNACKED_ROW', id: LESSON_ID }]);
  });
});
