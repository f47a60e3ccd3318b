/** Rates: Wilson score intervals for one arm, and the two-proportion z-test between two. */
import { normalQuantile, twoSidedNormalP } from './distributions.js';
import type { Comparison, Interval } from './means.js';

/**
 * Wilson's score interval for `successes` of `n` (statsmodels `proportion_confint(method='wilson')`);
 * null when n = 0.
 */
export function wilsonInterval(successes: number, n: number, alpha = 0.05): Interval | null {
  if (n <= 0) return null;
  const z = normalQuantile(1 - alpha / 2);
  const p = successes / n;
  const z2n = (z * z) / n;
  const centre = (p + z2n / 2) / (1 + z2n);
  const half = (z / (1 + z2n)) * Math.sqrt((p * (1 - p)) / n + z2n / (4 * n));
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

export interface TwoProportionResult extends Comparison {
  z: number | null;
}

/**
 * The two-proportion z-test of `treatment − control`: the statistic with the pooled variance
 * under H0 (statsmodels `proportions_ztest`), the interval with the unpooled (Wald) one
 * (statsmodels `confint_proportions_2indep(method='wald', compare='diff')`).
 */
export function twoProportionTest(
  control: { successes: number; n: number },
  treatment: { successes: number; n: number },
  alpha = 0.05,
): TwoProportionResult {
  if (control.n <= 0 || treatment.n <= 0) return { difference: Number.NaN, standardError: Number.NaN, z: null, pValue: null, interval: null };
  const pc = control.successes / control.n;
  const pt = treatment.successes / treatment.n;
  const difference = pt - pc;
  const pooled = (control.successes + treatment.successes) / (control.n + treatment.n);
  const sePooled = Math.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / treatment.n));
  const standardError = Math.sqrt((pc * (1 - pc)) / control.n + (pt * (1 - pt)) / treatment.n);
  const z = sePooled === 0 ? null : difference / sePooled;
  const pValue = z === null ? (difference === 0 ? 1 : null) : twoSidedNormalP(z);
  const half = normalQuantile(1 - alpha / 2) * standardError;
  return { difference, standardError, z, pValue, interval: { low: difference - half, high: difference + half } };
}
