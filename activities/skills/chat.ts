import { ApplicationFailure } from '@temporalio/common';
import type { LlmChatInput } from '../../core/plan';
import { costUsd } from '../../core/pricing';
import type { LlmConfig } from '../deps';

interface ChatCompletionResponse {
  model?: string;
  choices?: { message?: { content?: string | null } }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number };
}

/**
 * One call to an OpenAI-compatible `/chat/completions` endpoint. Client errors (4xx other than 429)
 * cannot succeed on retry and fail the step at once; everything else is left to the retry policy.
 */
export async function chatCompletion(
  config: LlmConfig,
  input: LlmChatInput,
  signal?: AbortSignal,
): Promise<{ model: string; tokensIn: number; tokensOut: number; costUsd: number; text: string }> {
  const model = input.model ?? config.model;
  const url = `${config.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  const timeout = AbortSignal.timeout(config.timeoutMs);
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : {}),
    },
    body: JSON.stringify({
      model,
      messages: input.messages,
      ...(input.maxTokens !== undefined ? { max_tokens: input.maxTokens } : {}),
      ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
    }),
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  });
  if (!response.ok) {
    const detail = (await response.text().catch(() => '')).slice(0, 500);
    const message = `LLM endpoint answered ${response.status}: ${detail}`;
    if (response.status >= 400 && response.status < 500 && response.status !== 429) {
      throw ApplicationFailure.nonRetryable(message, 'LlmClientError');
    }
    throw ApplicationFailure.retryable(message, 'LlmServerError');
  }
  const body = (await response.json()) as ChatCompletionResponse;
  const usage = body.usage;
  if (!usage || typeof usage.prompt_tokens !== 'number' || typeof usage.completion_tokens !== 'number') {
    throw ApplicationFailure.nonRetryable('LLM response carries no token usage; cost cannot be accounted', 'LlmNoUsage');
  }
  const billedModel = body.model ?? model;
  return {
    model: billedModel,
    tokensIn: usage.prompt_tokens,
    tokensOut: usage.completion_tokens,
    costUsd: costUsd(billedModel, usage.prompt_tokens, usage.completion_tokens),
    text: body.choices?.[0]?.message?.content ?? '',
  };
}
