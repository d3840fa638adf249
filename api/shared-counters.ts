import type Redis from 'ioredis';
import type { Logger } from '../lib/logger';
import { HttpError } from './errors';

/*
 * Counters and marks every copy of the API shares through Redis, and the answers a limit gives:
 * used by the control limits (rate-limit.ts) and the failed-authentication throttle
 * (auth-throttle.ts), which authentication itself uses, so neither of those may be imported here.
 */

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
