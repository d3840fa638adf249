import type { RequestHandler, Response } from 'express';
import type Redis from 'ioredis';
import type { Logger } from '../lib/logger';
import { callerOf } from './auth';
import { rateLimitHeaders, SharedControlState, tooManyRequests } from './shared-counters';

/**
 * Bounds on control requests (pause, stop, resume; the tenant-wide pause and resume). A flood of
 * controls at one run used to bury its workflow under signals until it was wedged: every copy of
 * the API counts in the same Redis, so the bounds hold however many copies there are.
 */
export interface ControlLimits {
  /** The fixed window both limits count over. */
  windowSeconds: number;
  /** Control requests one API key may send per window. */
  perKey: number;
  /** Signals and updates the API may send to one run per window, from every key together. */
  perRun: number;
  /** How long a pause or stop the API sent answers a repeat of it without another signal. */
  coalesceSeconds: number;
}

export type ControlLimitName = 'per_key' | 'per_run';

/** The two rate limits on controls; each refusal is a 429 with Retry-After that names its limit. */
export class ControlLimiter {
  constructor(
    private readonly state: SharedControlState,
    readonly limits: ControlLimits,
  ) {}

  /**
   * Counts a control request of the key (once it is well formed); 429 past the key's allowance.
   * Either way the answer says where the key stands (`rateLimitHeaders`).
   */
  async admitKey(apiKeyId: string, res?: Response): Promise<void> {
    const { windowSeconds, perKey } = this.limits;
    const { count, resetInMs } = await this.state.count(`key:${apiKeyId}`, windowSeconds * 1000);
    const headers = rateLimitHeaders({ limit: perKey, windowSeconds, remaining: perKey - count, resetInMs });
    if (count > perKey) {
      const refusal = tooManyRequests('per_key', `rate limit per API key: this key sent more than ${perKey} control requests in ${windowSeconds} s`, resetInMs);
      Object.assign(refusal.headers ?? {}, headers);
      throw refusal;
    }
    res?.set(headers);
  }

  /**
   * Counts a signal or update about to be sent to the run; 429 past the run's allowance. A stop is
   * counted and never refused: it ends the run, repeats of it are coalesced, and no flood of other
   * controls (by any key) may keep an admin from stopping a run.
   */
  async admitRun(runId: string, action: 'pause' | 'stop' | 'resume'): Promise<void> {
    const { windowSeconds, perRun } = this.limits;
    const { count, resetInMs } = await this.state.count(`run:${runId}`, windowSeconds * 1000);
    if (count > perRun && action !== 'stop') {
      throw tooManyRequests('per_run', `rate limit per run: this run was sent more than ${perRun} controls in ${windowSeconds} s`, resetInMs);
    }
  }
}

/**
 * The pauses and stops the API sent lately, so that a repeat becomes an answer, not a signal: the
 * run would only refuse (and record) a second pause while one is pending or held, and a second
 * stop changes nothing.
 */
export class RecentControls {
  constructor(
    private readonly state: SharedControlState,
    private readonly coalesceMs: number,
  ) {}

  get windowSeconds(): number {
    return this.coalesceMs / 1000;
  }

  /** Claims the run's `action`: false when one was sent, or is being sent, within the window. */
  claim(action: 'pause' | 'stop', runId: string): Promise<boolean> {
    return this.state.claim(`sent:${action}:${runId}`, this.coalesceMs);
  }

  /** The claimed send failed: a repeat must not be told that one was sent. */
  release(action: 'pause' | 'stop', runId: string): Promise<void> {
    return this.state.clear(`sent:${action}:${runId}`);
  }

  /**
   * A resume was accepted, or may have been: the pause sent before it no longer stands, and for a
   * while the stored record (written by the run a moment later) may still say paused.
   */
  async resumed(runId: string): Promise<void> {
    await this.state.clear(`sent:pause:${runId}`);
    await this.state.set(`resumed:${runId}`, this.coalesceMs);
  }

  recentlyResumed(runId: string): Promise<boolean> {
    return this.state.isSet(`resumed:${runId}`);
  }
}

export interface ControlGuards {
  limiter: ControlLimiter;
  recent: RecentControls;
}

/** `state`: counters shared with the API's other limits (one fallback, logged once per outage); by default its own. */
export function createControlGuards(deps: { redis: Redis; logger: Logger; limits: ControlLimits; state?: SharedControlState }): ControlGuards {
  const state = deps.state ?? new SharedControlState(deps.redis, deps.logger);
  return { limiter: new ControlLimiter(state, deps.limits), recent: new RecentControls(state, deps.limits.coalesceSeconds * 1000) };
}

/** Counts the request against its key's control limit before the route runs (the tenant-wide pause and resume). */
export function limitControlsPerKey(limiter: ControlLimiter): RequestHandler {
  return async (_req, res, next) => {
    await limiter.admitKey(callerOf(res).apiKeyId, res);
    next();
  };
}
