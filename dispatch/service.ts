import type { Client } from '@temporalio/client';
import type { Db } from '../db/client';
import type { Logger } from '../lib/logger';
import { deliverPendingPushes, type SkippedRun } from './control-pusher';
import { startPendingRuns } from './run-starter';

export interface DispatcherDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  logger: Logger;
  /** Between passes; a pass that left work behind is followed at once. */
  intervalMs: number;
  /** How long one Temporal call may wait (a start, or one push's signals). */
  temporalTimeoutMs: number;
  /** Runs younger than this are still the API's to start. */
  startGraceMs: number;
}

export interface Dispatcher {
  /** One pass now (tests, and the loop). */
  runOnce(): Promise<{ started: number; pushed: number; queued: number; pending: boolean; skippedRuns: SkippedRun[] }>;
  stop(): Promise<void>;
}

/**
 * What the API committed and Temporal has not heard yet: runs to start and changes to push. The
 * API tries both at once; this loop, in the worker, makes sure they happen when it could not.
 */
export function startDispatcher(deps: DispatcherDeps): Dispatcher {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> = Promise.resolve();

  async function runOnce() {
    const starts = await startPendingRuns({ ...deps, startTimeoutMs: deps.temporalTimeoutMs, graceMs: deps.startGraceMs, limit: 100 });
    const pushes = await deliverPendingPushes({ ...deps, pushTimeoutMs: deps.temporalTimeoutMs, limit: 20 });
    const { skippedRuns, ...counts } = pushes;
    if (starts.started || pushes.pushed) deps.logger.info({ ...starts, ...counts }, 'dispatched what the API had queued');
    // Each push row names them too (last_error); a run at Temporal's signal limit needs an operator.
    if (skippedRuns.length) deps.logger.warn({ skippedRuns }, 'pushed past runs that refuse signals for good');
    return { ...starts, ...pushes };
  }

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      current = runOnce().then(
        (r) => schedule(r.pending ? 0 : deps.intervalMs),
        (err: unknown) => {
          deps.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'dispatch pass failed; retrying');
          schedule(deps.intervalMs);
        },
      );
    }, delayMs);
  }
  schedule(0);

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await current.catch(() => {});
    },
  };
}
