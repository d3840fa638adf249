import type { ToolCallRecord, UnrunToolCall } from '../core/contracts';
import { recordToolCallResolution, recordedToolCall } from '../db/tool-calls';
import type { ActivityDeps } from './deps';

export function createToolCallActivities({ db, metrics }: ActivityDeps) {
  /**
   * Resolves calls the governor did not let run, in one transaction: each one's expectation is
   * acked, its message stored as its output (the model reads it next turn), its trace row written.
   */
  async function resolveToolCalls(input: { runId: string; tenantId: string; calls: UnrunToolCall[] }): Promise<ToolCallRecord[]> {
    const records = await db.transaction(async (tx) => {
      const done: ToolCallRecord[] = [];
      for (const { stepIndex, turn, callIndex, ...call } of input.calls) {
        const record = await recordToolCallResolution(tx, {
          runId: input.runId,
          tenantId: input.tenantId,
          item: { stepIndex, turn, callIndex },
          ...call,
          costUsd: 0,
          durationMs: 0,
          warningAtUsd: null,
        });
        // Resolved before (a retry, or the call's own activity got there first): its record stands.
        const standing = record ?? (await recordedToolCall(tx, input.runId, { stepIndex, turn, callIndex }));
        if (standing) done.push(standing);
      }
      return done;
    });
    for (const call of input.calls) metrics.domainWrites.inc({ domain: 'tools', action: 'tool_call', result: call.resolution });
    return records;
  }

  return { resolveToolCalls };
}
