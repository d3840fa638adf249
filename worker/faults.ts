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
  /**
   * `fail` throws before the call; `failAfter` lets the call commit and then throws, as a step
   * that succeeded but whose completion was lost; `stall` sleeps (cancellably) before the call,
   * to trip its timeout.
   */
  mode: 'fail' | 'failAfter' | 'stall';
  /** How many calls to affect; absent means every call. */
  times?: number;
  /** How many matching calls to let through before the rule starts to fire. */
  skip?: number;
  stallMs?: number;
}

export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
}

export class FaultInjector {
  private rules: { rule: FaultRule; hits: number; seen: number }[] = [];

  add(rule: FaultRule): void {
    this.rules.push({ rule, hits: 0, seen: 0 });
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
    for (const entry of this.firing(activity, args, ['fail', 'stall'])) {
      if (entry.rule.mode === 'stall') await Context.current().sleep(entry.rule.stallMs ?? 60_000);
      else throw new InjectedFault(`injected fault in ${activity} (call ${entry.hits})`);
    }
  }

  afterActivity(activity: string, args: readonly unknown[]): void {
    for (const entry of this.firing(activity, args, ['failAfter'])) {
      throw new InjectedFault(`injected fault after ${activity} committed (call ${entry.hits})`);
    }
  }

  /** The rules that fire for this call, each counted as hit. */
  private firing(activity: string, args: readonly unknown[], modes: FaultRule['mode'][]): { rule: FaultRule; hits: number }[] {
    const runId = (args[0] as { runId?: unknown } | undefined)?.runId;
    const fired = this.rules.filter((entry) => {
      const { rule } = entry;
      if (rule.activity !== activity || !modes.includes(rule.mode) || (rule.runId !== undefined && rule.runId !== runId)) return false;
      entry.seen += 1;
      return entry.seen > (rule.skip ?? 0) && (rule.times === undefined || entry.hits < rule.times);
    });
    for (const entry of fired) entry.hits += 1;
    return fired;
  }
}
