import type { LlmChatInput, PlanStep, SimLlmInput } from './plan';
import { PRICE_TABLE, costUsd, dearestPrice, type PriceTable } from './pricing';

/**
 * What a step may cost at most, known before it runs (budget reservation). Pure: the run workflow
 * predicts each step from the plan it holds, without a round trip.
 */

export const SIM_MODEL = 'sim-1';
/** The simulator's completion length when the input does not set one lies in [16, 16 + 111]. */
export const SIM_DEFAULT_COMPLETION_TOKENS = { min: 16, spread: 112 } as const;

/** The simulator's prompt tokens: one per four characters, at least one. */
export function simPromptTokens(prompt: string): number {
  return Math.max(1, Math.ceil(prompt.length / 4));
}

function simUpperBoundUsd(input: SimLlmInput, prices: PriceTable): number {
  const completion = input.completionTokens ?? SIM_DEFAULT_COMPLETION_TOKENS.min + SIM_DEFAULT_COMPLETION_TOKENS.spread - 1;
  return costUsd(SIM_MODEL, simPromptTokens(input.prompt), completion, prices);
}

/** A byte-level tokenizer makes at most one token per UTF-8 byte; most make far fewer. */
export function utf8Bytes(text: string): number {
  let bytes = 0;
  for (const char of text) {
    const codePoint = char.codePointAt(0)!;
    bytes += codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/** Tokens a chat message's framing adds (role, separators), and the reply's priming: generous on purpose. */
const CHAT_TOKENS_PER_MESSAGE = 8;
const CHAT_REPLY_PRIMING_TOKENS = 8;

/**
 * With `maxTokens` set, a chat completion is bounded: the prompt is at most one token per UTF-8
 * byte, and the provider stops at `maxTokens`.
 */
function chatUpperBoundUsd(input: LlmChatInput & { maxTokens: number }, table: PriceTable, rule: BoundRule): number {
  const promptBytes = input.messages.reduce((n, m) => n + utf8Bytes(m.content), 0);
  const bound = { promptBytes, messages: input.messages.length, maxTokens: input.maxTokens, model: input.model };
  return rule === 'named-or-default' ? legacyChatCompletionBoundUsd(bound, table) : chatCompletionBoundUsd(bound, table);
}

/**
 * Which bound a workflow reserves a chat step with. `dearest` (today's): the dearest known rate.
 * `named-or-default`: the rule before unknown billed models were priced at the dearest rate (the
 * requested model's or `default`'s rate, whichever is dearer; all of them when none is named),
 * for a run whose history decided with it: a different bound could change its decision on replay.
 */
export type BoundRule = 'dearest' | 'named-or-default';

function legacyChatCompletionBoundUsd(input: { promptBytes: number; messages: number; maxTokens: number; model?: string }, table: PriceTable): number {
  const promptTokens = input.promptBytes + input.messages * CHAT_TOKENS_PER_MESSAGE + CHAT_REPLY_PRIMING_TOKENS;
  const fallback = table.default ?? PRICE_TABLE.default!;
  const named = input.model !== undefined && Object.hasOwn(table, input.model) ? table[input.model]! : fallback;
  const prices = input.model === undefined ? Object.values(table) : [named, fallback];
  return roundUpUsd(Math.max(...prices.map((p) => (promptTokens * p.inputPer1k + input.maxTokens * p.outputPer1k) / 1000)));
}

/**
 * The most one chat completion can cost: a prompt of `promptBytes` UTF-8 bytes (message texts, and
 * for an agent its tool calls, results and tool definitions) in `messages` messages, answered with
 * at most `maxTokens`. Used for plan steps and for each model turn of an agent, which the turn's
 * activity bounds from the prompt it is about to send.
 *
 * Priced at the dearest known rate (the highest input and output prices of the table), whatever
 * `model` asks for: the provider may bill the call under a name the table does not know, which
 * `pricingOf` prices at that rate, or under another, dearer model than the one asked for. Either
 * way the call cannot cost more than this.
 */
export function chatCompletionBoundUsd(
  input: { promptBytes: number; messages: number; maxTokens: number; model?: string },
  table: PriceTable = PRICE_TABLE,
): number {
  const promptTokens = input.promptBytes + input.messages * CHAT_TOKENS_PER_MESSAGE + CHAT_REPLY_PRIMING_TOKENS;
  const price = dearestPrice(table);
  return roundUpUsd((promptTokens * price.inputPer1k + input.maxTokens * price.outputPer1k) / 1000);
}

export interface StepCostPrediction {
  usd: number;
  /** `upper-bound`: the step cannot cost more. `average`: the run's mean step so far, a guess. */
  basis: 'upper-bound' | 'average';
}

/**
 * The step's predicted cost: its upper bound when its input gives one, else the run's average step
 * so far; null when neither exists (an unbounded first step), so nothing is reserved. `rule`: see
 * `BoundRule` (a run started before the dearest-rate bound replays with `named-or-default`).
 */
export function predictStepCost(
  step: PlanStep,
  spent: { costUsd: number; stepsCompleted: number },
  prices: PriceTable = PRICE_TABLE,
  rule: BoundRule = 'dearest',
): StepCostPrediction | null {
  if (step.skill === 'sim.llm') return { usd: roundUpUsd(simUpperBoundUsd(step.input, prices)), basis: 'upper-bound' };
  // An agent reserves turn by turn and call by call, each against its own bound.
  if (step.skill === 'agent') return null;
  if (step.input.maxTokens !== undefined) {
    return { usd: roundUpUsd(chatUpperBoundUsd({ ...step.input, maxTokens: step.input.maxTokens }, prices, rule)), basis: 'upper-bound' };
  }
  if (spent.stepsCompleted === 0) return null;
  return { usd: roundUpUsd(spent.costUsd / spent.stepsCompleted), basis: 'average' };
}

/** Costs are stored to the micro-dollar; a bound rounds up so it stays a bound. */
function roundUpUsd(usd: number): number {
  return Math.ceil(usd * 1e6 - 1e-6) / 1e6;
}
