import type { RequestHandler, Response } from 'express';
import type Redis from 'ioredis';
import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';
import { callerOf } from './auth';
import { HttpError } from './errors';

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

export function controlLimitsOf(
  config: Pick<Config, 'CONTROL_RATE_LIMIT_WINDOW_SECONDS' | 'CONTROL_RATE_LIMIT_PER_KEY' | 'CONTROL_RATE_LIMIT_PER_RUN' | 'CONTROL_COALESCE_SECONDS'>,
): ControlLimits {
  return {
    windowSeconds: config.CONTROL_RATE_LIMIT_WINDOW_SECONDS,
    perKey: config.CONTROL_RATE_LIMIT_PER_KEY,
    perRun: config.CONTROL_RATE_LIMIT_PER_RUN,
    coalesceSeconds: config.CONTROL_COALESCE_SECONDS,
  };
}

/** How long a Redis command may take before this process decides alone: a healthy Redis answers in a millisecond. */
const REDIS_TIMEOUT_MS = 250;
/** After Redis failed, how long this process decides alone before asking it again, so an outage costs no request a wait. */
const REDIS_RETRY_AFTER_MS = 5_000;
const KEY_PREFIX = 'governed:controls';
/** Past this many entries the in-process fallback drops the expired ones. */
const LOCAL_SWEEP_AT = 10_000;

/** One more event in a fixed window: the count so far and the milliseconds until the window ends. */
const COUNT_IN_WINDOW = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {count, ttl}
`;

/** Each key's count and the milliseconds its window has left, without counting ({0, 0} for a key with no window). */
const PEEK_WINDOWS = `
local found = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  local ttl = 0
  if count > 0 then ttl = redis.call('PTTL', key) end
  if ttl < 0 then ttl = 0 end
  found[i] = {count, ttl}
