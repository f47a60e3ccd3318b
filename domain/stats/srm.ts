/** Sample ratio mismatch: Pearson's chi-square goodness of fit of exposures against the variants' weights. */
import { chisquareCdf } from './distributions.js';

export interface SrmResult {
  statistic: number;
  df: number;
  pValue: number;
  /** The expected exposures per variant, from the weights. */
  expected: number[];
}

/**
 * Pearson's chi-square of `observed` counts against the shares `weights` imply (scipy
 * `chisquare(observed, f_exp)`). Null with fewer than two variants or no exposures.
 */
export function sampleRatioTest(observed: readonly number[], weights: readonly number[]): SrmResult | null {
  if (observed.length !== weights.length || observed.length < 2) return null;
  const total = observed.reduce((a, b) => a + b, 0);
  const weightSum = weights.reduce((a, b) => a + b, 0);
  if (total <= 0 || weightSum <= 0) return null;
  const expected = weights.map((w) => (total * w) / weightSum);
  let statistic = 0;
  for (const [i, o] of observed.entries()) {
    const e = expected[i] as number;
    statistic += ((o - e) * (o - e)) / e;
  }
  const df = observed.length - 1;
  return { statistic, df, pValue: 1 - chisquareCdf(statistic, df), expected };
}
