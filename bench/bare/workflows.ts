import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { PlanStep } from '../../core/plan';
import { skills } from '../../workflows/activity-proxies';
import type { BareAgentActivities, BareMessage } from './agent-activities';

/**
 * The baseline the governed run is measured against: the same plan's skill activities through the
 * same proxy (same timeouts and retries), one after another, and nothing around them — no phases,
 * writes, policy or audit.
 */
export async function bareRunWorkflow(input: { runId: string; plan: PlanStep[] }): Promise<number> {
  let costUsd = 0;
  for (const [stepIndex, step] of input.plan.entries()) {
    costUsd += (await skills.executeStep({ runId: input.runId, stepIndex, step })).costUsd;
  }
  return costUsd;
}

/** As the `skills` proxy the agent loop's turns and calls go through: the same timeouts and retries. */
const agent = proxyActivities<BareAgentActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 3 },
});

export interface BareAgentInput {
  instructions: string;
  /** The tool patterns offered to the model, as a policy's `tools.allow`. */
  allow: string[];
  maxTurns: number;
  maxTokens: number;
}

/**
 * The agent bench's baseline (bench/agent.ts): a bare Temporal loop of the same work as a governed
 * agent step — a model turn through the same `complete()` with the same tools offered, then each
 * tool call it asks for through the same `ToolServers` — with the conversation held in the
 * workflow and handed to each turn, and nothing else: no Postgres, no policy, no records, no
 * continue-as-new.
 */
export async function bareAgentWorkflow(input: BareAgentInput): Promise<{ answer: string; turns: number; toolCalls: number }> {
  const messages: BareMessage[] = [{ role: 'system', content: input.instructions }];
  let toolCalls = 0;
  for (let turn = 0; turn < input.maxTurns; turn += 1) {
    const reply = await agent.bareModelTurn({ messages, allow: input.allow, maxTokens: input.maxTokens });
    messages.push(reply);
    if (!reply.tool_calls?.length) return { answer: reply.content ?? '', turns: turn + 1, toolCalls };
    for (const call of reply.tool_calls) {
      const content = await agent.bareToolCall({ functionName: call.function.name, arguments: call.function.arguments });
      toolCalls += 1;
      messages.push({ role: 'tool', tool_call_id: call.id, content });
    }
  }
  throw ApplicationFailure.nonRetryable(`the bare agent used its ${input.maxTurns} turns without an answer`, 'AGENT_TURNS_EXHAUSTED');
}
