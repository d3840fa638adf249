import type { EventTopic } from '../core/events';
import type { PauseReason } from '../core/policy-check';
import type { PendingApproval } from '../core/tool-calls';
import type { PauseTimeoutBehavior } from '../core/policy';
import { decideApproval, insertPendingApproval } from '../db/approvals';
import { extendRunDeadlines } from '../db/audit';
import type { DbOrTx } from '../db/client';
import { setPaused } from '../db/runs';
import { runControlEvents } from '../db/schema';
import type { ActivityDeps } from './deps';
import { proposeAfterApproval } from './lessons';
import { insertIncidentOnce } from '../db/incidents';
import { writeEvents } from '../db/outbox';

export interface ControlEventInput {
  runId: string;
  tenantId: string;
  /** Unique within the run; the workflow derives it from its own counters. */
  dedupeKey: string;
  kind: string;
  actor?: string | null;
  authority?: string | null;
  accepted: boolean;
  detail?: string | null;
}

/** Records the event once per dedupe key; true when this call recorded it. */
async function insertControlEvent(tx: DbOrTx, input: ControlEventInput, topic?: EventTopic, extra: Record<string, unknown> = {}): Promise<boolean> {
  const inserted = await tx
    .insert(runControlEvents)
    .values({
      runId: input.runId,
      dedupeKey: input.dedupeKey,
      kind: input.kind,
      actor: input.actor ?? null,
      authority: input.authority ?? null,
      accepted: input.accepted,
      detail: input.detail ?? null,
    })
    .onConflictDoNothing()
    .returning({ id: runControlEvents.id });
  if (topic) {
    await writeEvents(tx, input, [
      {
        topic,
        dedupeKey: `${input.runId}:${input.dedupeKey}`,
        payload: { kind: input.kind, actor: input.actor ?? null, authority: input.authority ?? null, detail: input.detail ?? null, ...extra },
      },
    ]);
  }
  return inserted.length > 0;
}


/** The pause's number from the keys the workflow gives its control events (`pause:3`, `pause-timeout:3:1`). */
function pauseNumberOf(dedupeKey: string): number {
  return Number(dedupeKey.split(':')[1]);
}

/** The run-control domain: pauses, resumes, expiry warnings, timeouts and refused signals. */
export function createControlActivities({ db, metrics }: ActivityDeps) {
  /** A signal the run ignored (wrong state or authority), kept with the reason. */
  async function recordRejectedSignal(input: Omit<ControlEventInput, 'accepted'>): Promise<void> {
    await db.transaction((tx) => insertControlEvent(tx, { ...input, accepted: false }, 'signal.rejected'));
  }

  /**
   * Refused signals, many in one transaction: a flood of controls costs the run one write per
   * batch, not one per signal. `dropped` counts refusals past the run's queue, recorded as one.
   */
  async function recordRejectedSignals(input: {
    runId: string;
    tenantId: string;
    refusals: Omit<ControlEventInput, 'runId' | 'tenantId' | 'accepted'>[];
    dropped: number;
  }): Promise<void> {
    await db.transaction(async (tx) => {
      for (const refusal of input.refusals) await insertControlEvent(tx, { ...refusal, runId: input.runId, tenantId: input.tenantId, accepted: false }, 'signal.rejected');
      if (input.dropped > 0) {
        const last = input.refusals.at(-1)?.dedupeKey ?? 'none';
        await insertControlEvent(tx, {
          runId: input.runId,
          tenantId: input.tenantId,
          dedupeKey: `signals-dropped:${last}:${input.dropped}`,
          kind: 'signals',
          accepted: false,
          detail: `${input.dropped} more signals refused while the run's queue of refusals was full (not recorded one by one)`,
        });
      }
    });
  }

  async function recordPause(input: ControlEventInput & { reason: PauseReason; holdsUpToSeconds?: number; approval?: PendingApproval }): Promise<void> {
    const inserted = await db.transaction(async (tx) => {
      const exists = await setPaused(tx, input.runId, input.reason);
      const recorded = await insertControlEvent(tx, input, 'run.paused', input.approval ? { approval: input.approval } : {});
      if (input.approval) {
        const { argsPreview: _shownInTheEvent, ...call } = input.approval;
        await insertPendingApproval(tx, { runId: input.runId, tenantId: input.tenantId, pauseNumber: pauseNumberOf(input.dedupeKey), ...call });
      }
      if (recorded && input.holdsUpToSeconds) await extendRunDeadlines(tx, input.runId, input.holdsUpToSeconds);
      return exists;
    });
    if (inserted) metrics.pauses.inc({ reason: input.reason });
  }

  async function recordPauseWarning(input: ControlEventInput & { resumableBy?: string[]; expiresAt?: string }): Promise<void> {
    await db.transaction((tx) => insertControlEvent(tx, input, 'pause.expiring', { resumableBy: input.resumableBy ?? [], expiresAt: input.expiresAt ?? null }));
  }

  async function recordResume(
    input: ControlEventInput & { reason: PauseReason; pausedForMs: number; endedBy: 'operator' | 'timeout'; approval?: { pauseNumber: number; decision: 'approve' | 'deny'; requestId: string | null } },
  ): Promise<void> {
    await db.transaction(async (tx) => {
      await setPaused(tx, input.runId, null);
      await insertControlEvent(tx, input, 'run.resumed', input.approval ? { decision: input.approval.decision } : {});
      if (input.approval) {
        const decided = await decideApproval(tx, {
          runId: input.runId,
          pauseNumber: input.approval.pauseNumber,
          status: input.approval.decision === 'approve' ? 'approved' : 'denied',
          by: input.actor ?? null,
          authority: input.authority ?? null,
          requestId: input.approval.requestId,
          reason: input.detail ?? null,
        });
        // Every approval of the tool granted so far may propose dropping it (a lesson of success).
        if (decided && input.approval.decision === 'approve') await proposeAfterApproval(tx, input, decided.tool);
      }
    });
    metrics.pauseDuration.observe({ reason: input.reason, ended_by: input.endedBy }, input.pausedForMs / 1000);
  }

  /** The SLA ran out. ESCALATE raises a high-severity incident before the pause's last period. */
  async function recordPauseTimeout(input: ControlEventInput & { behavior: PauseTimeoutBehavior; reason: PauseReason; escalation: boolean }): Promise<void> {
    await db.transaction(async (tx) => {
      await insertControlEvent(tx, input);
      if (input.reason === 'TOOL_APPROVAL' && !input.escalation && input.behavior !== 'CONTINUE') {
        await decideApproval(tx, { runId: input.runId, pauseNumber: pauseNumberOf(input.dedupeKey), status: 'expired', by: 'system', authority: 'SYSTEM_AUTO', requestId: null, reason: input.detail ?? null });
      }
      if (input.escalation) {
        await insertIncidentOnce(tx, {
          runId: input.runId,
          tenantId: input.tenantId,
          dedupeKey: `escalation:${input.dedupeKey}`,
          kind: 'escalation',
          severity: 'HIGH',
          errorCode: 'PAUSE_SLA_EXPIRED',
          message: `pause (${input.reason}) ran past its SLA without a resume; escalated`,
        });
        await writeEvents(tx, input, [
          { topic: 'incident.created', dedupeKey: `${input.runId}:escalation:${input.dedupeKey}`, payload: { code: 'PAUSE_SLA_EXPIRED', severity: 'HIGH' } },
        ]);
      }
    });
    metrics.pauseTimeouts.inc({ behavior: input.behavior });
  }

  return { recordRejectedSignal, recordRejectedSignals, recordPause, recordPauseWarning, recordResume, recordPauseTimeout };
}
