import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { SUPPRESSION_REASONS, type AlertDomain, type AlertSettings, type SuppressionReason } from '../core/alerts';

export type FatigueDecision = { allowed: true } | { allowed: false; reason: SuppressionReason };

export interface FatigueCheck {
  /** `null` for system alerts: they share the tenant key `system`. */
  tenantId: string | null;
  domain: AlertDomain;
  dedupeKey: string;
  settings: AlertSettings;
  /** Overrides `settings.dedupWindowSeconds` for this alert. */
  dedupWindowSeconds?: number;
  /**
   * The identity of the alert being decided, e.g. `${eventId}:${rule}`. When given, the decision is
   * remembered under it: a second check of the same alert (a redelivered event, a racing reactor, a
   * retry after a crash between the check and the insert of the row) gets the same answer and
   * consumes nothing. Without it, the racer that lost would be told DUPLICATE of its own alert.
   */
  alertKey?: string;
  /**
   * Counts the alert against a budget of its own instead of the tenant's hourly cap (and its own
   * domain cooldown): alerts of a kind one caller can raise at will (a denied run per submit) then
   * cannot spend the budget every other alert of the tenant needs. Its cap is `maxPerHour`, and
   * never more than the tenant's `maxAlertsPerHour`.
   */
  budget?: { name: string; maxPerHour: number };
}

export interface FatigueController {
  check(input: FatigueCheck): Promise<FatigueDecision>;
}

export interface FatigueControllerOptions {
  redis: Redis;
  keyPrefix?: string;
  /** How long a decision is remembered per `alertKey`; it only has to outlive the reactor's retries. */
  decisionTtlSeconds?: number;
  /** Tests move the clock across an hour; the rate counter is per clock hour of this clock. */
  now?: () => number;
}

/**
 * One atomic decision (seed §13.6), so two reactors never both let the same alert through.
 *
 * KEYS: 1 decision memo, 2 dedup, 3 domain cooldown, 4 hourly rate counter.
 * ARGV: 1 enabled (1|0), 2 dedup window s, 3 cooldown s, 4 max per hour, 5 rate TTL s, 6 memo TTL s.
 *
 * The dedup key is taken (SET NX) before the cooldown and rate checks, so an alert held back by a
 * cooldown or the rate limit still counts as seen: the same alert repeated within the window is a
 * DUPLICATE, not a second candidate. The window runs from the first sighting; a duplicate does not
 * extend it, so a condition that persists is reported again once per window at most. Only an alert
 * that is allowed starts the domain's cooldown and takes from the hourly budget.
 */
const FATIGUE_SCRIPT = `
local memo = KEYS[1]
if memo ~= '' then
  local earlier = redis.call('GET', memo)
  if earlier then return earlier end
end
local function decide()
  if ARGV[1] ~= '1' then return 'DISABLED' end
  local window = tonumber(ARGV[2])
  if window > 0 and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', window) then return 'DUPLICATE' end
  local cooldown = tonumber(ARGV[3])
  if cooldown > 0 and redis.call('EXISTS', KEYS[3]) == 1 then return 'DOMAIN_COOLDOWN' end
  if tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[4]) then return 'TENANT_RATE_LIMIT' end
  redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
  if cooldown > 0 then redis.call('SET', KEYS[3], '1', 'EX', cooldown) end
  return 'ALLOWED'
end
local decision = decide()
if memo ~= '' then redis.call('SET', memo, decision, 'EX', ARGV[6]) end
return decision
`;

const FATIGUE_SCRIPT_SHA = createHash('sha1').update(FATIGUE_SCRIPT).digest('hex');

const HOUR_SECONDS = 3600;

/**
 * The fatigue controller: dedup window, domain cooldowns and an hourly budget per tenant, in Redis;
 * an alert with a `budget` of its own is counted apart (`FatigueCheck.budget`).
 */
export function createFatigueController(options: FatigueControllerOptions): FatigueController {
  const { redis } = options;
  const prefix = options.keyPrefix ?? 'governed:alerts';
  const decisionTtl = options.decisionTtlSeconds ?? 86_400;
  const now = options.now ?? Date.now;

  /** EVALSHA first; a Redis that restarted (or never saw the script) answers NOSCRIPT once. */
  async function runScript(keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(FATIGUE_SCRIPT_SHA, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(FATIGUE_SCRIPT, keys.length, ...keys, ...args);
    }
  }

  return {
    async check(input) {
      const { settings } = input;
      const tenant = input.tenantId ?? 'system';
      const nowSeconds = Math.floor(now() / 1000);
      const hour = Math.floor(nowSeconds / HOUR_SECONDS);
      // The counter lives to the end of its hour, plus a margin for clocks a little behind ours.
      const rateTtl = (hour + 1) * HOUR_SECONDS - nowSeconds + 60;
      const { budget } = input;
      // A budget of its own: its own hourly counter and its own cooldown key (same cooldown length).
      const own = budget ? `:${budget.name}` : '';
      const keys = [
        input.alertKey === undefined ? '' : `${prefix}:decision:${tenant}:${input.alertKey}`,
        `${prefix}:dedup:${tenant}:${input.dedupeKey}`,
        `${prefix}:cooldown:${tenant}:${input.domain}${own}`,
        budget ? `${prefix}:rate:${tenant}${own}:${hour}` : `${prefix}:rate:${tenant}:${hour}`,
      ];
      const args = [
        settings.enabled ? '1' : '0',
        input.dedupWindowSeconds ?? settings.dedupWindowSeconds,
        settings.domainCooldowns[input.domain] ?? 0,
        budget ? Math.min(budget.maxPerHour, settings.maxAlertsPerHour) : settings.maxAlertsPerHour,
        rateTtl,
        decisionTtl,
      ];
      const decision = await runScript(keys, args);
      if (decision === 'ALLOWED') return { allowed: true };
      if (typeof decision === 'string' && isSuppressionReason(decision)) return { allowed: false, reason: decision };
      throw new Error(`alert fatigue script answered ${String(decision)}`);
    },
  };
}

function isSuppressionReason(value: string): value is SuppressionReason {
  return (SUPPRESSION_REASONS as readonly string[]).includes(value);
}
