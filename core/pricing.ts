/** USD per 1,000 tokens. */
export interface ModelPrice {
  inputPer1k: number;
  outputPer1k: number;
}

/**
 * The models whose prices are known. `default` is no model a provider bills: it is one more rate
 * the dearest rate is taken over (see `pricingOf`).
 */
export const PRICE_TABLE: Readonly<Record<string, ModelPrice>> = {
  'sim-1': { inputPer1k: 0.002, outputPer1k: 0.006 },
  'gpt-4o-mini': { inputPer1k: 0.00015, outputPer1k: 0.0006 },
  'gpt-4o': { inputPer1k: 0.0025, outputPer1k: 0.01 },
  default: { inputPer1k: 0.001, outputPer1k: 0.002 },
};

export type PriceTable = Readonly<Record<string, ModelPrice>>;

/**
 * How a billed model was priced: `listed` (the table names it), `snapshot` (a dated snapshot of the
 * model the call asked for, `gpt-4o-mini-2024-07-18` for `gpt-4o-mini`: the provider billed what
 * was asked, at its pinned version) or `dearest` (a name the table does not know: priced at the
 * dearest known rate, so that spend is never under-counted and the hard limit stays a limit).
 */
export type PricingBasis = 'listed' | 'snapshot' | 'dearest';

export interface ModelPricing {
  price: ModelPrice;
  basis: PricingBasis;
}

/** What the trace row of a step priced at the dearest known rate says (`error_code`, its status stays `ok`). */
export const PRICED_AT_DEAREST_RATE = 'PRICED_AT_DEAREST_RATE';

/** A dated snapshot's suffix: `-2024-07-18`, or `-0613`. */
const SNAPSHOT_SUFFIX = /^(.+)-(?:\d{4}-\d{2}-\d{2}|\d{4})$/;

function listed(model: string, table: PriceTable): ModelPrice | undefined {
  // Own entries only: a provider naming its model `constructor` or `__proto__` must not find Object's members.
  return model !== 'default' && Object.hasOwn(table, model) ? table[model] : undefined;
}

/** The dearest known rate: the highest input and the highest output price in the table, each on its own. */
export function dearestPrice(table: PriceTable = PRICE_TABLE): ModelPrice {
  const prices = Object.values(table);
  if (prices.length === 0) return table === PRICE_TABLE ? { inputPer1k: 0, outputPer1k: 0 } : dearestPrice(PRICE_TABLE);
  return { inputPer1k: Math.max(...prices.map((p) => p.inputPer1k)), outputPer1k: Math.max(...prices.map((p) => p.outputPer1k)) };
}

/**
 * The price of `model`, the name the provider billed; `requested`, the model the call asked for,
 * lets a dated snapshot of it be priced as it. Any other name the table does not list is priced at
 * the dearest known rate: a provider may bill under any name, and pricing an unknown one low would
 * let the hard limit under-count (`chatCompletionBoundUsd` reserves the same rate, so the budget
 * reservation stays a bound).
 */
export function pricingOf(model: string, table: PriceTable = PRICE_TABLE, requested?: string): ModelPricing {
  const own = listed(model, table);
  if (own) return { price: own, basis: 'listed' };
  const base = SNAPSHOT_SUFFIX.exec(model)?.[1];
  const asked = base !== undefined && base === requested ? listed(base, table) : undefined;
  if (asked) return { price: asked, basis: 'snapshot' };
  return { price: dearestPrice(table), basis: 'dearest' };
}

export function priceFor(model: string, table: PriceTable = PRICE_TABLE, requested?: string): ModelPrice {
  return pricingOf(model, table, requested).price;
}

/** Cost at `price`, rounded to micro-dollars so sums stay exact enough to compare against a budget. */
export function costAt(price: ModelPrice, tokensIn: number, tokensOut: number): number {
  const raw = (tokensIn * price.inputPer1k + tokensOut * price.outputPer1k) / 1000;
  return Math.round(raw * 1e6) / 1e6;
}

/** Cost of a call billed as `model` (see `pricingOf`). */
export function costUsd(model: string, tokensIn: number, tokensOut: number, table: PriceTable = PRICE_TABLE, requested?: string): number {
  return costAt(priceFor(model, table, requested), tokensIn, tokensOut);
}

export function addUsd(a: number, b: number): number {
  return Math.round((a + b) * 1e6) / 1e6;
}

/** The most tokens one call may report for its prompt or its completion; more is no usage a provider can mean. */
export const MAX_TOKENS_PER_CALL = 10_000_000;

export type UsageCheck = { ok: true; tokensIn: number; tokensOut: number } | { ok: false; field: string; problem: string };

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (typeof value === 'number') return `${value}`;
  // A provider's text is not echoed: it could carry anything.
  const kind = Array.isArray(value) ? 'list' : typeof value;
  return `${/^[aeiou]/.test(kind) ? 'an' : 'a'} ${kind}, not a number`;
}

/**
 * A provider's token usage, checked before it is priced and stored: each count a whole number from
 * 0 to `MAX_TOKENS_PER_CALL`. Anything else (missing, negative, fractional, a string, an absurd
 * count) cannot be governed, so the step fails naming the field, never later in a SQL write.
 */
export function checkUsage(usage: unknown): UsageCheck {
  if (usage === null || typeof usage !== 'object' || Array.isArray(usage)) {
    return { ok: false, field: 'usage', problem: `the response carries no token usage (usage is ${describe(usage)})` };
  }
  const counts: number[] = [];
  for (const field of ['prompt_tokens', 'completion_tokens'] as const) {
    const value = (usage as Record<string, unknown>)[field];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > MAX_TOKENS_PER_CALL) {
      return {
        ok: false,
        field: `usage.${field}`,
        problem: `usage.${field} is ${describe(value)}: a token count must be a whole number from 0 to ${MAX_TOKENS_PER_CALL}`,
      };
    }
    counts.push(value);
  }
  return { ok: true, tokensIn: counts[0]!, tokensOut: counts[1]! };
}
