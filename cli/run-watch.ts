import { ApiError, UnreachableError, type ApiClient } from './api-client';
import { EXIT, type ExitCode } from './exit-codes';
import { printJson } from './format';
import { runViewOf, type RunDetail } from './run-view';
import { screenFor } from './screen';

export interface WatchOptions {
  intervalMs: number;
  /** NDJSON: each new answer of `GET /runs/:id` on a line of its own. */
  json: boolean;
}

/** How long the API may stay away (down, or answering 5xx) mid-watch before the watch gives up. */
const GIVE_UP_AFTER_MS = 30_000;

/**
 * Polls the run until it ends and shows it as it goes. The answer is the exit code: OK only for
 * COMPLETED, so `governed runs watch $RUN && deploy` does what it reads like.
 */
export async function watchRun(api: ApiClient, runId: string, options: WatchOptions): Promise<ExitCode> {
  const screen = options.json ? null : screenFor(process.stdout);
  const interrupted = () => {
    screen?.close();
    process.stdout.write('\n');
    process.exit(130);
  };
  process.on('SIGINT', interrupted);
  let lastAnswer = '';
  let lastDetail: RunDetail | null = null;
  let failingSince: number | null = null;
  try {
    for (;;) {
      let detail: RunDetail;
      try {
        detail = await api.get<RunDetail>(`/runs/${encodeURIComponent(runId)}`);
        failingSince = null;
      } catch (err) {
        // Only once the run was seen: a wrong URL or a dead API at the start is reported at once.
        if (!lastDetail || !isPassing(err)) throw err;
        failingSince ??= Date.now();
        if (Date.now() - failingSince > GIVE_UP_AFTER_MS) throw err;
        screen?.update(runViewOf(lastDetail), `API not answering (${(err as Error).message}), retrying`);
        await sleep(options.intervalMs);
        continue;
      }
      lastDetail = detail;
      const view = runViewOf(detail);
      if (options.json) {
        const answer = JSON.stringify(detail);
        if (answer !== lastAnswer) printJson(detail);
        lastAnswer = answer;
      } else {
        screen?.update(view);
      }
      if (view.terminal) return view.phase === 'COMPLETED' ? EXIT.OK : EXIT.FAILED;
      await sleep(options.intervalMs);
    }
  } finally {
    process.removeListener('SIGINT', interrupted);
    screen?.close();
  }
}

/** An API that is restarting or briefly unavailable is waited for; a 4xx is an answer. */
function isPassing(err: unknown): boolean {
  return err instanceof UnreachableError || (err instanceof ApiError && err.status >= 500);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
