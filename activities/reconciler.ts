import { Context } from '@temporalio/activity';
import { eq, inArray, sql } from 'drizzle-orm';
import { AUDIT_PAGE_HEARTBEAT_INTERVAL_MS } from '../core/audit-page-heartbeat';
import {
  EMPTY_TOTALS,
  cleanRunReport,
  describeStale,
  reconcileRun,
  storedReport,
  type AuditVerdict,
  type PassTotals,
  type Finding,
  type RunAuditReport,
  type RunLiveness,
} from '../core/audit-reconciliation';
import { auditEventTopic } from '../core/events';
import {
  checkDueRuns,
  databaseNow,
  lastAuditPassStartedAt,
  staleRunCandidates,
  loadAuditRecords,
  markClosedRunsDue,
  markQuietRunsDue,
  type DueRun,
  type RunAuditRecords,
} from '../db/audit';
import { resolveIncidentsBySystem } from '../db/incidents';
import type { DbOrTx } from '../db/client';
import { auditFindings, auditPasses, auditReconciliations, staleRunReports, type StaleRunEntry } from '../db/schema';
import { mapLimit } from '../lib/map-limit';
import { describeRunLiveness, listClosedUnfinalizedRuns } from '../lib/run-liveness';
import type { ActivityDeps } from './deps';
import { insertIncidentOnce } from '../db/incidents';
import { writeEvents } from '../db/outbox';

/** Temporal describes at most this many stale runs at once. */
const DESCRIBE_CONCURRENCY = 8;

/**
 * How a pass finds wedged runs before their deadline (README, "The audit loop"). Once per pass, on
 * its first page:
 * - runs whose workflow Temporal closed without the run reaching a final phase, from one visibility
 *   list query over the closes since the last finished pass began (less `visibilityLagSeconds`, for
 *   a visibility store that lags; at most `firstLookbackSeconds` back before any pass finished), at
 *   most `closedLimit` a pass;
 * - runs in flight that have written nothing for `quietSeconds`, at most `quietLimit` a pass, each
 *   read again only after as long again as it had been quiet (at most `quietMaxGapSeconds`): the
 *   pass asks Temporal whether their workflow task keeps failing. Newer servers mark such workflows
 *   with the `TemporalReportedProblems` search attribute, which one list query could find; server
 *   1.29.1, which this product runs on, has no such attribute (its list query is refused), so the
 *   quiet runs are asked one by one.
 * Both become due now, and the page reads Temporal's word on every due run that is not finalized.
 */
export interface WedgeProbe {
  visibilityLagSeconds: number;
  firstLookbackSeconds: number;
  closedLimit: number;
  quietSeconds: number;
  quietMaxGapSeconds: number;
  quietLimit: number;
}

export const WEDGE_PROBE: Readonly<WedgeProbe> = {
  visibilityLagSeconds: 60,
  firstLookbackSeconds: 3600,
  closedLimit: 5000,
  quietSeconds: 60,
  quietMaxGapSeconds: 900,
  quietLimit: 100,
};

export interface ReconcilePageInput {
  /** Runs due at or before this time; null on a pass's first page, which fixes it to the database's now. */
  dueBefore: string | null;
  limit: number;
}

export interface ReconcilePageResult extends PassTotals {
  dueBefore: string;
}

/** What a page did that the metrics count once it has committed. */
interface PageEffects {
  staleOpened: number;
  driftSubjectsAnnounced: number;
}

type FindingRow = typeof auditFindings.$inferSelect;

/**
 * What a pass stores of every clean run, but its id and finalize time: the report the rules give a
 * clean run (`cleanRunReport`), which the page's update fills in per run.
 */
const CLEAN_TEMPLATE = JSON.stringify(storedReport(cleanRunReport('', new Date(0))));

