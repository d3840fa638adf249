import type { Client } from '@temporalio/client';
import type { Db } from '../db/client';
import type { Logger } from '../lib/logger';
import { deliverPendingPushes, type SkippedRun } from './control-pusher';
import { startPendingRuns } from './run-starter';

const DEFAULT_PUSH_SLICE_MS = 10_000;

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
  /** Signals one push has in flight at once (PUSH_CONCURRENCY). */
  pushConcurrency?: number;
  /** How long one pass delivers pushes before it lets its other work go first (PUSH_SLICE_MS). */
  pushSliceMs?: number;
}

export interface Dispatcher {
  /** One pass now (tests, and the loop). */
  runOnce(): Promise<{ started: number; pushed: number; queued: number; delivering: number; signalled: number; pending: boolean; skippedRuns: SkippedRun[] }>;
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
  // Stopping ends a push's delivery part way, its progress recorded, instead of waiting out its slice.
  const stopping = new AbortController();

  /** One pass; the loop's passes end a push's delivery part way when the dispatcher stops. */
  async function runOnce(signal?: AbortSignal) {
    const starts = await startPendingRuns({ ...deps, startTimeoutMs: deps.temporalTimeoutMs, graceMs: deps.startGraceMs, limit: 100 });
    const pushes = await deliverPendingPushes({
      ...deps,
      pushTimeoutMs: deps.temporalTimeoutMs,
      concurrency: deps.pushConcurrency,
      limit: 20,
      budgetMs: deps.pushSliceMs ?? DEFAULT_PUSH_SLICE_MS,
      signal,
    });
    const { skippedRuns, ...counts } = pushes;
    if (starts.started || pushes.pushed || pushes.signalled) deps.logger.info({ ...starts, ...counts }, 'dispatched what the API had queued');
    // Each push row names them too (last_error); a run at Temporal's signal limit needs an operator.
    if (skippedRuns.length) deps.logger.warn({ skippedRuns }, 'pushed past runs that refuse signals for good');
    // A push part way through goes on in the next pass, at once.
    return { ...starts, ...pushes, pending: starts.pending || pushes.delivering > 0 };
  }

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      current = runOnce(stopping.signal).then(
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
    runOnce: () => runOnce(),
    async stop() {
      stopped = true;
      stopping.abort();
      clearTimeout(timer);
      await current.catch(() => {});
    },
  };
}
