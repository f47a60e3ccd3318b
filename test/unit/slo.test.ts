/** SLO and SLA rules: validation, what counts against availability, attainment, error budget, credit tiers (at their boundaries) and rounding. */
import { describe, expect, it } from 'vitest';
import {
  CLIENT_FAULT_FAILURES, countsAgainstUs, parsePlanSla, parseSloDefinition, parseSloSeed, patchSloDefinition, ratioToPpm, windowRange,
} from '../../domain/slo.js';
import { attainment, creditMicros, creditTier, errorBudget, isBelow, isMet } from '../../domain/slo-math.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';

function refused(fn: () => unknown): InvalidRequestError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidRequestError) return err;
    throw err;
  }
  throw new Error('not refused');
}

const sla = parsePlanSla({ target: 0.999, credits: [{ below: 0.999, credit_percent: 10 }, { below: 0.99, credit_percent: 25 }, { below: 0.95, credit_percent: 100 }] });

describe('what counts against availability', () => {
  it("leaves out the client's own 4xx and counts every 5xx and unknown type against us", () => {
    for (const t of ['BadRequest', 'ContextLengthExceeded', 'QuotaExceeded', 'Unauthorized', 'PermissionDenied', 'NotFound']) {
      expect(countsAgainstUs(t), t).toBe(false);
    }
    for (const t of ['NoDeploymentAvailable', 'StreamInterrupted', 'InternalError', 'SomethingNew', null]) expect(countsAgainstUs(t), String(t)).toBe(true);
    expect(CLIENT_FAULT_FAILURES).not.toContain('Cancelled');
  });
});

describe('SLO definitions', () => {
  it('takes a valid definition, the window defaulting to 30d', () => {
    expect(parseSloDefinition({ name: 'chat p95', kind: 'latency_p95', scope: { type: 'model', value: 'm' }, target: 0.95, threshold_ms: 2000 }))
      .toEqual({ name: 'chat p95', kind: 'latency_p95', scopeType: 'model', scopeValue: 'm', targetPpm: 950_000, window: '30d', thresholdMs: 2000 });
    expect(parseSloDefinition({ name: 'a', kind: 'availability', scope: { type: 'plan', value: 'pro' }, target: 0.999, window: 'calendar_month' }).window).toBe('calendar_month');
  });

  it('refuses each bad field with a 400 naming it', () => {
    const base = { name: 'x', kind: 'availability', scope: { type: 'model', value: 'm' }, target: 0.99 };
    expect(refused(() => parseSloDefinition({ ...base, target: 1 })).param).toBe('target');
    expect(refused(() => parseSloDefinition({ ...base, target: 0 })).param).toBe('target');
    expect(refused(() => parseSloDefinition({ ...base, target: '0.9' })).param).toBe('target');
    expect(refused(() => parseSloDefinition({ ...base, target: 0.99999995 })).param).toBe('target');
    expect(refused(() => parseSloDefinition({ ...base, window: '7d' })).param).toBe('window');
    expect(refused(() => parseSloDefinition({ ...base, kind: 'latency_p50' })).param).toBe('kind');
    expect(refused(() => parseSloDefinition({ ...base, scope: { type: 'region', value: 'eu' } })).param).toBe('scope.type');
    expect(refused(() => parseSloDefinition({ ...base, scope: { type: 'model', value: '' } })).param).toBe('scope.value');
    expect(refused(() => parseSloDefinition({ ...base, threshold_ms: 100 })).param).toBe('threshold_ms');
    expect(refused(() => parseSloDefinition({ ...base, kind: 'ttft_p99' })).param).toBe('threshold_ms');
    expect(refused(() => parseSloDefinition({ ...base, kind: 'latency_p99', threshold_ms: 0 })).param).toBe('threshold_ms');
    expect(refused(() => parseSloDefinition({ ...base, kind: 'batch_window', scope: { type: 'pool', value: 'p' } })).param).toBe('scope.type');
    expect(refused(() => parseSloDefinition({ ...base, extra: 1 }))).toMatchObject({ param: 'extra', code: 'unknown_parameter' });
    expect(refused(() => parseSloDefinition([])).param).toBe('body');
  });

  it('patches name, target, window and threshold, never kind or scope', () => {
    const d = parseSloDefinition({ name: 'x', kind: 'latency_p99', scope: { type: 'pool', value: 'gpu' }, target: 0.99, threshold_ms: 500 });
    expect(patchSloDefinition(d, { target: 0.995, threshold_ms: 800 })).toMatchObject({ targetPpm: 995_000, thresholdMs: 800, kind: 'latency_p99' });
    expect(refused(() => patchSloDefinition(d, { kind: 'availability' })).code).toBe('immutable_field');
    expect(refused(() => patchSloDefinition(d, { scope: { type: 'model', value: 'm' } })).param).toBe('scope');
  });

  it('holds targets in exact parts per million', () => {
    expect(ratioToPpm(0.999, 't')).toBe(999_000);
    expect(ratioToPpm(0.99995, 't')).toBe(999_950);
    expect(ratioToPpm(0.000001, 't')).toBe(1);
  });

  it('resolves windows: 30 rolling days, or the UTC month so far', () => {
    const now = new Date('2026-03-15T12:00:00Z');
    expect(windowRange('30d', now)).toEqual({ start: new Date('2026-02-13T12:00:00Z'), end: now });
    expect(windowRange('calendar_month', now)).toEqual({ start: new Date('2026-03-01T00:00:00Z'), end: now });
  });
});