export function createReconcilerActivities({ db, metrics, temporal, logger }: ActivityDeps, probe: Readonly<WedgeProbe> = WEDGE_PROBE) {
  async function liveness(record: RunAuditRecords): Promise<RunLiveness> {
    return describeRunLiveness(temporal, record.runId, { phase: record.evidence.run?.phase ?? 'unknown', lastProgressAt: record.lastProgressAt });
  }

  /**
   * The wedge probe (see WEDGE_PROBE): makes due now the runs Temporal closed without finalizing
   * since the last pass, and the quiet runs in flight whose turn it is to be asked about. One
   * visibility query (a page per 1,000 closed runs) and two statements; Temporal is asked about each
   * run by the page that reads it. An error fails the page, which retries: a pass that could not
   * look is not recorded as one that did.
   */
  async function markWedgeCandidatesDue(): Promise<{ closed: number; quiet: number }> {
    const [now, lastPassStartedAt] = await Promise.all([databaseNow(db), lastAuditPassStartedAt(db)]);
    const since = new Date(
      lastPassStartedAt ? lastPassStartedAt.getTime() - probe.visibilityLagSeconds * 1000 : now.getTime() - probe.firstLookbackSeconds * 1000,
    );
    const closed = await listClosedUnfinalizedRuns(temporal, since, probe.closedLimit);
    const closedDue = await markClosedRunsDue(db, closed);
    const quietDue = await markQuietRunsDue(db, { quietSeconds: probe.quietSeconds, maxGapSeconds: probe.quietMaxGapSeconds, limit: probe.quietLimit });
    if (closed.length >= probe.closedLimit) {
      logger.warn({ since: since.toISOString(), limit: probe.closedLimit }, 'audit: more closed runs than one pass lists; the rest are found at their deadline');
    }
    logger.debug({ since: since.toISOString(), listed: closed.length, closedDue: closedDue.length, quietDue: quietDue.length }, 'audit: wedge probe');
    return { closed: closedDue.length, quiet: quietDue.length };
  }

  /**
   * One page of a pass, in one transaction: the due runs are locked (others' passes skip them) and
   * checked in one statement (`checkDueRuns`); a run found clean is COMPLETE with nothing to report
   * and is neither loaded nor run through the rules; every other is loaded and reconciled by the
   * rules, and its findings, incidents and events written. All verdicts are stored in one statement.
   * A failure anywhere rolls the page back and the activity retries it; nothing is reported clean
   * that was not read.
   */
  async function reconcileDueRuns(input: ReconcilePageInput): Promise<ReconcilePageResult> {
    const ctx = Context.current();
    const heartbeat = setInterval(() => ctx.heartbeat(), AUDIT_PAGE_HEARTBEAT_INTERVAL_MS);
    try {
      return await reconcilePage(input);
    } finally {
      clearInterval(heartbeat);
    }
  }

  async function reconcilePage(input: ReconcilePageInput): Promise<ReconcilePageResult> {
    // A pass's first page (no horizon yet) looks for wedged runs first, so they are due within it.
    if (input.dueBefore === null) await markWedgeCandidatesDue();
    const { result, effects } = await db.transaction(async (tx) => {
      const { now, dueBefore, runs } = await checkDueRuns(tx, { dueBefore: input.dueBefore ? new Date(input.dueBefore) : null, limit: input.limit });
      const page: PageEffects = { staleOpened: 0, driftSubjectsAnnounced: 0 };
      const totals: PassTotals = { ...EMPTY_TOTALS, verdicts: {}, runs: runs.length };
      const clean: { runId: string; finalizedAt: Date }[] = [];
      const dirty: DueRun[] = [];
      for (const run of runs) {
        if (run.clean && run.finalizedAt) clean.push({ runId: run.runId, finalizedAt: run.finalizedAt });
        else dirty.push(run);
      }
      if (clean.length > 0) totals.verdicts.COMPLETE = clean.length;
      if (dirty.length === 0) {
        await storeVerdicts(tx, [], clean);
        return { result: { ...totals, dueBefore: dueBefore.toISOString() }, effects: page };
      }

      const records = await loadAuditRecords(tx, dirty.map((d) => d.runId));
      const loaded = [...records.values()];
      const reports = loaded.map((record) => reconcileRun({ ...record, now }));
      // Temporal's word is needed on a stale run, and on any due run not finalized: its workflow may
      // have closed or be failing before its deadline (the wedge probe made such runs due).
      const ask = reports.flatMap((report, i) => (report.stale || report.finalizedAt === null ? [i] : []));
      await mapLimit(ask, DESCRIBE_CONCURRENCY, async (i) => {
        reports[i] = reconcileRun({ ...loaded[i]!, now, liveness: await liveness(loaded[i]!) });
      });

      await storeVerdicts(tx, reports, clean);
      const existing = await tx.select().from(auditFindings).where(inArray(auditFindings.runId, reports.map((r) => r.runId)));
      const rowsByRun = new Map<string, FindingRow[]>();
      for (const row of existing) rowsByRun.set(row.runId, [...(rowsByRun.get(row.runId) ?? []), row]);
      for (const report of reports) {
        totals.verdicts[report.verdict] = (totals.verdicts[report.verdict] ?? 0) + 1;
        const rows = rowsByRun.get(report.runId) ?? [];
        if (report.findings.length === 0 && rows.every((r) => r.resolvedAt)) continue;
        const tenantId = records.get(report.runId)!.tenantId;
        const done = await actOnFindings(tx, { runId: report.runId, tenantId, verdict: report.verdict }, report.findings, rows);
        totals.findingsOpened += done.opened;
        totals.findingsResolved += done.resolved;
        totals.events += done.events;
        page.staleOpened += done.staleOpened;
        page.driftSubjectsAnnounced += done.driftSubjectsAnnounced;
      }
      return { result: { ...totals, dueBefore: dueBefore.toISOString() }, effects: page };
    });
    for (const [verdict, count] of Object.entries(result.verdicts)) metrics.auditRunsReconciled.inc({ verdict }, count);
    metrics.runNeverFinalized.inc(effects.staleOpened);
    metrics.unexpectedDomainActions.inc(effects.driftSubjectsAnnounced);
    return result;
  }

  /**
   * The runs' audit state after this pass, in one statement: verdict and sets; no longer due until
   * something changes, or, for a run not yet settled (its deadlines moved while it was paused), due
   * at its deadline. A clean run's report is `CLEAN_TEMPLATE` with its id and finalize time.
   */
  async function storeVerdicts(tx: DbOrTx, reports: readonly RunAuditReport[], clean: readonly { runId: string; finalizedAt: Date }[]): Promise<void> {
    if (reports.length === 0 && clean.length === 0) return;
    const rows = reports.map((r) => ({
      run_id: r.runId,
      verdict: r.verdict,
      report: storedReport(r),
      clean: r.findings.length === 0,
      next_due_at: r.nextCheckAt,
    }));
    const cleanRows = clean.map((r) => ({ run_id: r.runId, finalized_at: r.finalizedAt }));
    await tx.execute(sql`
      update ${auditReconciliations} ar set
        verdict = v.verdict,
        report = v.report,
        passes = ar.passes + 1,
        reconciled_at = now(),
        due_at = v.next_due_at,
        first_detected_at = case when v.clean then ar.first_detected_at else coalesce(ar.first_detected_at, now()) end,
        last_seen_at = case when v.clean then ar.last_seen_at else now() end,
        resolved_at = case
          when not v.clean then null
          when ar.first_detected_at is not null then coalesce(ar.resolved_at, now())
          else ar.resolved_at end
      from (
        select d.run_id, d.verdict, d.report, d.clean, d.next_due_at
          from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as d(run_id uuid, verdict text, report jsonb, clean boolean, next_due_at timestamptz)
        union all
        select c.run_id, t.report->>'verdict', jsonb_set(jsonb_set(t.report, '{runId}', to_jsonb(c.run_id::text)), '{finalizedAt}', to_jsonb(c.finalized_at)),
               true, null::timestamptz
          from jsonb_to_recordset(${JSON.stringify(cleanRows)}::jsonb) as c(run_id uuid, finalized_at text),
               (select ${CLEAN_TEMPLATE}::jsonb as report) t
      ) v
      where ar.run_id = v.run_id`);
  }

  /**
   * Opens, updates or resolves the run's findings. A finding opens one incident and one event; a
   * later pass announces only subjects it has not announced before, and resolves what is gone.
   */
  async function actOnFindings(
    tx: DbOrTx,
    run: { runId: string; tenantId: string; verdict: AuditVerdict },
    findings: readonly Finding[],
    rows: readonly FindingRow[],
  ) {
    const done = { opened: 0, resolved: 0, events: 0, staleOpened: 0, driftSubjectsAnnounced: 0 };
    for (const finding of findings) {
      const row = rows.find((r) => r.check === finding.check);
      const reopening = !row || row.resolvedAt !== null;
      const announced = reopening ? [] : row.announced;
      const fresh = finding.subjects.filter((s) => !announced.includes(s));
      const number = (row?.announcements ?? 0) + (fresh.length > 0 ? 1 : 0);
      let incidentId = reopening ? null : row.incidentId;
      if (reopening) {
        const incident = await insertIncidentOnce(tx, {
          runId: run.runId,
          tenantId: run.tenantId,
          dedupeKey: `audit:${finding.check}:${number}`,
          kind: 'audit',
          severity: finding.severity,
          errorCode: `AUDIT_${finding.check.toUpperCase()}`,
          message: finding.summary,
        });
        incidentId = incident.id;
        done.opened += 1;
        if (finding.check === 'stale') done.staleOpened += 1;
      }
      if (fresh.length > 0) {
        await writeEvents(tx, run, [
          {
            topic: auditEventTopic(finding.check),
            dedupeKey: `${run.runId}:audit:${finding.check}:${number}`,
            payload: {
              check: finding.check,
              severity: finding.severity,
              verdict: run.verdict,
              summary: finding.summary,
              subjects: finding.subjects,
              newSubjects: fresh,
              incidentId,
            },
          },
        ]);
        done.events += 1;
        if (finding.check === 'drift') done.driftSubjectsAnnounced += fresh.length;
      }
      const values = {
        severity: finding.severity,
        subjects: finding.subjects,
        announced: [...announced, ...fresh],
        announcements: number,
        summary: finding.summary,
        incidentId,
        lastSeenAt: sql`now()`,
      };
      if (!row) {
        await tx.insert(auditFindings).values({ runId: run.runId, tenantId: run.tenantId, check: finding.check, ...values });
      } else {
        await tx
          .update(auditFindings)
          .set({ ...values, ...(reopening ? { firstDetectedAt: sql`now()`, resolvedAt: null } : {}) })
          .where(eq(auditFindings.id, row.id));
      }
    }
    const gone = rows.filter((r) => r.resolvedAt === null && !findings.some((f) => f.check === r.check));
    if (gone.length > 0) {
      await tx
        .update(auditFindings)
        .set({ resolvedAt: sql`now()` })
        .where(inArray(auditFindings.id, gone.map((r) => r.id)));
      // The finding's incident resolves itself: nobody has to close what the system saw mended.
      await resolveIncidentsBySystem(tx, gone.flatMap((r) => (r.incidentId ? [r.incidentId] : [])), 'a later reconciliation found this run clean');
      done.resolved += gone.length;
    }
    return done;
  }

  /** The pass is recorded once it has finished: `/healthz` and the pass-age metric read this. */
  async function recordAuditPass(input: { passId: string; startedAt: string; totals: PassTotals }): Promise<void> {
    const [row] = await db
      .insert(auditPasses)
      .values({
        passId: input.passId,
        startedAt: new Date(input.startedAt),
        dueRuns: input.totals.runs,
        verdicts: input.totals.verdicts,
        findingsOpened: input.totals.findingsOpened,
        findingsResolved: input.totals.findingsResolved,
      })
      .onConflictDoNothing()
      .returning({ startedAt: auditPasses.startedAt, finishedAt: auditPasses.finishedAt });
    if (!row) return;
    metrics.auditPassDuration.observe((row.finishedAt.getTime() - row.startedAt.getTime()) / 1000);
    metrics.auditDueRuns.observe(input.totals.runs);
  }

  /**
   * The stale-run report: every run whose `finalize_run` deadline passed without the ack, or that the
   * last pass found stale before it (its workflow closed or failing), with what Temporal says of its
   * workflow. Found through the unfinalized-runs index, so it costs what is unfinalized, not what
   * exists.
   */
  async function writeStaleRunReport(input: { executionId: string; limit?: number }): Promise<{ reportId: number; staleRuns: number }> {
    const now = await databaseNow(db);
    const stale = await staleRunCandidates(db, now, input.limit ?? 1000);
    const entries: StaleRunEntry[] = await mapLimit(stale, DESCRIBE_CONCURRENCY, async (run) => {
      const state = await describeRunLiveness(temporal, run.runId, { phase: run.phase, lastProgressAt: run.lastProgressAt });
      return {
        runId: run.runId,
        tenantId: run.tenantId,
        phase: state.state === 'running' || state.state === 'failing' ? state.phase : run.phase,
        status: run.status,
        lastProgressAt: run.lastProgressAt.toISOString(),
        deadlineAt: run.deadlineAt!.toISOString(),
        ageSeconds: Math.round((now.getTime() - run.lastProgressAt.getTime()) / 1000),
        overdueSeconds: Math.round((now.getTime() - run.deadlineAt!.getTime()) / 1000),
        temporalStatus: state.state === 'running' || state.state === 'failing' ? 'RUNNING' : state.state === 'closed' ? state.status : 'NOT_FOUND',
        reason: describeStale(state),
      };
    });
    const inserted = await db
      .insert(staleRunReports)
      .values({ executionId: input.executionId, staleCount: entries.length, runs: entries })
      .onConflictDoNothing()
      .returning({ id: staleRunReports.id });
    const reportId =
      inserted[0]?.id ??
      (await db.select({ id: staleRunReports.id }).from(staleRunReports).where(eq(staleRunReports.executionId, input.executionId)))[0]!.id;
    metrics.staleRuns.set(entries.length);
    return { reportId, staleRuns: entries.length };
  }

  return { reconcileDueRuns, recordAuditPass, writeStaleRunReport };
}
