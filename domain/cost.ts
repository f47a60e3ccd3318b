/** Cost arithmetic in integer micro-USD. Prices are micro-USD per million tokens. */

export interface TokenPrice {
  inputMicrosPerMtok: number;
  outputMicrosPerMtok: number;
}

/**
 * Cost of a call, rounded up to the next whole micro-USD (never bills a fraction as zero).
 * Computed in BigInt so large token counts times large prices cannot lose precision.
 */
export function costMicros(price: TokenPrice, inputTokens: number, outputTokens: number): number {
  for (const [name, v] of Object.entries({ inputTokens, outputTokens, ...price })) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  }
  const numerator =
    BigInt(inputTokens) * BigInt(price.inputMicrosPerMtok) + BigInt(outputTokens) * BigInt(price.outputMicrosPerMtok);
  const micros = (numerator + 999_999n) / 1_000_000n;
  return Number(micros);
}

