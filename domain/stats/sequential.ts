/**
 * Always-valid sequential inference: the mixture sequential probability ratio test (mSPRT) of
 * Johari, Koomen, Pekelis and Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests"
 * (Operations Research 70(3), 2022; arXiv:1512.04922), for a difference of two means (a rate is a
 * mean of 0/1) under a normal approximation. With V the variance of the observed difference θ̂ and
 * a normal mixing distribution N(0, τ²) over the true difference, the likelihood ratio is
 *
 *   Λ = √(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²)))
 *
 * and the always-valid p-value is min(1, 1/Λ): rejecting when it falls below alpha at any look,
 * however often one looks, keeps the false-positive rate at most alpha. The matching confidence
 * sequence is θ̂ ± √(V (V + τ²) / τ² · (ln((V + τ²)/V) − 2 ln alpha)).
 *
 * τ is set from the data's own scale: τ² = (TAU_SD)² · (s²_control + s²_treatment) / 2, a mixture over
 * effects of about a tenth of a standard deviation (the paper's advice is to centre τ on the
 * effects one expects; 0.1 SD is a typical product change).
 */
import type { Interval } from './means.js';

/** The mixing scale, in standard deviations of one observation. */
export const TAU_SD = 0.1;

export interface SequentialResult {
  method: 'msprt';
  /** The mixing variance used. */
  tauSquared: number;
  likelihoodRatio: number;
  /** The always-valid p-value at this look. */
  pValue: number;
  /** The always-valid (1 − alpha) confidence sequence's interval at this look. */
  interval: Interval;
}

/**
 * mSPRT at one look, from the observed difference and its variance V = s²_c/n_c + s²_t/n_t;
 * `tauSquared` as above. Null when V or τ² is not positive.
 */
export function msprt(difference: number, variance: number, tauSquared: number, alpha = 0.05): SequentialResult | null {
  if (!(variance > 0) || !(tauSquared > 0) || !Number.isFinite(difference)) return null;
  const sum = variance + tauSquared;
  const logLr = 0.5 * Math.log(variance / sum) + (difference * difference * tauSquared) / (2 * variance * sum);
  const likelihoodRatio = Math.exp(logLr);
  const pValue = Math.min(1, Math.exp(-logLr));
  const half = Math.sqrt(((variance * sum) / tauSquared) * (Math.log(sum / variance) - 2 * Math.log(alpha)));
  return { method: 'msprt', tauSquared, likelihoodRatio, pValue, interval: { low: difference - half, high: difference + half } };
}

/** τ² from the two arms' sample variances (see the top of this file). */
export function tauSquaredFor(controlVariance: number, treatmentVariance: number): number {
  return TAU_SD * TAU_SD * ((controlVariance + treatmentVariance) / 2);
}
