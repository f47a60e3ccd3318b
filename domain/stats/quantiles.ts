/**
 * Percentiles (latency p50/p95) with distribution-free intervals from order statistics: the
 * number of observations below the true p-quantile is Binomial(n, p), so the order statistics at
 * ranks n·p ∓ z·√(n·p·(1−p)) bound it with about 1 − alpha confidence (the large-sample form of
 * the binomial method; Conover, Practical Nonparametric Statistics, 3rd ed., §3.2). The database
 * returns the latencies as a histogram (a few thousand buckets at most), so no row per exposure
 * leaves it.
 */
import { normalQuantile, twoSidedNormalP } from './distributions.js';
import type { Comparison, Interval } from './means.js';

/** The 1-based ranks of the point estimate and the interval's ends, within 1..n. */
export interface QuantileRanks {
  point: number;
  low: number;
  high: number;
}

/** Ranks of the p-quantile's estimate (the nearest-rank one, as `percentile_disc`) and its interval; null when n = 0. */
export function quantileRanks(n: number, p: number, alpha = 0.05): QuantileRanks | null {
  if (n <= 0) return null;
  const z = normalQuantile(1 - alpha / 2);
  const spread = z * Math.sqrt(n * p * (1 - p));
  const clamp = (r: number) => Math.min(n, Math.max(1, r));
  return { point: clamp(Math.ceil(n * p)), low: clamp(Math.floor(n * p - spread)), high: clamp(Math.ceil(n * p + spread)) };
}

/**
 * The value at a 1-based rank of a sample given as a histogram (`[value, count]`, ascending):
 * the value whose cumulative count first reaches the rank; null past the end.
 */
export function valueAtRank(histogram: ReadonlyArray<readonly [number, number]>, rank: number): number | null {
  let seen = 0;
  for (const [value, count] of histogram) {
    seen += count;
    if (seen >= rank) return value;
  }
  return null;
}

/**
 * The difference of two arms' quantiles (treatment − control) with a normal approximation: each
 * arm's standard error is its order-statistic interval's width over 2·z (Price & Bonett, 2001,
 * "Estimating the variance of the sample median"), the two added in quadrature.
 */
export function quantileDifference(control: { estimate: number; interval: Interval }, treatment: { estimate: number; interval: Interval }, alpha = 0.05): Comparison {
  const z = normalQuantile(1 - alpha / 2);
  const sec = (control.interval.high - control.interval.low) / (2 * z);
  const set = (treatment.interval.high - treatment.interval.low) / (2 * z);
  const standardError = Math.sqrt(sec * sec + set * set);
  const difference = treatment.estimate - control.estimate;
  if (standardError === 0) return { difference, standardError, pValue: difference === 0 ? 1 : null, interval: null };
  return { difference, standardError, pValue: twoSidedNormalP(difference / standardError), interval: { low: difference - z * standardError, high: difference + z * standardError } };
}
