import { createHash } from 'node:crypto';
import { costUsd } from '../../core/pricing';
import type { SimLlmInput } from '../../core/plan';
import { SIM_DEFAULT_COMPLETION_TOKENS, SIM_MODEL, simPromptTokens } from '../../core/step-cost';

/** Tokens, cost and text derived from the input alone: the same input always reports the same usage. */
export function simulateCompletion(input: SimLlmInput): { tokensIn: number; tokensOut: number; costUsd: number; text: string } {
  const tokensIn = simPromptTokens(input.prompt);
  const digest = createHash('sha256').update(input.prompt).digest('hex');
  const tokensOut = input.completionTokens ?? SIM_DEFAULT_COMPLETION_TOKENS.min + (parseInt(digest.slice(0, 4), 16) % SIM_DEFAULT_COMPLETION_TOKENS.spread);
  const text = `sim:${digest.slice(0, 16)}`;
  return {
    tokensIn,
    tokensOut,
    costUsd: costUsd(SIM_MODEL, tokensIn, tokensOut),
    // ASCII, so as many bytes as characters.
    text: input.outputBytes === undefined ? text : `${text}\n`.repeat(Math.ceil(input.outputBytes / (text.length + 1))).slice(0, input.outputBytes),
  };
}
