/**
 * An experiment's results from the sufficient statistics SQL returns (`experimentSums`): per variant, each metric's estimate with its 95% interval and, against control,
 * the difference with its interval, fixed-horizon p-value, Holm-adjusted p-value, always-valid
 * mSPRT p-value and confidence sequence, minimum detectable effect and an underpowered flag; and
 * the sample-ratio check that marks the whole result untrustworthy when exposures do not follow
 * the weights. Methods (docs/experiments.md):
 * - means (tokens, cost per request, scores): t intervals, Welch's t-test;
 * - rates (error rate, boolean feedback): Wilson intervals, the two-proportion z-test;
 * - latency percentiles (and TTFT's, over streamed completions): order-statistic intervals,
 *   difference by a normal approximation;
 * - several treatments: Holm's step-down correction per metric over the comparisons with control;
 * - sequential: mSPRT (Johari et al.), valid however often the results are read;
 * - SRM: Pearson's chi-square of exposures against weights, failed below p = 0.001.
 */
import { meanInterval, momentsOf, welchTest, type Comparison, type Interval, type MomentSums } from './stats/means.js';
import { twoProportionTest, wilsonInterval } from './stats/proportions.js';
import { quantileDifference, quantileRanks, valueAtRank } from './stats/quantiles.js';
import { msprt, tauSquaredFor, TAU_SD } from './stats/sequential.js';
import { holmAdjust, minimumDetectableEffect, MIN_SAMPLES_PER_ARM, TARGET_POWER } from './stats/multiple.js';
import { sampleRatioTest } from './stats/srm.js';

export const ALPHA = 0.05;
/** SRM is flagged below this p-value (strict: a true mismatch is a bug, not noise). */
export const SRM_THRESHOLD = 0.001;
/** The percentiles reported for latency. */
export const LATENCY_PERCENTILES = [0.5, 0.95] as const;
/** A rate comparison needs at least this many successes and failures per arm for its normal approximation. */
export const MIN_EVENTS_PER_ARM = 10;

export interface VariantInput {
  name: string;
  weight: number;
  exposures: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  costMicros: MomentSums;
  promptTokens: MomentSums;
  completionTokens: MomentSums;
  latencyN: number;
  /** Succeeded streamed requests with a TTFT. @default 0 */
  ttftN?: number;
}

export interface FeedbackInput {
  variant: string;
  metric: string;
  kind: 'boolean' | 'score' | 'comment';
  n: number;
  trues: number;
  sum: number;
  sumSquares: number;
}

/**
 * A variant's latency percentiles from its histogram (`[ms, count]`, ascending): for each of
 * {@link LATENCY_PERCENTILES} the estimate and its interval's ends, in that order (empty without data).
 */
export function latencyValues(histogram: ReadonlyArray<readonly [number, number]>): number[] {
  const n = histogram.reduce((a, [, c]) => a + c, 0);
  return LATENCY_PERCENTILES.flatMap((p) => {
    const r = quantileRanks(n, p, ALPHA);
    if (r === null) return [];
    return [r.point, r.low, r.high].map((rank) => valueAtRank(histogram, rank) ?? Number.NaN);
  });
}

type Pair = [number, number];
const pair = (i: Interval | null): Pair | null => (i === null ? null : [i.low, i.high]);

interface ComparisonJson {
  difference: number;
  ci: Pair | null;
  p_value: number | null;
  p_value_adjusted: number | null;
  significant: boolean;
  sequential: { method: 'msprt'; p_value: number; ci: Pair; likelihood_ratio: number } | null;
  mde: number | null;
  underpowered: boolean;
}

interface MetricJson {
  kind: 'mean' | 'rate' | 'percentile' | 'count';
  /** Why `estimate` is null (set only where a metric can be empty for a stated reason: TTFT). */
  reason?: string;
  n: number;
  estimate: number | null;
  ci: Pair | null;
  /** Against control; null on the control itself and for counts. */
  vs_control: ComparisonJson | null;
}

