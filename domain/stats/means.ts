/** Means from sufficient statistics: a t interval for one arm and Welch's unequal-variance t-test between two. */
import { tCdf, tQuantile } from './distributions.js';

/** A sample summarised by count, sum and sum of squares (what SQL aggregates return). */
export interface MomentSums {
  n: number;
  sum: number;
  sumSquares: number;
}

export interface Moments {
  n: number;
  mean: number;
  /** The sample variance (n − 1 in the denominator); 0 when n < 2. */
  variance: number;
}

/** Mean and sample variance from sums (clamped at 0 against rounding). */
export function momentsOf(s: MomentSums): Moments {
  if (s.n <= 0) return { n: 0, mean: 0, variance: 0 };
  const mean = s.sum / s.n;
  const variance = s.n < 2 ? 0 : Math.max(0, (s.sumSquares - s.n * mean * mean) / (s.n - 1));
  return { n: s.n, mean, variance };
}

export interface Interval {
  low: number;
  high: number;
}

/** The (1 − alpha) t interval of one mean; null below two observations. */
export function meanInterval(m: Moments, alpha = 0.05): Interval | null {
  if (m.n < 2) return null;
  const half = tQuantile(1 - alpha / 2, m.n - 1) * Math.sqrt(m.variance / m.n);
  return { low: m.mean - half, high: m.mean + half };
}

export interface Comparison {
  /** Treatment minus control. */
  difference: number;
  standardError: number;
  /** Two-sided p-value; null when it cannot be computed (too few observations, no variance). */
  pValue: number | null;
  interval: Interval | null;
}

export interface WelchResult extends Comparison {
  t: number | null;
  /** Welch–Satterthwaite degrees of freedom. */
  df: number | null;
}

/**
 * Welch's t-test of `treatment − control` (scipy's `ttest_ind(..., equal_var=False)`), with the
 * (1 − alpha) interval on the difference from the same t distribution.
 */
export function welchTest(control: Moments, treatment: Moments, alpha = 0.05): WelchResult {
  const difference = treatment.mean - control.mean;
  if (control.n < 2 || treatment.n < 2) return { difference, standardError: Number.NaN, t: null, df: null, pValue: null, interval: null };
  const vc = control.variance / control.n;
  const vt = treatment.variance / treatment.n;
  const se2 = vc + vt;
  const standardError = Math.sqrt(se2);
  if (se2 === 0) return { difference, standardError, t: null, df: null, pValue: difference === 0 ? 1 : null, interval: null };
  const df = (se2 * se2) / ((vc * vc) / (control.n - 1) + (vt * vt) / (treatment.n - 1));
  const t = difference / standardError;
  const pValue = Math.min(1, 2 * tCdf(-Math.abs(t), df));
  const half = tQuantile(1 - alpha / 2, df) * standardError;
  return { difference, standardError, t, df, pValue, interval: { low: difference - half, high: difference + half } };
}