end
return found
`;

export interface WindowCount {
  count: number;
  resetInMs: number;
}

/** This process's own counters and marks, used only while Redis does not answer. */
class LocalState {
  private readonly windows = new Map<string, { count: number; endsAt: number }>();
  private readonly marks = new Map<string, number>();

  constructor(private readonly now: () => number) {}

  /** The bucket's count in its current window, without counting (0 when no window is open). */
  peek(bucket: string): WindowCount {
    const now = this.sweep();
    const window = this.windows.get(bucket);
    return window && window.endsAt > now ? { count: window.count, resetInMs: window.endsAt - now } : { count: 0, resetInMs: 0 };
  }

  count(bucket: string, windowMs: number): WindowCount {
    const now = this.sweep();
    let window = this.windows.get(bucket);
    if (!window || window.endsAt <= now) {
      window = { count: 0, endsAt: now + windowMs };
      this.windows.set(bucket, window);
    }
    window.count += 1;
    return { count: window.count, resetInMs: window.endsAt - now };
  }

  claim(mark: string, ttlMs: number): boolean {
    if (this.isSet(mark)) return false;
    this.marks.set(mark, this.now() + ttlMs);
    return true;
  }

  set(mark: string, ttlMs: number): void {
    this.marks.set(mark, this.now() + ttlMs);
  }

  isSet(mark: string): boolean {
    const expiresAt = this.marks.get(mark);
    return expiresAt !== undefined && expiresAt > this.sweep();
  }

  clear(mark: string): void {
    this.marks.delete(mark);
  }

  /** Keeps memory bounded under a flood of distinct keys and runs. */
  private sweep(): number {
    const now = this.now();
    if (this.windows.size > LOCAL_SWEEP_AT) for (const [k, w] of this.windows) if (w.endsAt <= now) this.windows.delete(k);
    if (this.marks.size > LOCAL_SWEEP_AT) for (const [k, t] of this.marks) if (t <= now) this.marks.delete(k);
    return now;
  }
}

function withinTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Counters and short-lived marks shared by every copy of the API through Redis. When Redis does
 * not answer, this process's own take over (logged once per outage): a control must still work
 * during a Redis outage, bounded per process instead of across copies. Never throws.
 */
export class SharedControlState {
  private readonly local: LocalState;
  /** While set, Redis is not asked until this time. */
  private redisRetryAt: number | null = null;
  /** What the state is for, in the log lines about a Redis outage. */
  private readonly what: string;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    options: { what?: string } = {},
  ) {
    this.local = new LocalState(now);
    this.what = options.what ?? 'control rate limits and coalescing';
  }

  count(bucket: string, windowMs: number): Promise<WindowCount> {
    return this.shared(
      async () => {
        const [count, ttl] = (await this.redis.eval(COUNT_IN_WINDOW, 1, `${KEY_PREFIX}:count:${bucket}`, windowMs)) as [number, number];
        return { count, resetInMs: ttl };
      },
      () => this.local.count(bucket, windowMs),
    );
  }

  /** The counts of `buckets` in their current windows, without counting: one round trip. */
  peek(buckets: string[]): Promise<WindowCount[]> {
    return this.shared(
      async () => {
        const found = (await this.redis.eval(PEEK_WINDOWS, buckets.length, ...buckets.map((b) => `${KEY_PREFIX}:count:${b}`))) as [number, number][];
        return found.map(([count, ttl]) => ({ count, resetInMs: ttl }));
      },
      () => buckets.map((b) => this.local.peek(b)),
    );
  }

  /** Sets `mark` for `ttlMs` unless it is set already: true when this call set it. */
  claim(mark: string, ttlMs: number): Promise<boolean> {
    return this.shared(
      async () => (await this.redis.set(`${KEY_PREFIX}:mark:${mark}`, '1', 'PX', ttlMs, 'NX')) === 'OK',
      () => this.local.claim(mark, ttlMs),
    );
  }

  set(mark: string, ttlMs: number): Promise<void> {
    return this.shared(
      async () => void (await this.redis.set(`${KEY_PREFIX}:mark:${mark}`, '1', 'PX', ttlMs)),
      () => this.local.set(mark, ttlMs),
    );
  }

  isSet(mark: string): Promise<boolean> {
    return this.shared(
      async () => (await this.redis.exists(`${KEY_PREFIX}:mark:${mark}`)) === 1,
      () => this.local.isSet(mark),
    );
  }

  clear(mark: string): Promise<void> {
    this.local.clear(mark);
    return this.shared(
      async () => void (await this.redis.del(`${KEY_PREFIX}:mark:${mark}`)),
      () => undefined,
    );
  }

  private async shared<T>(viaRedis: () => Promise<T>, locally: () => T): Promise<T> {
    if (this.redisRetryAt !== null && this.now() < this.redisRetryAt) return locally();
    try {
      const value = await withinTimeout(viaRedis(), REDIS_TIMEOUT_MS);
      if (this.redisRetryAt !== null) {
        this.redisRetryAt = null;
        this.logger.info(`Redis answers again: ${this.what} are shared by every API copy again`);
      }
      return value;
    } catch (err) {
      if (this.redisRetryAt === null) {
        this.logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          `Redis is unavailable: ${this.what} are counted by this process alone until it answers`,
        );
      }
      this.redisRetryAt = this.now() + REDIS_RETRY_AFTER_MS;
      return locally();
    }
  }
}

export type ControlLimitName = 'per_key' | 'per_run';

/**
 * Where a key stands against its limit, as the IETF RateLimit header fields draft writes it (the
 * form most clients read): its allowance, what is left of it, the seconds until the window ends,
 * and the policy (allowance per window).
 */
export function rateLimitHeaders(quota: { limit: number; windowSeconds: number; remaining: number; resetInMs: number }): Record<string, string> {
  return {
    'RateLimit-Limit': String(quota.limit),
    'RateLimit-Remaining': String(Math.max(0, quota.remaining)),
    'RateLimit-Reset': String(Math.max(0, Math.ceil(quota.resetInMs / 1000))),
    'RateLimit-Policy': `${quota.limit};w=${quota.windowSeconds}`,
  };
}

/** A 429 naming its limit, with Retry-After: the seconds until the limit's window ends. */
export function tooManyRequests(limit: string, what: string, resetInMs: number): HttpError {
  const retryAfterSeconds = Math.max(1, Math.ceil(resetInMs / 1000));
  return new HttpError('RATE_LIMITED', `${what}; retry in ${retryAfterSeconds} s`, { limit, retryAfterSeconds }, { 'Retry-After': String(retryAfterSeconds) });
}

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
