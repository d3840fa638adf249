import { condition } from '@temporalio/workflow';
import type { RunOutcome } from '../core/outcome';
import { DEFAULT_RESUME_AUTHORITIES, type PauseReason } from '../core/policy-check';
import type { DomainWrites } from './activity-proxies';
import { heldAuthorities, type PauseRequest, type PauseState, type PendingApproval, type PolicySettings, type ResumeRequest } from './messages';
import { workflowNow } from './time';

/** How a pause ended; `denied` only ends a TOOL_APPROVAL pause (by a person, or a CONTINUE SLA), `by` saying who. */
export type PauseEnd = { ended: 'resumed' } | { ended: 'denied'; by: string } | { ended: 'stopped' } | { ended: 'outcome'; outcome: RunOutcome };

/** What a pause needs from the governor that holds it. */
export interface PauseHost {
  runId: string;
  tenantId: string;
  domain: DomainWrites;
  /** The policy the run holds: the SLA, its warning and what happens when it runs out. */
  policy: PolicySettings;
  /** Shows the pause in the run's state (null: lifted). */
  show(pause: PauseState | null): void;
  publish(): void;
  /** The resume accepted by the governor's handlers, if one came. */
  resumeRequest(): ResumeRequest | null;
  resumeHandled(): void;
  stopRequested(): boolean;
  /** The run's history holds so much (signals, bytes) that it must continue as new, even while paused. */
  mustContinue(): boolean;
  /** Hands the run, this pause held, to a fresh execution that takes the pause up where it is; never returns. */
  continueHolding(held: HeldPauseState): Promise<never>;
}

/** A pause as a run that continued as new while it held carries it: its state, and its SLA period. */
export interface HeldPauseState {
  pause: PauseState;
  period: number;
}

/**
 * The durable wait of a PAUSE (seed §13.5): it ends with a resume, a stop, or the SLA running out
 * — with a `pause_expiring` warning before — and then TERMINATE fails the run, CONTINUE resumes it
 * as SYSTEM_AUTO, ESCALATE waits one more period before it terminates.
 */
export async function holdPause(
  host: PauseHost,
  {
    number,
    reason,
    detail,
    request,
    approval,
    adopted,
  }: { number: number; reason: PauseReason; detail: string; request: PauseRequest | null; approval?: PendingApproval; adopted?: HeldPauseState },
): Promise<PauseEnd> {
  if (adopted) return waitOut(host, { ...adopted.pause }, adopted.period, Date.parse(adopted.pause.since), true);
  const { runId, tenantId, domain, policy } = host;
  const startedAt = workflowNow();
  const allowedAuthorities = request?.allowedAuthorities?.length ? request.allowedAuthorities : [...DEFAULT_RESUME_AUTHORITIES[reason]];
  const pause: PauseState = {
    number,
    reason,
    detail,
    allowedAuthorities,
    since: new Date(startedAt).toISOString(),
    expiresAt: new Date(startedAt + policy.pauseSlaMs).toISOString(),
    escalated: false,
    ...(request?.tag !== undefined ? { tag: request.tag } : {}),
    ...(approval ? { approval } : {}),
  };
  host.show(pause);
  await domain.recordPause({
    runId,
    tenantId,
    dedupeKey: `pause:${number}`,
    kind: 'pause',
    actor: request?.actor ?? 'policy',
    authority: request?.authority ?? 'SYSTEM_AUTO',
    accepted: true,
    detail: `${reason}: ${detail}`,
    reason,
    // A run held by governance is not stale: its audit deadlines move by the longest this pause can hold it.
    holdsUpToSeconds: (policy.pauseSlaMs * (policy.pauseTimeoutBehavior === 'ESCALATE' ? 2 : 1)) / 1000,
    ...(approval ? { approval } : {}),
  });
  return waitOut(host, pause, 1, startedAt, false);
}

/**
 * The pause's waiting, period by period, from `firstPeriod`: an adopted pause (carried by a run
 * that continued as new) keeps its expiry in the period it was carried in; it is shown again, and
 * nothing is recorded twice (every record is keyed by the pause's number and period).
 */