/** One variant's metric before the comparisons are corrected together. */
interface Pending {
  metric: MetricJson;
  comparison: (Omit<ComparisonJson, 'p_value_adjusted' | 'significant'>) | null;
}

function sequentialJson(c: Comparison, variance: number, tauSquared: number): ComparisonJson['sequential'] {
  const s = msprt(c.difference, variance, tauSquared, ALPHA);
  return s === null ? null : { method: 'msprt', p_value: s.pValue, ci: [s.interval.low, s.interval.high], likelihood_ratio: s.likelihoodRatio };
}

function meanMetric(control: MomentSums, arm: MomentSums, isControl: boolean): Pending {
  const m = momentsOf(arm);
  const metric: MetricJson = { kind: 'mean', n: m.n, estimate: m.n > 0 ? m.mean : null, ci: pair(meanInterval(m, ALPHA)), vs_control: null };
  if (isControl) return { metric, comparison: null };
  const c = momentsOf(control);
  const w = welchTest(c, m, ALPHA);
  const variance = c.n > 0 && m.n > 0 ? c.variance / c.n + m.variance / m.n : Number.NaN;
  return {
    metric,
    comparison: {
      difference: w.difference, ci: pair(w.interval), p_value: w.pValue,
      sequential: sequentialJson(w, variance, tauSquaredFor(c.variance, m.variance)),
      mde: Number.isFinite(w.standardError) ? minimumDetectableEffect(w.standardError, ALPHA) : null,
      underpowered: c.n < MIN_SAMPLES_PER_ARM || m.n < MIN_SAMPLES_PER_ARM,
    },
  };
}

function rateMetric(control: { successes: number; n: number }, arm: { successes: number; n: number }, isControl: boolean): Pending {
  const metric: MetricJson = { kind: 'rate', n: arm.n, estimate: arm.n > 0 ? arm.successes / arm.n : null, ci: pair(wilsonInterval(arm.successes, arm.n, ALPHA)), vs_control: null };
  if (isControl) return { metric, comparison: null };
  const t = twoProportionTest(control, arm, ALPHA);
  const pc = control.n > 0 ? control.successes / control.n : Number.NaN;
  const pt = arm.n > 0 ? arm.successes / arm.n : Number.NaN;
  const events = (x: { successes: number; n: number }) => Math.min(x.successes, x.n - x.successes);
  return {
    metric,
    comparison: {
      difference: t.difference, ci: pair(t.interval), p_value: t.pValue,
      sequential: sequentialJson(t, t.standardError * t.standardError, tauSquaredFor(pc * (1 - pc), pt * (1 - pt))),
      mde: Number.isFinite(t.standardError) && t.standardError > 0 ? minimumDetectableEffect(t.standardError, ALPHA) : null,
      underpowered: control.n < MIN_SAMPLES_PER_ARM || arm.n < MIN_SAMPLES_PER_ARM || events(control) < MIN_EVENTS_PER_ARM || events(arm) < MIN_EVENTS_PER_ARM,
    },
  };
}

function percentileMetric(control: { n: number; values: number[] | undefined }, arm: { n: number; values: number[] | undefined }, index: number, isControl: boolean): Pending {
  const at = (x: { values: number[] | undefined }) => {
    const v = x.values;
    const point = v?.[index * 3];
    const low = v?.[index * 3 + 1];
    const high = v?.[index * 3 + 2];
    return point === undefined || low === undefined || high === undefined ? null : { estimate: point, interval: { low, high } };
  };
  const mine = at(arm);
  const metric: MetricJson = { kind: 'percentile', n: arm.n, estimate: mine?.estimate ?? null, ci: mine ? [mine.interval.low, mine.interval.high] : null, vs_control: null };
  if (isControl) return { metric, comparison: null };
  const theirs = at(control);
  if (!mine || !theirs) return { metric, comparison: { difference: Number.NaN, ci: null, p_value: null, sequential: null, mde: null, underpowered: true } };
  const d = quantileDifference(theirs, mine, ALPHA);
  return {
    metric,
    comparison: {
      difference: d.difference, ci: pair(d.interval), p_value: d.pValue, sequential: null,
      mde: d.standardError > 0 ? minimumDetectableEffect(d.standardError, ALPHA) : null,
      underpowered: control.n < MIN_SAMPLES_PER_ARM || arm.n < MIN_SAMPLES_PER_ARM,
    },
  };
}

