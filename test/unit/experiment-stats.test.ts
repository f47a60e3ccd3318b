/**
 * The experiment statistics against reference values from established libraries, on fixed data.
 * Every expected number below was computed with scipy 1.17.1 / statsmodels 0.15.0 (numpy 2.4.6,
 * Python 3, in a throwaway venv); the call that produced it is written beside it.
 */
import { describe, expect, it } from 'vitest';
import { meanInterval, momentsOf, welchTest, type MomentSums } from '../../domain/stats/means.js';
import { twoProportionTest, wilsonInterval } from '../../domain/stats/proportions.js';
import { sampleRatioTest } from '../../domain/stats/srm.js';
import { quantileDifference, quantileRanks, valueAtRank } from '../../domain/stats/quantiles.js';
import { msprt } from '../../domain/stats/sequential.js';
import { holmAdjust, minimumDetectableEffect } from '../../domain/stats/multiple.js';
import { chisquareCdf, normalQuantile, tCdf, tQuantile } from '../../domain/stats/distributions.js';

const A = [12.1, 14.3, 11.8, 15.2, 13.9, 12.7, 14.8, 13.1, 12.4, 16.0];
const B = [14.9, 16.2, 13.8, 17.5, 15.1, 16.8, 14.2, 15.9, 17.1, 13.6, 16.4, 15.5];
const sums = (xs: number[]): MomentSums => ({ n: xs.length, sum: xs.reduce((a, b) => a + b, 0), sumSquares: xs.reduce((a, b) => a + b * b, 0) });

describe('distribution functions (@stdlib)', () => {
  it('match scipy', () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 10); // scipy.stats.norm.ppf(0.975)
    expect(tQuantile(0.975, 7.5)).toBeCloseTo(2.333039626864974, 8); // scipy.stats.t.ppf(0.975, 7.5)
    expect(tCdf(-2.1, 13.7)).toBeCloseTo(0.027376888426766652, 10); // scipy.stats.t.cdf(-2.1, 13.7)
    expect(1 - chisquareCdf(7.3, 2)).toBeCloseTo(0.02599112877875535, 10); // scipy.stats.chi2.sf(7.3, 2)
  });
});

describe("Welch's t-test from sufficient statistics", () => {
  it('matches scipy.stats.ttest_ind(B, A, equal_var=False)', () => {
    const r = welchTest(momentsOf(sums(A)), momentsOf(sums(B)));
    expect(r.t).toBeCloseTo(3.3377841001567368, 8); // .statistic
    expect(r.pValue).toBeCloseTo(0.0035676931323123905, 9); // .pvalue
    expect(r.df).toBeCloseTo(18.44619330730955, 8); // .df
    expect(r.interval?.low).toBeCloseTo(0.7259629846766269, 8); // .confidence_interval(0.95).low
    expect(r.interval?.high).toBeCloseTo(3.1807036819900394, 8); // .confidence_interval(0.95).high
  });

  it("one arm's t interval matches scipy.stats.t.interval(0.95, 9, loc=mean(A), scale=sem(A))", () => {
    const ci = meanInterval(momentsOf(sums(A)));
    expect(ci?.low).toBeCloseTo(12.609351722950562, 8);
    expect(ci?.high).toBeCloseTo(14.65064827704944, 8);
  });

  it('gives no p-value below two observations per arm', () => {
    expect(welchTest(momentsOf({ n: 1, sum: 3, sumSquares: 9 }), momentsOf(sums(B))).pValue).toBeNull();
  });
});

describe('rates', () => {
  it("Wilson intervals match statsmodels proportion_confint(k, n, alpha=0.05, method='wilson')", () => {
    const a = wilsonInterval(37, 120);
    expect(a?.low).toBeCloseTo(0.23272736988916298, 10);
    expect(a?.high).toBeCloseTo(0.39582997723800684, 10);
    const zero = wilsonInterval(0, 50);
    expect(zero?.low).toBeCloseTo(0, 12);
    expect(zero?.high).toBeCloseTo(0.07134759913335874, 10);
  });

  it('the two-proportion test matches statsmodels proportions_ztest([52, 37], [400, 410]) and its Wald interval', () => {
    const r = twoProportionTest({ successes: 37, n: 410 }, { successes: 52, n: 400 });
    expect(r.z).toBeCloseTo(1.8088624586902025, 9);
    expect(r.pValue).toBeCloseTo(0.07047237396973417, 9);
    // confint_proportions_2indep(52, 400, 37, 410, method='wald', compare='diff')
    expect(r.interval?.low).toBeCloseTo(-0.0033182640651072126, 9);
    expect(r.interval?.high).toBeCloseTo(0.08283045918705845, 9);
  });
});