async function waitOut(host: PauseHost, pause: PauseState, firstPeriod: number, startedAt: number, adopted: boolean): Promise<PauseEnd> {
  const { runId, tenantId, domain, policy } = host;
  const { number, reason, approval } = pause;
  if (adopted) host.show(pause);

  /** A control event the run records on its own behalf (timers, not people). */
  const systemEvent = (kind: string, dedupeKey: string, eventDetail: string) => ({
    runId,
    tenantId,
    dedupeKey,
    kind,
    actor: 'system',
    authority: 'SYSTEM_AUTO',
    accepted: true,
    detail: eventDetail,
  });
  const interrupted = () => host.resumeRequest() !== null || host.stopRequested();
  const wait = async (ms: number): Promise<boolean> => {
    const woke = await condition(() => interrupted() || host.mustContinue(), ms);
    if (woke && !interrupted()) await host.continueHolding({ pause, period });
    return woke;
  };
  let period = firstPeriod;
  const resumed = async (by: ResumeRequest, endedBy: 'operator' | 'timeout'): Promise<PauseEnd> => {
    // An approval's SLA running out under CONTINUE denies the call: a timer never approves one.
    const decision = approval ? (endedBy === 'timeout' ? 'deny' : (by.decision ?? 'approve')) : undefined;
    const timeoutDetail = decision === 'deny' ? 'denied automatically when the approval SLA ran out (CONTINUE)' : 'resumed automatically when the pause SLA ran out (CONTINUE)';
    await domain.recordResume({
      runId,
      tenantId,
      dedupeKey: `resume:${number}`,
      kind: decision === 'deny' ? 'deny' : decision === 'approve' ? 'approve' : 'resume',
      actor: by.actor ?? null,
      authority: heldAuthorities(by)[0] ?? null,
      accepted: true,
      detail: endedBy === 'timeout' ? timeoutDetail : (by.reason ?? null),
      reason,
      pausedForMs: workflowNow() - startedAt,
      endedBy,
      ...(decision ? { approval: { pauseNumber: number, decision, requestId: by.requestId ?? null } } : {}),
    });
    // Only now: a second resume that came while this one was recorded must not wake the next pause.
    host.resumeHandled();
    host.show(null);
    if (decision === 'deny') return { ended: 'denied', by: endedBy === 'timeout' ? 'its approval ran out' : `denied by ${by.actor ?? 'an operator'}${by.reason ? `: ${by.reason}` : ''}` };
    return { ended: 'resumed' };
  };

  for (; ; period += 1) {
    // A carried pause keeps the expiry of the period it was carried in.
    const carried = adopted && period === firstPeriod;
    if (!carried) pause.expiresAt = new Date(workflowNow() + policy.pauseSlaMs).toISOString();
    host.publish();
    const slaLeft = carried ? Math.max(0, Date.parse(pause.expiresAt) - workflowNow()) : policy.pauseSlaMs;
    const beforeWarning = Math.max(0, slaLeft - policy.pauseWarningMs);
    let woke = beforeWarning > 0 || !carried ? await wait(beforeWarning) : false;
    if (!woke && policy.pauseWarningMs > 0) {
      await domain.recordPauseWarning({
        ...systemEvent('pause_expiring', `pause-warning:${number}:${period}`, `${reason} pause expires in ${policy.pauseWarningMs / 1000}s (then ${policy.pauseTimeoutBehavior})`),
        // The warning goes to whoever may still resume the run.
        resumableBy: pause.allowedAuthorities,
        expiresAt: pause.expiresAt,
      });
      woke = await wait(slaLeft - beforeWarning);
    }
    if (woke) {
      if (host.stopRequested()) {
        host.show(null);
        return { ended: 'stopped' };
      }
      return resumed(host.resumeRequest()!, 'operator');
    }

    const escalation = policy.pauseTimeoutBehavior === 'ESCALATE' && !pause.escalated;
    await domain.recordPauseTimeout({
      ...systemEvent('pause_timeout', `pause-timeout:${number}:${period}`, `${reason} pause ran out its SLA of ${policy.pauseSlaMs / 1000}s`),
      behavior: policy.pauseTimeoutBehavior,
      reason,
      escalation,
    });
    if (policy.pauseTimeoutBehavior === 'CONTINUE') return resumed({ actor: 'system', authority: 'SYSTEM_AUTO' }, 'timeout');
    if (escalation) {
      pause.escalated = true;
      continue;
    }
    const afterEscalation = pause.escalated ? ' nor within the escalation period' : '';
    host.show(null);
    return {
      ended: 'outcome',
      outcome: {
        kind: 'failed',
        status: 'failed_policy',
        code: 'PAUSE_TIMEOUT',
        message: `${reason} pause was not resumed within its SLA${afterEscalation} (${policy.pauseTimeoutBehavior})`,
      },
    };
  }
}
