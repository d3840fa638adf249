import { createHash } from 'node:crypto';
import { and, asc, eq, inArray, isNull, lt, sql, type SQL } from 'drizzle-orm';
import type { OutboundEvent } from '../core/events';
import type { OutputContentType, OutputKind, OutputRef } from '../core/outputs';
import type { DbOrTx } from './client';
import { writeEvents } from './outbox';
import { flagHighRisk } from './runs';
import { stepOutputs, traceSteps } from './schema';

/**
 * The records of the run's governed steps, one owner: each step's whole output, its trace row and
 * the run's running totals. A plan step is keyed by its index; inside an agent step, a model turn
 * by `turn` and a tool call by `turn` and `callIndex`. Every write is keyed, so a retried activity
 * finds what an earlier attempt committed instead of writing it twice.
 */

/** Which governed step: a plan step, or an agent's turn or tool call inside one. */
export interface ItemKey {
  stepIndex: number;
  turn?: number | null;
  callIndex?: number | null;
}

type Keyed = typeof traceSteps | typeof stepOutputs;

function sameItem(table: Keyed, runId: string, item: ItemKey): SQL {
  const turn = item.turn ?? null;
  const callIndex = item.callIndex ?? null;
  return and(
    eq(table.runId, runId),
    eq(table.stepIndex, item.stepIndex),
    turn === null ? isNull(table.turn) : eq(table.turn, turn),
    callIndex === null ? isNull(table.callIndex) : eq(table.callIndex, callIndex),
  )!;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The reference the workflow keeps for `content`, once stored. */
export function describeOutput(content: string): { sha256: string; bytes: number } {
  return { sha256: sha256Hex(content), bytes: Buffer.byteLength(content, 'utf8') };
}

export interface OutputToStore {
  runId: string;
  tenantId: string;
  item: ItemKey;
  kind: OutputKind;
  contentType: OutputContentType;
  content: string;
}

/** Stores the item's output once; a second attempt gets the first one's reference. */
export async function storeOutput(tx: DbOrTx, output: OutputToStore): Promise<OutputRef> {
  const { sha256, bytes } = describeOutput(output.content);
  const [inserted] = await tx
    .insert(stepOutputs)
    .values({
      runId: output.runId,
      tenantId: output.tenantId,
      stepIndex: output.item.stepIndex,
      turn: output.item.turn ?? null,
      callIndex: output.item.callIndex ?? null,
      kind: output.kind,
      contentType: output.contentType,
      content: output.content,
      sha256,
      bytes,
    })
    .onConflictDoNothing()
    .returning({ id: stepOutputs.id, sha256: stepOutputs.sha256, bytes: stepOutputs.bytes, contentType: stepOutputs.contentType });
  if (inserted) return inserted;
  const [existing] = await tx
    .select({ id: stepOutputs.id, sha256: stepOutputs.sha256, bytes: stepOutputs.bytes, contentType: stepOutputs.contentType })
    .from(stepOutputs)
    .where(sameItem(stepOutputs, output.runId, output.item));
  return existing!;
}

export type StoredOutput = typeof stepOutputs.$inferSelect;

/** The item's stored output, or undefined. */
export async function outputOf(db: DbOrTx, runId: string, item: ItemKey): Promise<StoredOutput | undefined> {
  const [row] = await db.select().from(stepOutputs).where(sameItem(stepOutputs, runId, item));
  return row;
}

/** The final outputs of these plan steps (what references name), by step index. */
export async function planStepOutputs(db: DbOrTx, runId: string, stepIndexes: readonly number[]): Promise<Map<number, StoredOutput>> {
  if (stepIndexes.length === 0) return new Map();
  const rows = await db
    .select()
    .from(stepOutputs)
    .where(and(eq(stepOutputs.runId, runId), inArray(stepOutputs.stepIndex, [...stepIndexes]), isNull(stepOutputs.turn)));
  return new Map(rows.map((r) => [r.stepIndex, r]));
}

/** An agent step's turns and tool results before `beforeTurn`, in the order the model saw them. */
export async function agentTranscript(db: DbOrTx, runId: string, stepIndex: number, beforeTurn: number): Promise<StoredOutput[]> {
  return db
    .select()
    .from(stepOutputs)
    .where(and(eq(stepOutputs.runId, runId), eq(stepOutputs.stepIndex, stepIndex), lt(stepOutputs.turn, beforeTurn)))
    .orderBy(asc(stepOutputs.turn), sql`${stepOutputs.callIndex} asc nulls first`);
}

export type TraceRow = typeof traceSteps.$inferSelect;
export type TraceRowInput = Omit<typeof traceSteps.$inferInsert, 'id' | 'createdAt' | 'runId' | 'stepIndex' | 'turn' | 'callIndex'>;

/** The item's trace row, or undefined. */
export async function traceRowOf(db: DbOrTx, runId: string, item: ItemKey): Promise<TraceRow | undefined> {
  const [row] = await db.select().from(traceSteps).where(sameItem(traceSteps, runId, item));
  return row;
}

/** The item's trace row with its stored output, in one read (a retried activity's first question). */
export async function recordedItem(db: DbOrTx, runId: string, item: ItemKey): Promise<{ row: TraceRow; output: StoredOutput | null } | undefined> {
  const [found] = await db
    .select({ row: traceSteps, output: stepOutputs })
    .from(traceSteps)
    .leftJoin(stepOutputs, eq(stepOutputs.id, traceSteps.outputId))
    .where(sameItem(traceSteps, runId, item));
  return found;
}

/** Inserts the item's trace row once; true when this call inserted it (only then do the run's totals move). */
export async function insertTraceRow(tx: DbOrTx, runId: string, item: ItemKey, row: TraceRowInput): Promise<boolean> {
  const inserted = await tx
    .insert(traceSteps)
    .values({ ...row, runId, stepIndex: item.stepIndex, turn: item.turn ?? null, callIndex: item.callIndex ?? null })
    .onConflictDoNothing()
    .returning({ id: traceSteps.id });
  return inserted.length > 0;
}

/**
 * Completes a row written before its work was sent (a tool call's `started` row); true when this
 * call completed it. A row already completed is left as it is.
 */
export async function completeTraceRow(tx: DbOrTx, runId: string, item: ItemKey, row: Partial<TraceRowInput>): Promise<boolean> {
  const updated = await tx
    .update(traceSteps)
    .set(row)
    .where(and(sameItem(traceSteps, runId, item), eq(traceSteps.status, 'started')))
    .returning({ id: traceSteps.id });
  return updated.length > 0;
}

export { addProgress as addRunProgress, type ProgressDelta } from './runs';

/**
 * Past the policy's warning point the run is flagged HIGH risk and `threshold.exceeded` recorded,
 * once per run; true when this call flagged it.
 */
export async function flagThresholdCrossed(
  tx: DbOrTx,
  run: { runId: string; tenantId: string },
  spent: { costUsd: number; warningAtUsd: number | null | undefined; stepIndex: number },
): Promise<boolean> {
  if (spent.warningAtUsd == null || spent.costUsd < spent.warningAtUsd) return false;
  const flagged = await flagHighRisk(tx, run.runId);
  const event: OutboundEvent = {
    topic: 'threshold.exceeded',
    dedupeKey: `${run.runId}:threshold.exceeded`,
    payload: { costUsd: spent.costUsd, warningAtUsd: spent.warningAtUsd, stepIndex: spent.stepIndex, riskLevel: 'HIGH' },
  };
  await writeEvents(tx, run, [event]);
  return flagged;
}
