import { Context } from '@temporalio/activity';

/**
 * Test-only fault injection. The worker takes an injector only when its caller passes one (the
 * tests do; `worker/main.ts` never does), so production workers have no way to switch it on.
 */
export interface FaultRule {
  /** Activity type, e.g. `completeTrace`. */
  activity: string;
  /** Only calls for this run (the activity's first argument's `runId`). */
  runId?: string;
  /** `fail` throws; `stall` sleeps (cancellably) before the call, to trip its timeout. */
  mode: 'fail' | 'stall';
  /** How many calls to affect; absent means every call. */
  times?: number;
  stallMs?: number;
}

export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
}

export class FaultInjector {
  private rules: { rule: FaultRule; hits: number }[] = [];

  add(rule: FaultRule): void {
    this.rules.push({ rule, hits: 0 });
  }

  clear(): void {
    this.rules = [];
  }

  /** How many times a rule has fired, for assertions. */
  hits(activity: string, runId?: string): number {
    return this.rules
      .filter(({ rule }) => rule.activity === activity && (runId === undefined || rule.runId === runId))
      .reduce((sum, r) => sum + r.hits, 0);
  }

  async beforeActivity(activity: string, args: readonly unknown[]): Promise<void> {
    const runId = (args[0] as { runId?: unknown } | undefined)?.runId;
    for (const entry of this.rules) {
      const { rule } = entry;
      if (rule.activity !== activity || (rule.runId !== undefined && rule.runId !== runId)) continue;
      if (rule.times !== undefined && entry.hits >= rule.times) continue;
      entry.hits += 1;
      if (rule.mode === 'stall') {
        await Context.current().sleep(rule.stallMs ?? 60_000);
      } else {
        throw new InjectedFault(`injected fault in ${activity} (call ${entry.hits})`);
      }
    }
  }
}
