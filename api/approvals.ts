import { and, desc, eq, type SQL } from 'drizzle-orm';
import { authorityInWords } from '../core/authority-words';
import type { Db } from '../db/client';
import { outputOf } from '../db/steps';
import { toolApprovals } from '../db/schema';
import type { RouteHandlers } from './router';

/** The exact arguments the model wrote for the call, from the turn that asked for it. */
async function argumentsOf(db: Db, row: typeof toolApprovals.$inferSelect): Promise<string | null> {
  const turn = await outputOf(db, row.runId, { stepIndex: row.stepIndex, turn: row.turn });
  if (!turn) return null;
  const message = JSON.parse(turn.content) as { tool_calls?: { function: { arguments: string } }[] };
  return message.tool_calls?.[row.callIndex]?.function.arguments ?? null;
}

/**
 * Tool calls waiting for a person, and those decided: each with the tool, the exact arguments the
 * model wrote and the hash an approval must quote (`POST /runs/:id/approve`).
 */
export function approvalHandlers(deps: { db: Db }) {
  return {
    listApprovals: async ({ caller, query: { status, limit } }, res) => {
      const filters: SQL[] = [eq(toolApprovals.tenantId, caller.tenantId)];
      if (status !== 'all') filters.push(eq(toolApprovals.status, status));
      const rows = await deps.db
        .select()
        .from(toolApprovals)
        .where(and(...filters))
        .orderBy(desc(toolApprovals.requestedAt))
        .limit(limit);
      const approvals = await Promise.all(
        rows.map(async (row) => ({
          id: row.id,
          runId: row.runId,
          status: row.status,
          tool: row.tool,
          arguments: await argumentsOf(deps.db, row),
          argsSha256: row.argsSha256,
          stepIndex: row.stepIndex,
          turn: row.turn,
          callIndex: row.callIndex,
          requestedAt: row.requestedAt,
          decidedAt: row.decidedAt,
          decidedBy: row.decidedBy,
          // Who decided, in a tenant's words: never the run's internal authority names.
          authority: row.authority && authorityInWords(row.authority),
          reason: row.reason,
        })),
      );
      res.set('Cache-Control', 'no-store').json({ approvals });
    },
  } satisfies Partial<RouteHandlers>;
}
