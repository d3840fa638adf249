import { and, asc, desc, eq, gte, lt, sql, type SQL } from 'drizzle-orm';
import type { CostGroup } from '../core/costs';
import type { DbOrTx } from './client';
import type { RunAttribution } from './runs';
import { apiKeys, costRollups } from './schema';

/**
 * The cost rollups, one owner: spend per tenant, hour (UTC), submitting API key, model, skill and
 * tool. Each governed record (a plan step, a model turn, a tool call) adds to its row in the
 * transaction that inserts the record, and only when that insert was new: a retried activity finds
 * its record and adds nothing, so the rollups equal the sum of the trace rows, to the digit.
 */

/** What one record spent. */
export interface CostEntry {
  model: string;
  skill: string;
  /** `server.tool` for a tool call. */
  tool?: string | null;
  costUsd: number;
  tokensIn: number;
  tokensOut: number;
}

/** The hour now falls in, in UTC: the transaction's time, the one its trace row is stamped with. */
const CURRENT_HOUR = sql`date_trunc('hour', now() at time zone 'UTC') at time zone 'UTC'`;

/**
 * Adds one record's spend to its rollup row, in the caller's transaction (the one that inserted the
 * record). A run that is not found (no tenant) adds nothing.
 */
export async function addToCostRollup(tx: DbOrTx, run: RunAttribution, entry: CostEntry): Promise<void> {
  if (!run.tenantId) return;
  await tx
    .insert(costRollups)
    .values({
      tenantId: run.tenantId,
      bucketStart: CURRENT_HOUR,
      keyId: run.apiKeyId,
      model: entry.model,
      skill: entry.skill,
      tool: entry.tool ?? '',
      // Through float8, as the trace row stores it: the rollup is the sum of exactly those values.
      costUsd: sql`${entry.costUsd}::float8::numeric`,
      tokensIn: entry.tokensIn,
      tokensOut: entry.tokensOut,
      calls: 1,
    })
    .onConflictDoUpdate({
      target: [costRollups.tenantId, costRollups.bucketStart, costRollups.keyId, costRollups.model, costRollups.skill, costRollups.tool],
      set: {
        costUsd: sql`${costRollups.costUsd} + excluded.cost_usd`,
        tokensIn: sql`${costRollups.tokensIn} + excluded.tokens_in`,
        tokensOut: sql`${costRollups.tokensOut} + excluded.tokens_out`,
        calls: sql`${costRollups.calls} + excluded.calls`,
      },
    });
}

export interface CostQuery {
  tenantId: string;
  groupBy: readonly CostGroup[];
  /** Hours starting at or after `from` and before `to`. */
  from: Date;
  to: Date;
}

export interface CostRow {
  /** The hour's or the day's start (UTC), when grouped by `hour` or `day`. */
  period?: string;
  keyId?: string | null;
  /** The key's visible prefix, so a person can tell keys apart. */
  keyPrefix?: string | null;
  keyLabel?: string | null;
  model?: string;
  skill?: string;
  tool?: string;
  /** Exact, as Postgres summed it. */
  costUsd: string;
  tokensIn: number;
  tokensOut: number;
  calls: number;
}

const isoOf = (at: SQL) => sql<string>`to_char(${at} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`;

/** The tenant's spend over the range, summed by the dimensions asked for (none: one row, the total), dearest first within a period. */
export async function costReport(db: DbOrTx, query: CostQuery): Promise<CostRow[]> {
  const groups = new Set(query.groupBy);
  const period =
    groups.has('day') ? sql`date_trunc('day', ${costRollups.bucketStart} at time zone 'UTC') at time zone 'UTC'` : groups.has('hour') ? sql`${costRollups.bucketStart}` : null;
  const dims: Record<string, SQL> = {};
  const groupBy: SQL[] = [];
  if (period) {
    dims.period = isoOf(period);
    groupBy.push(period);
  }
  if (groups.has('key')) {
    Object.assign(dims, { keyId: sql<string | null>`${costRollups.keyId}`, keyPrefix: sql<string | null>`${apiKeys.keyPrefix}`, keyLabel: sql<string | null>`${apiKeys.label}` });
    groupBy.push(sql`${costRollups.keyId}`, sql`${apiKeys.keyPrefix}`, sql`${apiKeys.label}`);
  }
  for (const dim of ['model', 'skill', 'tool'] as const) {
    if (!groups.has(dim)) continue;
    dims[dim] = sql<string>`${costRollups[dim]}`;
    groupBy.push(sql`${costRollups[dim]}`);
  }
  const selection = {
    ...dims,
    costUsd: sql<string>`coalesce(sum(${costRollups.costUsd}), 0)::text`,
    tokensIn: sql<number>`coalesce(sum(${costRollups.tokensIn}), 0)::float8`,
    tokensOut: sql<number>`coalesce(sum(${costRollups.tokensOut}), 0)::float8`,
    calls: sql<number>`coalesce(sum(${costRollups.calls}), 0)::float8`,
  };
  const range = and(eq(costRollups.tenantId, query.tenantId), gte(costRollups.bucketStart, query.from), lt(costRollups.bucketStart, query.to));
  const base = db.select(selection).from(costRollups).leftJoin(apiKeys, eq(apiKeys.id, costRollups.keyId)).where(range).$dynamic();
  // Without a dimension: one row, the total (zeros over no rollups).
  const rows = groupBy.length === 0
    ? await base
    : await base.groupBy(...groupBy).orderBy(...(period ? [asc(period)] : []), desc(sql`sum(${costRollups.costUsd})`), ...groupBy.map((g) => asc(g)));
  return rows as unknown as CostRow[];
}
