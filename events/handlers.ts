import type { AlertSeverity } from '../core/alerts';
import { authoritiesInWords, orList } from '../core/authority-words';
import type { StreamEvent } from '../core/events';
import { FAILURE_SEVERITY, type FailureCode } from '../core/outcome';
import type { Alerter, RaisedAlert } from './alerts';
import type { HandlerRegistry } from './reactor';

export interface HandlerDeps {
  alerter: Alerter;
}

const SEVERITIES: readonly AlertSeverity[] = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];

function severityOf(value: unknown, fallback: AlertSeverity): AlertSeverity {
  return SEVERITIES.includes(value as AlertSeverity) ? (value as AlertSeverity) : fallback;
}

function failureSeverity(code: unknown): AlertSeverity {
  return FAILURE_SEVERITY[code as FailureCode] ?? 'HIGH';
}

/** An incident below this is recorded, not paged. */
const PAGED_INCIDENT_SEVERITIES: readonly AlertSeverity[] = ['MEDIUM', 'HIGH', 'CRITICAL'];

/** The failure code of a run its authorization denied at submit. */
const DENIED_CODE: FailureCode = 'AUTHORIZATION_DENIED';

/** One threshold alert per run and threshold per hour, however many steps stay over it. */
const THRESHOLD_PERIOD_SECONDS = 3600;

/**
 * What the reactor does with each topic: alerts through the fatigue controller. It acts on no run:
 * a run past its warning point pauses itself when the policy it holds says `pauseOnThreshold`.
 */
export function createHandlers({ alerter }: HandlerDeps): HandlerRegistry {
  const alert = (event: StreamEvent, fields: Omit<RaisedAlert, 'eventId' | 'rule' | 'tenantId' | 'runId'>) =>
    alerter.raise({ eventId: event.id, rule: event.topic, tenantId: event.tenantId, runId: event.runId, ...fields }).then(() => undefined);
  /** A run refused at submit by its authorization: its alert counts against the denied runs' own budget. */
  const deniedBudget = (code: unknown): Pick<RaisedAlert, 'budget'> => (code === DENIED_CODE ? { budget: 'denied_runs' } : {});

  const auditAlert = async (event: StreamEvent) => {
    const check = String(event.payload.check ?? event.topic.split('.').pop());
    await alert(event, {
      domain: 'audit',
      severity: severityOf(event.payload.severity, 'HIGH'),
      title: `Audit ${check} on run ${event.runId}: ${String(event.payload.summary ?? '')}`,
      detail: event.payload,
      dedupeKey: `audit:${event.runId}:${check}`,
    });
  };

  return {
    'run.failed': {
      alert: (event) =>
        alert(event, {
          domain: 'runs',
          severity: failureSeverity(event.payload.code),
          title: `Run ${event.runId} failed (${String(event.payload.code)}): ${String(event.payload.reason ?? '')}`,
          detail: event.payload,
          // The run's outcome incident says the same: one alert for one failure.
          dedupeKey: `failure:${event.runId}`,
          ...deniedBudget(event.payload.code),
        }),
    },
    'incident.created': {
      alert: async (event) => {
        const severity = severityOf(event.payload.severity, failureSeverity(event.payload.code));
        if (!PAGED_INCIDENT_SEVERITIES.includes(severity)) return;
        await alert(event, {
          domain: 'incidents',
          severity,
          title: `Incident on run ${event.runId}: ${String(event.payload.code)}`,
          detail: event.payload,
          dedupeKey: event.payload.code === 'PAUSE_SLA_EXPIRED' ? `escalation:${event.runId}` : `failure:${event.runId}`,
          ...deniedBudget(event.payload.code),
        });
      },
    },
    'audit.reconciliation.missing': { alert: auditAlert },
    'audit.reconciliation.drift': { alert: auditAlert },
    'audit.reconciliation.stale': { alert: auditAlert },
    'audit.reconciliation.invalid': { alert: auditAlert },
    'audit.reconciliation.phantom': { alert: auditAlert },
    'audit.reconciliation.tampered': { alert: auditAlert },
    'pause.expiring': {
      alert: (event) =>
        alert(event, {
          domain: 'pauses',
          severity: 'MEDIUM',
          // The tenant reads this alert: who may resume is said in words, never by the run's internal authority names.
          title: `Paused run ${event.runId} expires ${String(event.payload.expiresAt ?? 'soon')}; may be resumed by ${orList(authoritiesInWords((event.payload.resumableBy as string[] | undefined) ?? [])) || 'its resume authorities'}`,
          detail: { ...event.payload, resumableBy: authoritiesInWords((event.payload.resumableBy as string[] | undefined) ?? []) },
          dedupeKey: `pause.expiring:${event.dedupeKey}`,
        }),
    },
    'policy.proposed': {
      alert: (event) =>
        alert(event, {
          domain: 'policies',
          severity: 'LOW',
          title: `A policy change is proposed (${String(event.payload.kind)}): ${String(event.payload.reason ?? '')}; accept or dismiss it with governed lessons`,
          detail: event.payload,
          dedupeKey: `proposal:${String(event.payload.proposalId)}`,
        }),
    },
    'threshold.exceeded': {
      alert: (event) =>
        alert(event, {
          domain: 'policies',
          severity: 'MEDIUM',
          title: `Run ${event.runId} spent $${String(event.payload.costUsd)}, past its warning threshold of $${String(event.payload.warningAtUsd)}`,
          detail: event.payload,
          dedupeKey: `threshold:${event.runId}:${String(event.payload.warningAtUsd)}`,
          dedupWindowSeconds: THRESHOLD_PERIOD_SECONDS,
        }),
    },
  };
}
