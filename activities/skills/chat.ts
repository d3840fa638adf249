import { ApplicationFailure } from '@temporalio/common';
import OpenAI from 'openai';
import type { LlmChatInput } from '../../core/plan';
import { checkUsage, costAt, pricingOf, type PriceTable, type PricingBasis } from '../../core/pricing';
import type { Redactor } from '../../core/redaction';
import { environmentRedactor } from '../../lib/secrets';
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

const redactors = new Map<string, Redactor>();

/**
 * What provider text is redacted with (`core/redaction.ts`): the secrets a provider or tool server
 * could send back (the worker's environment's, `lib/secrets.ts`) and the key this endpoint is called with.
 */
export function redactorFor(config: LlmConfig): Redactor {
  const key = config.apiKey ?? '';
  let redactor = redactors.get(key);
  if (!redactor) {
    redactor = environmentRedactor([config.apiKey], process.env, 'provider-reachable');
    redactors.set(key, redactor);
  }
  return redactor;
}

/**
 * What the provider said of a failed call: a 4xx other than 408/429 cannot succeed on retry. The
 * message is error text that goes to the activity's failure (Temporal history), the run, its
 * incident, the outbox, logs and webhooks: every configured secret and credential shape is
 * redacted from it first (a provider may echo the key it was sent), then it is cut.
 */
function asActivityFailure(err: unknown, redactor: Redactor): unknown {
  if (err instanceof OpenAI.APIUserAbortError) return err;
  if (err instanceof OpenAI.APIConnectionError) return ApplicationFailure.retryable(`LLM endpoint unreachable: ${redactor.credentials(err.message)}`, 'LlmUnreachable');
  if (err instanceof OpenAI.APIError && err.status !== undefined) {
    const detail = redactor.credentials(JSON.stringify(err.error ?? err.message) ?? '').slice(0, 500);
    const message = `LLM endpoint answered ${err.status}: ${detail}`;
    if (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) return ApplicationFailure.nonRetryable(message, 'LlmClientError');
    return ApplicationFailure.retryable(message, 'LlmServerError');
  }
  // Anything else the client threw keeps its name and retry; its message is redacted all the same.
  if (err instanceof Error) {
    const message = redactor.credentials(err.message);
    if (message !== err.message || redactor.credentials(err.stack ?? '') !== (err.stack ?? '')) return ApplicationFailure.retryable(message, err.name);
  }
  return err;
}

type CompletionRequest = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;

export interface Completion {
  /** The model the provider billed, its credential shapes redacted (it is stored and shown). */
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
  /** How the billed model was priced: `dearest` when the price table does not know it (`core/pricing.ts`). */
  pricing: PricingBasis;
  /** The reply, the worker's configured secrets redacted from its text and tool calls. */
  message: OpenAI.Chat.Completions.ChatCompletionMessage;
  /** How many configured secrets were redacted from the reply (0 but for a provider that leaks one). */
  redactedSecrets: number;
}

/**
 * The reply with the worker's configured secrets replaced: it is the tenant's data, so only those
 * (never an `sk-…` the model wrote as an example); a secret can be there only if it leaked.
 */
function redactReply(message: OpenAI.Chat.Completions.ChatCompletionMessage, redactor: Redactor): { message: OpenAI.Chat.Completions.ChatCompletionMessage; redacted: number } {
  let redacted = 0;
  const clean = <T>(text: T): T => {
    if (typeof text !== 'string') return text;
    const found = redactor.count(text);
    if (found === 0) return text;
    redacted += found;
    return redactor.secrets(text) as T;
  };
  const toolCalls = message.tool_calls?.map((call) =>
    call.type === 'function' ? { ...call, id: clean(call.id), function: { ...call.function, name: clean(call.function.name), arguments: clean(call.function.arguments) } } : call,
  );
  return { message: { ...message, content: clean(message.content), ...(toolCalls ? { tool_calls: toolCalls } : {}) }, redacted };
}

/**
 * One completion. Usage is required and checked (`checkUsage`): a step whose cost is unknown
 * cannot be governed, so missing, negative, fractional or absurd counts fail it with
 * `LLM_USAGE_INVALID`, never retried (the provider billed the call; a retry would be billed again).
 * A billed model the price table does not know is priced at the dearest known rate.
 */
export async function complete(config: LlmConfig, request: CompletionRequest, options: { signal?: AbortSignal; prices?: PriceTable } = {}): Promise<Completion> {
  const redactor = redactorFor(config);
  let response: OpenAI.Chat.Completions.ChatCompletion;
  try {
    response = await clientFor(config).chat.completions.create(request, { signal: options.signal });
  } catch (err) {
    throw asActivityFailure(err, redactor);
  }
  const usage = checkUsage(response.usage);
  if (!usage.ok) {
    throw ApplicationFailure.nonRetryable(`LLM ${usage.problem}; the call's cost cannot be accounted, so the step fails without a retry`, 'LLM_USAGE_INVALID');
  }
  const choice = response.choices?.[0]?.message;
  if (!choice) throw ApplicationFailure.nonRetryable('LLM response carries no message', 'LlmNoMessage');
  const billed = typeof response.model === 'string' && response.model !== '' ? response.model : request.model;
  const pricing = pricingOf(billed, options.prices, request.model);
  const { message, redacted } = redactReply(choice, redactor);
  return {
    model: redactor.credentials(billed),
    tokensIn: usage.tokensIn,
    tokensOut: usage.tokensOut,
    costUsd: costAt(pricing.price, usage.tokensIn, usage.tokensOut),
    pricing: pricing.basis,
    message,
    redactedSecrets: redacted,
  };
}

/** What an `llm.chat` step's call produced: its usage, how it was priced, the reply's text. */
export interface ChatResult {
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
  pricing: PricingBasis;
  redactedSecrets: number;
  text: string;
}

/** An `llm.chat` step: its messages in, the reply's text out. */
export async function chatCompletion(config: LlmConfig, input: LlmChatInput, signal?: AbortSignal): Promise<ChatResult> {
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
  const { model, tokensIn, tokensOut, costUsd, pricing, redactedSecrets } = completion;
  return { model, tokensIn, tokensOut, costUsd, pricing, redactedSecrets, text: completion.message.content ?? '' };
}

/**
 * What a step's ack adds about its call: a model priced at the dearest known rate (with the name the
 * provider billed), and how many of the worker's secrets were redacted from the reply.
 */
export function pricingNote(result: { model: string; pricing: ChatResult['pricing']; redactedSecrets: number }): Record<string, unknown> {
  return {
    ...(result.pricing === 'dearest' ? { pricing: 'dearest known rate: the price table does not know the billed model', billedModel: result.model } : {}),
    ...(result.redactedSecrets > 0 ? { redactedSecrets: result.redactedSecrets } : {}),
  };
}
