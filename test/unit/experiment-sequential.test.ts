/**
 * The sequential method under an A/A experiment: both arms draw from the same distribution, the
 * results are read every 100 observations per arm up to 5,000 (50 looks), and a "win" is
 * declared at the first look whose always-valid mSPRT p-value is below alpha. The share of
 * experiments with a false win must stay at most alpha (plus a binomial tolerance, below). The
 * same simulation with the fixed-horizon test read at every look must inflate it: that shows the
 * simulation can see the problem the sequential method exists to solve. Seeded: the same numbers
 * on every run.
 */
import { describe, expect, it } from 'vitest';
import { msprt, tauSquaredFor } from '../../domain/stats/sequential.js';
import { twoSidedNormalP } from '../../domain/stats/distributions.js';

const ALPHA = 0.05;
const SIMULATIONS = 400;
const LOOK_EVERY = 100;
const MAX_PER_ARM = 5000;
/**
 * Tolerance: the observed rate of SIMULATIONS Bernoulli(α) trials has a standard deviation of
 * √(α(1−α)/SIMULATIONS) ≈ 0.011; three of them above α would be exceeded by chance with
 * probability ≈ 0.1% even if the method's true rate were exactly α (mSPRT's is below it).
 */
const TOLERANCE = 3 * Math.sqrt((ALPHA * (1 - ALPHA)) / SIMULATIONS);

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normals by Box–Muller. */
function normals(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

interface Arm { n: number; sum: number; sq: number }
const add = (arm: Arm, x: number) => { arm.n += 1; arm.sum += x; arm.sq += x * x; };
const variance = (a: Arm) => (a.sq - (a.sum * a.sum) / a.n) / (a.n - 1);

/** Runs the A/A simulation; returns the false-positive rates of mSPRT and of peeking at the fixed-horizon z-test. */
function simulate(draw: () => number): { sequential: number; peeking: number } {
  let sequentialWins = 0;
  let peekingWins = 0;
  for (let s = 0; s < SIMULATIONS; s++) {
    const c: Arm = { n: 0, sum: 0, sq: 0 };
    const t: Arm = { n: 0, sum: 0, sq: 0 };
    let seqWon = false;
    let peekWon = false;
    while (c.n < MAX_PER_ARM && !(seqWon && peekWon)) {
      for (let i = 0; i < LOOK_EVERY; i++) {
        add(c, draw());
        add(t, draw());
      }
      const vc = variance(c);
      const vt = variance(t);
      const v = vc / c.n + vt / t.n;
      const diff = t.sum / t.n - c.sum / c.n;
      const r = msprt(diff, v, tauSquaredFor(vc, vt), ALPHA);
      if (r !== null && r.pValue < ALPHA) seqWon = true;
      if (v > 0 && twoSidedNormalP(diff / Math.sqrt(v)) < ALPHA) peekWon = true;
    }
    if (seqWon) sequentialWins += 1;
    if (peekWon) peekingWins += 1;
  }
  return { sequential: sequentialWins / SIMULATIONS, peeking: peekingWins / SIMULATIONS };
}

describe('mSPRT under A/A with 50 looks', () => {
  it('keeps the false-positive rate at most alpha for a mean (normal data)', () => {
    const r = simulate(normals(prng(20261201)));
    expect(r.sequential).toBeLessThanOrEqual(ALPHA + TOLERANCE);
    expect(r.peeking).toBeGreaterThan(2 * ALPHA);
  });

  it('keeps the false-positive rate at most alpha for a rate (Bernoulli 0.1 data)', () => {
    const rand = prng(415);
    const r = simulate(() => (rand() < 0.1 ? 1 : 0));
    expect(r.sequential).toBeLessThanOrEqual(ALPHA + TOLERANCE);
    expect(r.peeking).toBeGreaterThan(2 * ALPHA);
  });
});
