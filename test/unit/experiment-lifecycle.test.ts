/** Experiments' pure rules: lifecycle transitions, eligibility (window, targeting, allocation), prompt overrides, results assembly. */
import { describe, expect, it } from 'vitest';
import { allocationPosition, eligibility, transitionOf, type EligibilityRules, type ExperimentStatus, EXPERIMENT_STATUSES, LIFECYCLE_ACTIONS } from '../../domain/experiment-lifecycle.js';
import { applyPromptOverride, checkPromptOverride } from '../../domain/experiment-prompt.js';
import { validateVariantOverrides } from '../../domain/sampling-params.js';
import { experimentResults, latencyValues, type VariantInput } from '../../domain/experiment-results.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';

const base: EligibilityRules = { id: 'exp_1', status: 'running', startsAt: null, endsAt: null, trafficAllocation: 1, targetKeyIds: null, targetMetadata: null };
const req = { keyId: 'key_a', subject: 'u1', metadata: null, now: new Date('2026-12-01T12:00:00Z') };

describe('lifecycle', () => {
  it('allows exactly draft→running, running⇄paused, any but stopped→stopped', () => {
    const allowed = new Set<string>();
    for (const a of LIFECYCLE_ACTIONS) for (const from of transitionOf(a).from) allowed.add(`${from}->${transitionOf(a).to}`);
    expect([...allowed].sort()).toEqual(['draft->running', 'draft->stopped', 'paused->running', 'paused->stopped', 'running->paused', 'running->stopped']);
    // stopped is final: no action leaves it.
    for (const a of LIFECYCLE_ACTIONS) expect(transitionOf(a).from).not.toContain('stopped');
  });

  it.each(EXPERIMENT_STATUSES.filter((s) => s !== 'running'))('a %s experiment assigns nobody', (status: ExperimentStatus) => {
    expect(eligibility({ ...base, status }, req)).toBe('not_running');
  });
});

describe('eligibility', () => {
  it('respects the window: before starts_at and from ends_at on, nobody enters', () => {
    expect(eligibility({ ...base, startsAt: new Date('2026-12-01T12:00:01Z') }, req)).toBe('outside_window');
    expect(eligibility({ ...base, endsAt: new Date('2026-12-01T12:00:00Z') }, req)).toBe('outside_window');
    expect(eligibility({ ...base, startsAt: new Date('2026-12-01T11:00:00Z'), endsAt: new Date('2026-12-01T13:00:00Z') }, req)).toBe('enter');
  });

  it('targets keys and metadata pairs', () => {
    expect(eligibility({ ...base, targetKeyIds: ['key_b'] }, req)).toBe('not_targeted');
    expect(eligibility({ ...base, targetKeyIds: ['key_b', 'key_a'] }, req)).toBe('enter');
    expect(eligibility({ ...base, targetMetadata: { plan: 'pro' } }, req)).toBe('not_targeted');
    expect(eligibility({ ...base, targetMetadata: { plan: 'pro' } }, { ...req, metadata: { plan: 'pro', x: 'y' } })).toBe('enter');
    expect(eligibility({ ...base, targetMetadata: { plan: 'pro' } }, { ...req, metadata: { plan: 'free' } })).toBe('not_targeted');
    expect(eligibility({ ...base, targetMetadata: { plan: ['pro', 'team'] } }, { ...req, metadata: { plan: 'team' } })).toBe('enter');
    expect(eligibility({ ...base, targetMetadata: { plan: 'pro' } }, req)).toBe('not_targeted');
  });

  it('allocation 0 takes nobody, 1 everybody, 0.3 about 30% of subjects, each subject always on the same side', () => {
    const subjects = Array.from({ length: 4000 }, (_, i) => `user-${i}`);
    expect(subjects.every((s) => eligibility({ ...base, trafficAllocation: 0 }, { ...req, subject: s }) === 'not_allocated')).toBe(true);
    expect(subjects.every((s) => eligibility(base, { ...req, subject: s }) === 'enter')).toBe(true);
    const inside = subjects.filter((s) => eligibility({ ...base, trafficAllocation: 0.3 }, { ...req, subject: s }) === 'enter');
    // Binomial(4000, 0.3): sd ≈ 29; ±5 sd.
    expect(Math.abs(inside.length - 1200)).toBeLessThan(145);
    // Raising the allocation only adds subjects.
    const wider = new Set(subjects.filter((s) => eligibility({ ...base, trafficAllocation: 0.5 }, { ...req, subject: s }) === 'enter'));
    expect(inside.every((s) => wider.has(s))).toBe(true);
    expect(allocationPosition('exp_1', 'user-7')).toBe(allocationPosition('exp_1', 'user-7'));
  });
});

