import type { ToolCallRecord, ToolCallKey } from '../core/contracts';
import { toolCallAction } from '../core/audit';
import { TOOL_CALL_SKILL } from '../core/costs';
import { toSafeText } from '../core/text-safety';
import type { ToolCallResolution } from '../core/tool-calls';
import { recordAck } from './acks';
import type { DbOrTx } from './client';
import { addToCostRollup } from './costs';
import { insertIncidentOnce } from './incidents';
import { writeEvents } from './outbox';
import { addRunProgress, completeTraceRow, flagThresholdCrossed, insertTraceRow, outputOf, storeOutput, traceRowOf } from './steps';
import { contentTypeOf } from './content-type';

const PREVIEW_CHARS = 200;

export interface ToolCallResolutionInput {
  runId: string;
  tenantId: string;
  item: ToolCallKey;
  /** `server.tool`, or the name the model used when no server offers it. */
  tool: string | null;
  argsSha256: string;
  resolution: ToolCallResolution;
  /** What the model is told: the tool's result, or why the call did not run. */
  message: string;
  costUsd: number;
  durationMs: number;
  warningAtUsd: number | null;
}

/**
 * Records one tool call's resolution in the caller's transaction: what the model is told (stored
 * as the call's output), its trace row (completing the `started` one when the call was sent), the
 * run's totals and the ack that resolves the call's expectation. An `outcome_unknown` also opens an
 * incident. Null when the call was already resolved (a retry): nothing is written twice.
 */
export async function recordToolCallResolution(tx: DbOrTx, call: ToolCallResolutionInput): Promise<ToolCallRecord | null> {
  const { runId, tenantId, item } = call;
  const output = await storeOutput(tx, { runId, tenantId, item, kind: 'tool_call', contentType: contentTypeOf(call.message), content: call.message });
  const row = {
    kind: 'tool_call' as const,
    skill: 'tool',
    model: '',
    tool: call.tool,
    tokensIn: 0,
    tokensOut: 0,
    costUsd: call.costUsd,
    durationMs: call.durationMs,
    status: call.resolution,
    outputPreview: toSafeText(call.message, PREVIEW_CHARS) ?? '',
    outputId: output.id,
    argsSha256: call.argsSha256,
  };
  const recorded = (await completeTraceRow(tx, runId, item, row)) || (await insertTraceRow(tx, runId, item, row));
  if (!recorded) return null;
  const totals = await addRunProgress(tx, runId, { costUsd: call.costUsd, tokens: 0, toolCalls: 1 });
  await addToCostRollup(tx, totals, { model: '', skill: TOOL_CALL_SKILL, tool: call.tool, costUsd: call.costUsd, tokensIn: 0, tokensOut: 0 });
  await recordAck(tx, {
    runId,
    action: toolCallAction(item.stepIndex, item.turn, item.callIndex),
    status: 'OK',
    resultId: output.id,
    metadata: { tool: call.tool, resolution: call.resolution, argsSha256: call.argsSha256 },
  });
  if (call.resolution === 'outcome_unknown') {
    const dedupeKey = `tool-call:${item.stepIndex}.${item.turn}.${item.callIndex}`;
    await insertIncidentOnce(tx, { runId, tenantId, dedupeKey, kind: 'tool', severity: 'HIGH', errorCode: 'OUTCOME_UNKNOWN', message: call.message });
    await writeEvents(tx, { runId, tenantId }, [
      { topic: 'incident.created', dedupeKey: `${runId}:${dedupeKey}`, payload: { code: 'OUTCOME_UNKNOWN', severity: 'HIGH', tool: call.tool } },
    ]);
  }
  const thresholdCrossed = await flagThresholdCrossed(tx, { runId, tenantId }, { costUsd: totals.costUsd, warningAtUsd: call.warningAtUsd, stepIndex: item.stepIndex });
  return { resolution: call.resolution, output, costUsd: call.costUsd, durationMs: call.durationMs, thresholdCrossed };
}

/** The call's resolution as an earlier attempt recorded it, or null while it is unresolved (none, or `started`). */
export async function recordedToolCall(db: DbOrTx, runId: string, item: ToolCallKey): Promise<ToolCallRecord | null> {
  const row = await traceRowOf(db, runId, item);
  if (!row || row.status === 'started') return null;
  const output = await outputOf(db, runId, item);
  if (!output) return null;
  return {
    resolution: row.status as ToolCallResolution,
    output: { id: output.id, sha256: output.sha256, bytes: output.bytes, contentType: output.contentType },
    costUsd: row.costUsd,
    durationMs: row.durationMs,
    thresholdCrossed: false,
  };
}
