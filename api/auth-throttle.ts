import net from 'node:net';
import { tooManyRequests, type SharedControlState } from './shared-counters';

/**
 * Bounds on failed API key lookups: a client guessing keys (5,000 wrong keys at 319/s used to be
 * answered 401 each, as fast as it could send them) is held to a few guesses a minute. Only
 * failures count, and only against the address that sent them and the very key that failed: a
 * correct key is never slowed by anyone else's wrong ones — except another client's behind the
 * same address (one NAT, one proxy without `API_TRUST_PROXY`), which shares that address's limit.
 */
export interface AuthLimits {
  /** The fixed window both limits count over. */
  windowSeconds: number;
  /** Failed lookups one client address may make per window; past it, every keyed request from it is refused. */
  perAddress: number;
  /** Failed lookups of one and the same key per window, from every address together; past it, that key is refused. */
  perKey: number;
  /** What the counters' names start with, in Redis and in the per-process fallback (tests give each API its own). */
  namespace?: string;
}

/** The limits a 429 names. */
export type AuthLimitName = 'failed_auth_per_address' | 'failed_auth_per_key';

/**
 * The bucket a client address counts in: an IPv4 address as it is (an IPv4-mapped IPv6 address as
 * its IPv4), an IPv6 address by its /64, which one client (one host, one LAN) usually holds whole.
 */
export function addressBucket(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!net.isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('%')[0]!.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups] : headGroups;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Counts failed lookups per client address and per key (its hash) in Redis, shared by every copy
 * of the API; while Redis does not answer, each process counts alone (with the control limits).
 */
export class AuthThrottle {
  private readonly windowMs: number;
  private readonly namespace: string;

  constructor(
    private readonly state: SharedControlState,
    readonly limits: AuthLimits,
  ) {
    this.windowMs = limits.windowSeconds * 1000;
    this.namespace = limits.namespace ?? 'auth-failures';
  }

  private buckets(address: string, keyHash: string): [string, string] {
    return [`${this.namespace}:address:${address}`, `${this.namespace}:key:${keyHash}`];
  }

  /** 429 when the address or the key has failed as often as its limit allows in the current window. */
  async admit(address: string, keyHash: string): Promise<void> {
    const [byAddress, byKey] = await this.state.peek(this.buckets(address, keyHash));
    const { windowSeconds, perAddress, perKey } = this.limits;
    if (byAddress!.count >= perAddress) {
      throw tooManyRequests(
        'failed_auth_per_address' satisfies AuthLimitName,
        `too many failed API key lookups from this address (${perAddress} in ${windowSeconds} s)`,
        byAddress!.resetInMs,
      );
    }
    if (byKey!.count >= perKey) {
      throw tooManyRequests('failed_auth_per_key' satisfies AuthLimitName, `this API key failed ${perKey} lookups in ${windowSeconds} s`, byKey!.resetInMs);
    }
  }

  /** Counts a lookup that found no key against the address and the key. */
  async failed(address: string, keyHash: string): Promise<void> {
    await Promise.all(this.buckets(address, keyHash).map((bucket) => this.state.count(bucket, this.windowMs)));
  }
}

/** `state`: the counters the API's control limits use too (`api/rate-limit.ts`), so a Redis outage is one fallback. */
export function createAuthThrottle(deps: { state: SharedControlState; limits: AuthLimits }): AuthThrottle {
  return new AuthThrottle(deps.state, deps.limits);
}