describe('plan SLAs', () => {
  it('holds tiers as ppm thresholds and basis points', () => {
    expect(sla).toEqual({ targetPpm: 999_000, tiers: [{ belowPpm: 999_000, creditBps: 1000 }, { belowPpm: 990_000, creditBps: 2500 }, { belowPpm: 950_000, creditBps: 10_000 }] });
  });

  it('refuses unordered tiers, credits that do not grow, percentages outside 0–100 and thresholds above the target', () => {
    const t = (credits: unknown, target = 0.999) => refused(() => parsePlanSla({ target, credits }));
    expect(t([{ below: 0.99, credit_percent: 10 }, { below: 0.999, credit_percent: 25 }]).param).toBe('credits[1].below');
    expect(t([{ below: 0.99, credit_percent: 10 }, { below: 0.99, credit_percent: 25 }]).param).toBe('credits[1].below');
    expect(t([{ below: 0.999, credit_percent: 25 }, { below: 0.99, credit_percent: 10 }]).param).toBe('credits[1].credit_percent');
    expect(t([{ below: 0.99, credit_percent: 101 }]).param).toBe('credits[0].credit_percent');
    expect(t([{ below: 0.99, credit_percent: -1 }]).param).toBe('credits[0].credit_percent');
    expect(t([{ below: 0.99, credit_percent: 0 }]).param).toBe('credits[0].credit_percent');
    expect(t([{ below: 0.9995, credit_percent: 10 }]).param).toBe('credits[0].below');
    expect(t([]).param).toBe('credits');
    expect(t('x').param).toBe('credits');
  });
});

describe('attainment and error budget', () => {
  it('compares with the target exactly, in integers', () => {
    expect(isMet({ eligible: 1000, good: 999 }, 999_000)).toBe(true);
    expect(isMet({ eligible: 1000, good: 998 }, 999_000)).toBe(false);
    // 0.1 + 0.2 style traps: 9/10 against 0.9 is exactly at the target.
    expect(isBelow({ eligible: 10, good: 9 }, 900_000)).toBe(false);
    expect(isBelow({ eligible: 3, good: 2 }, 666_667)).toBe(true);
    expect(isBelow({ eligible: 3, good: 2 }, 666_666)).toBe(false);
    expect(attainment({ eligible: 0, good: 0 })).toBeNull();
    expect(attainment({ eligible: 4, good: 3 })).toBe(0.75);
  });

  it('spends the budget by bad events: whole, half, spent, overspent, empty', () => {
    expect(errorBudget({ eligible: 1000, good: 1000 }, 990_000)).toEqual({ allowedBad: 10, bad: 0, remaining: 1 });
    expect(errorBudget({ eligible: 1000, good: 995 }, 990_000)).toEqual({ allowedBad: 10, bad: 5, remaining: 0.5 });
    expect(errorBudget({ eligible: 1000, good: 990 }, 990_000).remaining).toBe(0);
    expect(errorBudget({ eligible: 1000, good: 980 }, 990_000).remaining).toBe(-1);
    expect(errorBudget({ eligible: 0, good: 0 }, 990_000)).toEqual({ allowedBad: 0, bad: 0, remaining: 1 });
  });
});

describe('SLA credit tiers', () => {
  it('exactly at a threshold earns nothing for it ("below" is strictly below); one request under it does', () => {
    // 999 of 1000 = 99.9% exactly: at the first threshold, not below it.
    expect(creditTier({ eligible: 1000, good: 999 }, sla)).toBeNull();
    expect(creditTier({ eligible: 1000, good: 998 }, sla)).toEqual({ belowPpm: 999_000, creditBps: 1000 });
    // 99% exactly: still the 10% tier; just under it: 25%.
    expect(creditTier({ eligible: 100, good: 99 }, sla)?.creditBps).toBe(1000);
    expect(creditTier({ eligible: 1000, good: 989 }, sla)?.creditBps).toBe(2500);
    expect(creditTier({ eligible: 100, good: 95 }, sla)?.creditBps).toBe(2500);
    expect(creditTier({ eligible: 100, good: 94 }, sla)?.creditBps).toBe(10_000);
    expect(creditTier({ eligible: 0, good: 0 }, sla)).toBeNull();
  });

  it('credits basis points of the charges, rounded half up to a whole micro-USD', () => {
    expect(creditMicros(1_000_000, 1000)).toBe(100_000);
    expect(creditMicros(5, 1000)).toBe(1); // 0.5 → 1
    expect(creditMicros(4, 1000)).toBe(0); // 0.4 → 0
    expect(creditMicros(15, 2500)).toBe(4); // 3.75 → 4
    expect(creditMicros(123_456_789, 10_000)).toBe(123_456_789);
    expect(creditMicros(0, 2500)).toBe(0);
    expect(creditMicros(-100, 2500)).toBe(0);
    expect(creditMicros(Number.MAX_SAFE_INTEGER, 10_000)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('the SLO seed file', () => {
  it('takes definitions with IDs and names the entry and field of a problem', () => {
    expect(parseSloSeed({ slos: [{ id: 'slo_a', name: 'a', kind: 'availability', scope: { type: 'plan', value: 'pro' }, target: 0.99 }] }))
      .toEqual([{ id: 'slo_a', name: 'a', kind: 'availability', scopeType: 'plan', scopeValue: 'pro', targetPpm: 990_000, window: '30d', thresholdMs: null }]);
    const entry = { id: 'slo_a', name: 'a', kind: 'availability', scope: { type: 'plan', value: 'pro' }, target: 0.99 };
    expect(refused(() => parseSloSeed({ slos: [entry, { ...entry, id: 'slo_b', target: 2 }] })).param).toBe('slos[1].target');
    expect(refused(() => parseSloSeed({ slos: [entry, entry] })).param).toBe('slos[1].id');
    expect(refused(() => parseSloSeed({ slos: [{ ...entry, id: 'A' }] })).param).toBe('slos[0].id');
    expect(refused(() => parseSloSeed([entry])).param).toBe('slos');
  });
});
