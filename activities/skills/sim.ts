import { createHash } from 'node:crypto';
import { costUsd } from '../../core/pricing';
import type { SimLlmInput } from '../../core/plan';

export const SIM_MODEL = 'sim-1';

/** Tokens, cost and text derived from the input alone: the same input always reports the same usage. */
export function simulateCompletion(input: SimLlmInput): { tokensIn: number; tokensOut: number; costUsd: number; text: string } {
  const tokensIn = Math.max(1, Math.ceil(input.prompt.length / 4));
  const digest = createHash('sha256').update(input.prompt).digest('hex');
  const tokensOut = input.completionTokens ?? 16 + (parseInt(digest.slice(0, 4), 16) % 112);
  return {
    tokensIn,
    tokensOut,
    costUsd: costUsd(SIM_MODEL, tokensIn, tokensOut),
    text: `sim:${digest.slice(0, 16)}`,
  };
}