describe('prompt overrides', () => {
  it('validates a template at creation: only {{system}}, balanced braces', () => {
    expect(checkPromptOverride('Be brief. {{ system }}', 'p', 'system_template')).toBe('Be brief. {{ system }}');
    expect(() => checkPromptOverride('Hi {{name}}', 'p', 'system_template')).toThrow(InvalidRequestError);
    expect(() => checkPromptOverride('Hi {{system}', 'p', 'system_template')).toThrow(/unbalanced/);
    expect(() => checkPromptOverride('', 'p', 'system_prompt')).toThrow(InvalidRequestError);
    expect(() => checkPromptOverride(42, 'p', 'system_prompt')).toThrow(/string/);
  });

  it('is part of the variant validator, naming the field; not both forms at once', () => {
    expect(validateVariantOverrides({ system_prompt: 'x', max_tokens: 5 }, 'v')).toEqual({ system_prompt: 'x', max_tokens: 5 });
    expect(() => validateVariantOverrides({ system_template: '{{user}}' }, 'variants[1].overrides')).toThrow(expect.objectContaining({ param: 'variants[1].overrides.system_template' }));
    expect(() => validateVariantOverrides({ system_prompt: 'a', system_template: 'b' }, 'v')).toThrow(/not both/);
  });

  it('puts a system prompt first, or replaces the system messages by the expanded template, or prefixes a raw prompt', () => {
    const msgs = [{ role: 'system' as const, content: 'Caller rules.' }, { role: 'user' as const, content: 'Hello' }];
    expect(applyPromptOverride(msgs, {}, false)).toBe(msgs);
    expect(applyPromptOverride(msgs, { system_prompt: 'Be brief.' }, false)).toEqual([{ role: 'system', content: 'Be brief.' }, ...msgs]);
    expect(applyPromptOverride(msgs, { system_template: 'Be brief. {{system}} $& $1' }, false)).toEqual([{ role: 'system', content: 'Be brief. Caller rules. $& $1' }, msgs[1]]);
    expect(applyPromptOverride([{ role: 'user', content: 'Once upon' }], { system_prompt: 'Poem:' }, true)).toEqual([{ role: 'user', content: 'Poem:\n\nOnce upon' }]);
  });
});

const arm = (name: string, exposures: number, weight = 1): VariantInput & { weight: number } => ({
  name, weight, exposures, succeeded: exposures, failed: 0, cancelled: 0,
  costMicros: { n: exposures, sum: exposures * 10, sumSquares: exposures * 100 + exposures },
  promptTokens: { n: exposures, sum: exposures * 5, sumSquares: exposures * 26 },
  completionTokens: { n: exposures, sum: exposures * 8, sumSquares: exposures * 65 },
  latencyN: exposures,
});

describe('results assembly', () => {
  it('flags SRM when exposures do not follow the weights, and trusts them when they do', () => {
    const exp = { id: 'e', status: 'running', control: 'a', variants: [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }] };
    const ok = experimentResults({ experiment: exp, sums: [arm('a', 500), arm('b', 510)], feedback: [], latencies: new Map() });
    expect(ok.trustworthy).toBe(true);
    const bad = experimentResults({ experiment: exp, sums: [arm('a', 500), arm('b', 800)], feedback: [], latencies: new Map() });
    expect(bad.trustworthy).toBe(false);
    expect(bad.srm.passed).toBe(false);
    expect(bad.srm.p_value).toBeLessThan(0.001);
  });

  it('compares each treatment with control, Holm-corrected over treatments, flags small samples underpowered', () => {
    const exp = { id: 'e', status: 'running', control: 'a', variants: [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }, { name: 'c', weight: 1 }] };
    const fb = (variant: string, n: number, trues: number) => ({ variant, metric: 'thumbs', kind: 'boolean' as const, n, trues, sum: 0, sumSquares: 0 });
    const r = experimentResults({ experiment: exp, sums: [arm('a', 40), arm('b', 40), arm('c', 40)], feedback: [fb('a', 40, 10), fb('b', 40, 30), fb('c', 40, 12)], latencies: new Map() });
    const [a, b, c] = r.variants;
    expect(a?.metrics['feedback.thumbs']?.vs_control).toBeNull();
    const vb = b?.metrics['feedback.thumbs']?.vs_control;
    const vc = c?.metrics['feedback.thumbs']?.vs_control;
    expect(vb?.difference).toBeCloseTo(0.5, 12);
    // Holm over two treatments: the smaller p doubled, the larger at least the smaller adjusted.
    expect(vb?.p_value_adjusted).toBeCloseTo(2 * vb!.p_value!, 12);
    expect(vc?.p_value_adjusted).toBeGreaterThanOrEqual(vb!.p_value_adjusted!);
    expect(vb?.underpowered).toBe(true);
    expect(vb?.sequential?.method).toBe('msprt');
    expect(r.methods.multiple_comparisons).toBe('holm');
  });

  it('reads three ranks per percentile from the latency histogram, and uses them in that order', () => {
    // 1000 latencies 1..1000 ms: p50 is rank 500 within ranks [469, 531], p95 rank 950 within [936, 964].
    const uniform = Array.from({ length: 1000 }, (_, i) => [i + 1, 1] as [number, number]);
    expect(latencyValues(uniform)).toEqual([500, 469, 531, 950, 936, 964]);
    expect(latencyValues([])).toEqual([]);
    const exp = { id: 'e', status: 'running', control: 'a', variants: [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }] };
    const r = experimentResults({ experiment: exp, sums: [arm('a', 1000), arm('b', 1000)], feedback: [], latencies: new Map([['a', [50, 45, 55, 90, 85, 99]], ['b', [60, 55, 65, 90, 85, 99]]]) });
    expect(r.variants[1]?.metrics.latency_p50_ms).toMatchObject({ estimate: 60, ci: [55, 65] });
    expect(r.variants[1]?.metrics.latency_p50_ms?.vs_control?.difference).toBe(10);
    expect(r.variants[1]?.metrics.latency_p95_ms?.vs_control?.difference).toBe(0);
  });
});