export interface ResultsInput {
  experiment: { id: string; status: string; control: string; variants: ReadonlyArray<{ name: string; weight: number }> };
  sums: VariantInput[];
  feedback: FeedbackInput[];
  /** Per variant, its `latencyValues`. */
  latencies: ReadonlyMap<string, number[]>;
  /** Per variant, `latencyValues` of its TTFT histogram (streamed completions). @default none */
  ttfts?: ReadonlyMap<string, number[]>;
}

const EMPTY: MomentSums = { n: 0, sum: 0, sumSquares: 0 };
/** The `reason` of a TTFT metric without data. */
export const NO_TTFT = 'no streamed completions: TTFT is measured on streamed requests only';

/** The results body of `GET /v1/admin/experiments/{id}/results` (see the top of this file). */
export function experimentResults(input: ResultsInput) {
  const { experiment } = input;
  const names = experiment.variants.map((v) => v.name);
  const sumsOf = (name: string): VariantInput => input.sums.find((s) => s.name === name) ?? {
    name, weight: 0, exposures: 0, succeeded: 0, failed: 0, cancelled: 0, costMicros: EMPTY, promptTokens: EMPTY, completionTokens: EMPTY, latencyN: 0,
  };
  const control = sumsOf(experiment.control);
  // Metric name → per variant pending result, in variant order.
  const metrics = new Map<string, Map<string, Pending>>();
  const put = (metric: string, variant: string, p: Pending) => {
    let m = metrics.get(metric);
    if (!m) metrics.set(metric, (m = new Map()));
    m.set(variant, p);
  };
  const errorsOf = (s: VariantInput) => ({ successes: s.failed, n: s.failed + s.succeeded });
  for (const name of names) {
    const s = sumsOf(name);
    const isControl = name === experiment.control;
    put('error_rate', name, rateMetric(errorsOf(control), errorsOf(s), isControl));
    for (const [i, p] of LATENCY_PERCENTILES.entries()) {
      put(`latency_p${Math.round(p * 100)}_ms`, name, percentileMetric({ n: control.latencyN, values: input.latencies.get(control.name) }, { n: s.latencyN, values: input.latencies.get(name) }, i, isControl));
    }
    // TTFT: only streamed completions have one (the time to their first chunk).
    for (const [i, p] of LATENCY_PERCENTILES.entries()) {
      const pending = percentileMetric({ n: control.ttftN ?? 0, values: input.ttfts?.get(control.name) }, { n: s.ttftN ?? 0, values: input.ttfts?.get(name) }, i, isControl);
      if ((s.ttftN ?? 0) === 0) pending.metric.reason = NO_TTFT;
      put(`ttft_p${Math.round(p * 100)}_ms`, name, pending);
    }
    put('prompt_tokens', name, meanMetric(control.promptTokens, s.promptTokens, isControl));
    put('completion_tokens', name, meanMetric(control.completionTokens, s.completionTokens, isControl));
    put('cost_micros_per_request', name, meanMetric(control.costMicros, s.costMicros, isControl));
  }
  const feedbackKeys = [...new Set(input.feedback.map((f) => `${f.metric}\u0000${f.kind}`))];
  for (const key of feedbackKeys) {
    const [metric = '', kind = 'comment'] = key.split('\u0000') as [string, FeedbackInput['kind']];
    const of = (variant: string) => input.feedback.find((f) => f.variant === variant && f.metric === metric && f.kind === kind);
    const label = `feedback.${metric}${kind === 'comment' ? '.comments' : ''}`;
    for (const name of names) {
      const f = of(name);
      const c = of(experiment.control);
      const isControl = name === experiment.control;
      if (kind === 'boolean') put(label, name, rateMetric({ successes: c?.trues ?? 0, n: c?.n ?? 0 }, { successes: f?.trues ?? 0, n: f?.n ?? 0 }, isControl));
      else if (kind === 'score') put(label, name, meanMetric(c ? { n: c.n, sum: c.sum, sumSquares: c.sumSquares } : EMPTY, f ? { n: f.n, sum: f.sum, sumSquares: f.sumSquares } : EMPTY, isControl));
      else put(label, name, { metric: { kind: 'count', n: f?.n ?? 0, estimate: f?.n ?? 0, ci: null, vs_control: null }, comparison: null });
    }
  }
  // Holm over the treatments of each metric.
  const perVariant = new Map<string, Record<string, MetricJson>>(names.map((n) => [n, {}]));
  for (const [metric, byVariant] of metrics) {
    const entries = [...byVariant.entries()];
    const adjusted = holmAdjust(entries.map(([, p]) => p.comparison?.p_value ?? null));
    for (const [i, [variant, p]] of entries.entries()) {
      const adj = adjusted[i] ?? null;
      const vsControl: ComparisonJson | null = p.comparison === null ? null : { ...p.comparison, p_value_adjusted: adj, significant: adj !== null && adj < ALPHA };
      (perVariant.get(variant) as Record<string, MetricJson>)[metric] = { ...p.metric, vs_control: vsControl };
    }
  }
  const srm = sampleRatioTest(names.map((n) => sumsOf(n).exposures), experiment.variants.map((v) => v.weight));
  const srmPassed = srm === null || srm.pValue >= SRM_THRESHOLD;
  return {
    object: 'experiment.results' as const,
    experiment_id: experiment.id,
    status: experiment.status,
    control: experiment.control,
    trustworthy: srmPassed,
    srm: {
      test: 'chi_square_goodness_of_fit' as const,
      threshold: SRM_THRESHOLD,
      passed: srmPassed,
      statistic: srm?.statistic ?? null,
      df: srm?.df ?? null,
      p_value: srm?.pValue ?? null,
      observed: Object.fromEntries(names.map((n) => [n, sumsOf(n).exposures])),
      expected: srm === null ? null : Object.fromEntries(names.map((n, i) => [n, srm.expected[i] ?? 0])),
    },
    methods: {
      alpha: ALPHA,
      confidence: 1 - ALPHA,
      means: 'welch_t_test',
      rates: 'two_proportion_z_test; wilson_interval per variant',
      percentiles: 'order_statistic_interval (binomial, large-sample); difference by normal approximation',
      ttft: 'time from acceptance to the first streamed chunk (requests.ttft_ms), over succeeded streamed requests; percentiles as latency',
      multiple_comparisons: 'holm',
      sequential: { method: 'msprt', mixing: 'normal', tau_sd: TAU_SD, applies_to: 'means and rates' },
      srm: 'pearson_chi_square',
      underpowered_when: { min_samples_per_arm: MIN_SAMPLES_PER_ARM, min_events_per_arm: MIN_EVENTS_PER_ARM },
      mde_power: TARGET_POWER,
    },
    variants: names.map((name) => {
      const s = sumsOf(name);
      const w = experiment.variants.find((v) => v.name === name)?.weight ?? 0;
      return {
        name, weight: w, is_control: name === experiment.control,
        exposures: s.exposures, completions: s.succeeded, errors: s.failed, cancelled: s.cancelled,
        metrics: perVariant.get(name) ?? {},
      };
    }),
  };
}

export type ExperimentResults = ReturnType<typeof experimentResults>;
