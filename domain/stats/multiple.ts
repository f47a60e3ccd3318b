/** Corrections for comparing several variants with one control, and the power check. */
import { normalQuantile } from './distributions.js';

/**
 * Holm's step-down adjustment (statsmodels `multipletests(p, method='holm')`): controls the
 * family-wise error rate over the comparisons with control, uniformly more powerful than
 * Bonferroni. Null p-values stay null and do not count in the family.
 */
export function holmAdjust(pValues: readonly (number | null)[]): (number | null)[] {
  const present = pValues.flatMap((p, i) => (p === null ? [] : [{ p, i }])).sort((a, b) => a.p - b.p);
  const m = present.length;
  const out: (number | null)[] = pValues.map(() => null);
  let running = 0;
  for (const [k, { p, i }] of present.entries()) {
    running = Math.max(running, Math.min(1, (m - k) * p));
    out[i] = running;
  }
  return out;
}

/** Samples per arm below which a comparison is flagged underpowered whatever its variance. */
export const MIN_SAMPLES_PER_ARM = 100;

/** The power the minimum detectable effect is computed for. */
export const TARGET_POWER = 0.8;

/**
 * The smallest true difference a two-sided test at `alpha` detects with {@link TARGET_POWER},
 * given the comparison's standard error: (z₁₋α/₂ + z_power) · SE.
 */
export function minimumDetectableEffect(standardError: number, alpha = 0.05): number {
  return (normalQuantile(1 - alpha / 2) + normalQuantile(TARGET_POWER)) * standardError;
}
