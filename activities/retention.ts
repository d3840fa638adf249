import type { DbOrTx } from '../db/client';
import { evidenceOfRuns } from '../db/evidence';
import { lockExpiredRuns, pruneAlerts, pruneControlPushes, pruneOutbox, pruneRuns, type Tombstone } from '../db/retention';
import { exportSinkFor, type RunExportSink } from '../lib/run-export';
import { mapLimit } from '../lib/map-limit';
import type { ActivityDeps, RunExport } from './deps';

/** Export files written at once by one batch. */
const EXPORT_CONCURRENCY = 4;
const HISTORY_DELETE_CONCURRENCY = 8;
const GRPC_NOT_FOUND = 5;

/**
 * The export: the run's evidence (README, "Evidence"), the file `governed evidence verify` checks
 * offline, written while its records are still there to be re-hashed.
 */
export function evidenceExport(sink: RunExportSink): RunExport {
  return {
    sink,
    async collect(tx: DbOrTx, runIds: readonly string[]) {
      const evidence = await evidenceOfRuns(tx, runIds);
      return new Map([...evidence].map(([runId, lines]) => [runId, lines.map((line) => JSON.stringify(line))]));
    },
  };
}

export interface PruneRunsResult {
  runs: number;
  exported: number;
  /** Rows removed with them, all tables together. */
  records: number;
  /** Their workflow histories deleted from Temporal (those not already gone). */
  histories: number;
}

/** The retention workflow's batches (`workflows/retention.ts`): each one activity, one transaction. */
export function createRetentionActivities({ db, logger, metrics, runExport, temporal }: ActivityDeps) {
  /**
   * The pruned runs' workflow histories (their inputs and results), which would otherwise stay until
   * the namespace's retention: once the records are gone, so is Temporal's copy. A history already
   * gone is fine; any other failure is logged and left to the namespace's retention.
   */
  async function deleteHistories(runIds: readonly string[]): Promise<number> {
    const deleted = await mapLimit(runIds, HISTORY_DELETE_CONCURRENCY, async (workflowId) => {
      try {
        await temporal.workflowService.deleteWorkflowExecution({ namespace: temporal.options.namespace, workflowExecution: { workflowId } });
        return 1;
      } catch (err) {
        if ((err as { code?: number }).code !== GRPC_NOT_FOUND) {
          logger.warn({ runId: workflowId, err: err instanceof Error ? err.message : String(err) }, 'retention: could not delete a pruned run\'s workflow history');
        }
        return 0;
      }
    });
    return deleted.reduce<number>((a, b) => a + b, 0);
  }

  /**
   * Up to `limit` finished runs past their tenant's retention: locked, exported (for tenants that
   * ask, before anything is removed), removed with every record of them, and tombstoned, in one
   * transaction. A failure anywhere leaves every run as it was; the export files a retry writes
   * again replace the ones it wrote.
   */
  async function pruneExpiredRuns(input: { limit: number; asOf?: string }): Promise<PruneRunsResult> {
    const result = await db.transaction(async (tx) => {
      const asOf = input.asOf ? new Date(input.asOf) : undefined;
      const expired = await lockExpiredRuns(tx, { limit: input.limit, canExport: runExport !== undefined, ...(asOf ? { asOf } : {}) });
      if (expired.length === 0) return { runIds: [], exported: 0, records: 0 };
      const toExport = expired.filter((r) => r.exportBeforePrune);
      const lines = toExport.length > 0 && runExport ? await runExport.collect(tx, toExport.map((r) => r.runId)) : new Map<string, string[]>();
      const written = new Map<string, { location: string; sha256: string }>();
      await mapLimit(toExport, EXPORT_CONCURRENCY, async (run) => {
        written.set(run.runId, await runExport!.sink.write({ tenantId: run.tenantId, runId: run.runId, lines: lines.get(run.runId) ?? [] }));
      });
      const tombstones: Tombstone[] = expired.map((run) => ({
        run,
        exportLocation: written.get(run.runId)?.location ?? null,
        exportSha256: written.get(run.runId)?.sha256 ?? null,
      }));
      const records = await pruneRuns(tx, tombstones);
      return { runIds: expired.map((r) => r.runId), exported: written.size, records };
    });
    metrics.retentionPruned.inc({ kind: 'runs' }, result.runIds.length);
    metrics.retentionPruned.inc({ kind: 'exported_runs' }, result.exported);
    const histories = await deleteHistories(result.runIds);
    if (result.runIds.length > 0) logger.info({ runs: result.runIds.length, exported: result.exported, records: result.records, histories }, 'retention: pruned expired runs');
    return { runs: result.runIds.length, exported: result.exported, records: result.records, histories };
  }

  /** Up to `limit` each of published outbox rows, delivered control pushes and alerts past their tenant's setting. */
  async function pruneEventRecords(input: { limit: number }): Promise<{ outbox: number; controlPushes: number; alerts: number }> {
    const done = await db.transaction(async (tx) => ({
      outbox: await pruneOutbox(tx, input.limit),
      controlPushes: await pruneControlPushes(tx, input.limit),
      alerts: await pruneAlerts(tx, input.limit),
    }));
    metrics.retentionPruned.inc({ kind: 'outbox' }, done.outbox);
    metrics.retentionPruned.inc({ kind: 'control_pushes' }, done.controlPushes);
    metrics.retentionPruned.inc({ kind: 'alerts' }, done.alerts);
    return done;
  }

  return { pruneExpiredRuns, pruneEventRecords };
}

/** The operator's RETENTION_EXPORT_TO as the records export; none when unset. */
export function runExportOf(target: string | undefined): RunExport | undefined {
  const sink = exportSinkFor(target);
  return sink ? evidenceExport(sink) : undefined;
}
