import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type OpenAI from 'openai';
import type { ActivityDeps } from '../../activities/deps';
import { complete } from '../../activities/skills/chat';
import { offeredTools } from '../../core/agent';
import { DEFAULT_TOOL_POLICY } from '../../core/policy';

/** A message of the bare loop's conversation, as the provider's API takes it. */
export type BareMessage =
  | { role: 'system'; content: string }
  | { role: 'assistant'; content: string | null; tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[] }
  | { role: 'tool'; tool_call_id: string; content: string };

/**
 * The bare baseline's activities (bench/bare/workflows.ts `bareAgentWorkflow`): the model call and
 * the tool call a governed agent turn makes, through the same client and registry, and nothing
 * around them (no records read or written, no budget, no argument check).
 */
export function createBareAgentActivities({ llm, tools }: Pick<ActivityDeps, 'llm' | 'tools'>) {
  /** One model turn: the conversation it is given, the tools `allow` names offered as `agentTurn` offers them. */
  async function bareModelTurn(input: { messages: BareMessage[]; allow: string[]; maxTokens: number }): Promise<Extract<BareMessage, { role: 'assistant' }>> {
    const available = tools.tools();
    const offered = new Set(offeredTools({ ...DEFAULT_TOOL_POLICY, allow: input.allow }, undefined, available.map((t) => t.id)));
    const functions: OpenAI.Chat.Completions.ChatCompletionFunctionTool[] = available
      .filter((t) => offered.has(t.id))
      .map((t) => ({ type: 'function', function: { name: t.functionName, description: t.description, parameters: t.inputSchema as Record<string, unknown> } }));
    const completion = await complete(
      llm,
      { model: llm.model, messages: input.messages, max_tokens: input.maxTokens, ...(functions.length ? { tools: functions } : {}) },
      { signal: Context.current().cancellationSignal },
    );
    const calls = (completion.message.tool_calls ?? []).flatMap((c) => (c.type === 'function' ? [{ id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: c.function.arguments } }] : []));
    return { role: 'assistant', content: completion.message.content, ...(calls.length ? { tool_calls: calls } : {}) };
  }

  /** One tool call, by the function name the model used; its text is what the model reads next. */
  async function bareToolCall(input: { functionName: string; arguments: string }): Promise<string> {
    const tool = tools.byFunctionName(input.functionName);
    if (!tool) throw ApplicationFailure.nonRetryable(`no tool is offered as ${input.functionName}`, 'UnknownTool');
    const args = input.arguments.trim() === '' ? {} : (JSON.parse(input.arguments) as Record<string, unknown>);
    const outcome = await tools.call(tool.id, args, { signal: Context.current().cancellationSignal });
    if (outcome.kind === 'refused') throw ApplicationFailure.nonRetryable(`${tool.id} refused: ${outcome.error}`, 'ToolRefused');
    return outcome.structured !== undefined && outcome.text === '' ? JSON.stringify(outcome.structured) : outcome.text;
  }

  return { bareModelTurn, bareToolCall };
}

export type BareAgentActivities = ReturnType<typeof createBareAgentActivities>;
