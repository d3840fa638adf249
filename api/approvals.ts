import { Router } from 'express';
import { and, desc, eq, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { authorityInWords } from '../core/authority-words';
import type { Db } from '../db/client';
import { outputOf } from '../db/steps';
import { toolApprovals } from '../db/schema';
import { callerOf } from './auth';
import { parseQuery } from './paging';

export const approvalsQuery = z
  .object({
    status: z.enum(['pending', 'approved', 'denied', 'expired', 'all']).default('pending'),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();

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
export function approvalRoutes(deps: { db: Db }): Router {
  const router = Router();
  router.get('/approvals', async (req, res) => {
    const { status, limit } = parseQuery(approvalsQuery, req.query);
    const filters: SQL[] = [eq(toolApprovals.tenantId, callerOf(res).tenantId)];
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
  });
  return router;
}