describe('sample ratio mismatch', () => {
  it('matches scipy.stats.chisquare([5230, 4770], [5000, 5000])', () => {
    const r = sampleRatioTest([5230, 4770], [1, 1]);
    expect(r?.statistic).toBeCloseTo(21.16, 9);
    expect(r?.pValue).toBeCloseTo(4.224909405005696e-6, 9);
    expect(r?.df).toBe(1);
  });

  it('matches scipy.stats.chisquare([1010, 1980, 1010], [1000, 2000, 1000]) with weights 1:2:1', () => {
    const r = sampleRatioTest([1010, 1980, 1010], [1, 2, 1]);
    expect(r?.statistic).toBeCloseTo(0.4, 9);
    expect(r?.pValue).toBeCloseTo(0.8187307530779818, 9);
  });
});

describe('percentile intervals', () => {
  // scipy.stats.quantile_test(x, q=np.quantile(x, p), p=p).confidence_interval(0.95) on x = 1..1000
  // (the exact binomial method) gives ranks (469, 532) for p = 0.5 and (936, 964) for p = 0.95;
  // the large-sample ranks agree within one.
  it.each([[0.5, 469, 532], [0.95, 936, 964]] as const)('p = %s: ranks within one of scipy’s exact ones', (p, low, high) => {
    const r = quantileRanks(1000, p);
    expect(Math.abs((r?.low ?? 0) - low)).toBeLessThanOrEqual(1);
    expect(Math.abs((r?.high ?? 0) - high)).toBeLessThanOrEqual(1);
    expect(r?.point).toBe(Math.ceil(1000 * p));
  });

  it('reads the value at a rank from a histogram as from the sorted sample', () => {
    const sample = [5, 1, 3, 3, 9, 1, 1, 7, 3, 3];
    const sorted = [...sample].sort((a, b) => a - b);
    const histogram = [...new Set(sorted)].map((v) => [v, sorted.filter((x) => x === v).length] as [number, number]);
    for (let rank = 1; rank <= sample.length; rank++) expect(valueAtRank(histogram, rank)).toBe(sorted[rank - 1]);
    expect(valueAtRank(histogram, 11)).toBeNull();
  });

  it('clamps ranks into 1..n for small samples', () => {
    expect(quantileRanks(3, 0.95)).toEqual({ point: 3, low: 2, high: 3 });
    expect(quantileRanks(0, 0.5)).toBeNull();
  });

  it('a difference of equal medians has p = 1 and an interval around 0', () => {
    const d = quantileDifference({ estimate: 100, interval: { low: 90, high: 110 } }, { estimate: 100, interval: { low: 90, high: 110 } });
    expect(d.pValue).toBeCloseTo(1, 12);
    expect(d.interval?.low).toBeCloseTo(-d.interval!.high, 9);
  });
});

describe('mSPRT', () => {
  // The closed form against the mixture likelihood ratio integrated numerically:
  // scipy.integrate.quad(lambda th: norm.pdf(x, th, sqrt(V)) * norm.pdf(th, 0, sqrt(tau2)), ...) / norm.pdf(x, 0, sqrt(V))
  it.each([[0.3, 0.01, 0.04, 16.367228014507624], [0.05, 0.002, 0.0005, 1.0135187878624619]] as const)(
    'Λ(θ̂=%s, V=%s, τ²=%s) matches scipy.integrate.quad', (x, v, tau2, expected) => {
      const r = msprt(x, v, tau2);
      expect(r?.likelihoodRatio).toBeCloseTo(expected, 8);
      expect(r?.pValue).toBeCloseTo(Math.min(1, 1 / expected), 8);
    });

  it('its confidence sequence excludes 0 exactly when the always-valid p-value is below alpha', () => {
    for (const x of [0, 0.05, 0.1, 0.2, 0.3, 0.5]) {
      const r = msprt(x, 0.01, 0.04)!;
      expect(r.interval.low > 0).toBe(r.pValue < 0.05);
    }
  });
});

describe('multiple comparisons and power', () => {
  it("Holm matches statsmodels multipletests(p, method='holm')", () => {
    expect(holmAdjust([0.01, 0.04, 0.03]).map((p) => p!.toFixed(10))).toEqual(['0.0300000000', '0.0600000000', '0.0600000000']);
    expect(holmAdjust([0.2, 0.001, 0.5, 0.04]).map((p) => p!.toFixed(10))).toEqual(['0.4000000000', '0.0040000000', '0.5000000000', '0.1200000000']);
    expect(holmAdjust([null, 0.02])).toEqual([null, 0.02]);
  });

  it('the minimum detectable effect at 80% power is (z0.975 + z0.8)·SE', () => {
    // scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8) = 2.801585218...
    expect(minimumDetectableEffect(1)).toBeCloseTo(1.959963984540054 + 0.8416212335729143, 10);
  });
});
