/** USD per 1,000 tokens. Unknown models fall back to `default`. */
export interface ModelPrice {
  inputPer1k: number;
  outputPer1k: number;
}

export const PRICE_TABLE: Readonly<Record<string, ModelPrice>> = {
  'sim-1': { inputPer1k: 0.002, outputPer1k: 0.006 },
  'gpt-4o-mini': { inputPer1k: 0.00015, outputPer1k: 0.0006 },
  'gpt-4o': { inputPer1k: 0.0025, outputPer1k: 0.01 },
  default: { inputPer1k: 0.001, outputPer1k: 0.002 },
};

export type PriceTable = Readonly<Record<string, ModelPrice>>;

export function priceFor(model: string, table: PriceTable = PRICE_TABLE): ModelPrice {
  return table[model] ?? table.default ?? PRICE_TABLE.default!;
}

/** Cost rounded to micro-dollars so sums stay exact enough to compare against a budget. */
export function costUsd(model: string, tokensIn: number, tokensOut: number, table: PriceTable = PRICE_TABLE): number {
  const price = priceFor(model, table);
  const raw = (tokensIn * price.inputPer1k + tokensOut * price.outputPer1k) / 1000;
  return Math.round(raw * 1e6) / 1e6;
}

export function addUsd(a: number, b: number): number {
  return Math.round((a + b) * 1e6) / 1e6;
}
