import { ApplicationFailure } from '@temporalio/common';
import OpenAI from 'openai';
import type { LlmChatInput } from '../../core/plan';
import { costUsd, type PriceTable } from '../../core/pricing';
import type { LlmConfig } from '../deps';

/**
 * The OpenAI-compatible endpoint, through the official client: request shapes, tool calls, usage
 * and error classes as the provider defines them. The client never retries on its own (Temporal's
 * retry policy does, visibly in the history) and times out as configured.
 */
const clients = new Map<string, OpenAI>();

function clientFor(config: LlmConfig): OpenAI {
  const key = `${config.baseUrl}\n${config.apiKey ?? ''}\n${config.timeoutMs}`;
  let client = clients.get(key);
  if (!client) {
    // A keyless local server still needs a string: the client refuses to start without one.
    client = new OpenAI({ baseURL: config.baseUrl, apiKey: config.apiKey ?? 'unset', maxRetries: 0, timeout: config.timeoutMs });
    clients.set(key, client);
  }
  return client;
}

/** What the provider said of a failed call: a 4xx other than 408/429 cannot succeed on retry. */
function asActivityFailure(err: unknown): unknown {
  if (err instanceof OpenAI.APIUserAbortError) return err;
  if (err instanceof OpenAI.APIConnectionError) return ApplicationFailure.retryable(`LLM endpoint unreachable: ${err.message}`, 'LlmUnreachable');
  if (err instanceof OpenAI.APIError && err.status !== undefined) {
    const detail = JSON.stringify(err.error ?? err.message).slice(0, 500);
    const message = `LLM endpoint answered ${err.status}: ${detail}`;
    if (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) return ApplicationFailure.nonRetryable(message, 'LlmClientError');
    return ApplicationFailure.retryable(message, 'LlmServerError');
  }
  return err;
}

type CompletionRequest = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;

export interface Completion {
  /** The model the provider billed. */
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
  message: OpenAI.Chat.Completions.ChatCompletionMessage;
}

/** One completion; usage is required, since a step whose cost is unknown cannot be governed. */
export async function complete(config: LlmConfig, request: CompletionRequest, options: { signal?: AbortSignal; prices?: PriceTable } = {}): Promise<Completion> {
  let response: OpenAI.Chat.Completions.ChatCompletion;
  try {
    response = await clientFor(config).chat.completions.create(request, { signal: options.signal });
  } catch (err) {
    throw asActivityFailure(err);
  }
  const { usage } = response;
  if (!usage || typeof usage.prompt_tokens !== 'number' || typeof usage.completion_tokens !== 'number') {
    throw ApplicationFailure.nonRetryable('LLM response carries no token usage; cost cannot be accounted', 'LlmNoUsage');
  }
  const message = response.choices?.[0]?.message;
  if (!message) throw ApplicationFailure.nonRetryable('LLM response carries no message', 'LlmNoMessage');
  const model = response.model || request.model;
  return {
    model,
    tokensIn: usage.prompt_tokens,
    tokensOut: usage.completion_tokens,
    costUsd: costUsd(model, usage.prompt_tokens, usage.completion_tokens, options.prices),
    message,
  };
}

/** An `llm.chat` step: its messages in, the reply's text out. */
export async function chatCompletion(
  config: LlmConfig,
  input: LlmChatInput,
  signal?: AbortSignal,
): Promise<{ model: string; tokensIn: number; tokensOut: number; costUsd: number; text: string }> {
  const completion = await complete(
    config,
    {
      model: input.model ?? config.model,
      messages: input.messages,
      ...(input.maxTokens !== undefined ? { max_tokens: input.maxTokens } : {}),
      ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
    },
    { signal },
  );
  return { model: completion.model, tokensIn: completion.tokensIn, tokensOut: completion.tokensOut, costUsd: completion.costUsd, text: completion.message.content ?? '' };
}
