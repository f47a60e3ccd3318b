/** Cost arithmetic in integer micro-USD, and the UTC billing period and rate-limit minute. */
import { describe, expect, it } from 'vitest';
import { costMicros, type TokenPrice } from '../../domain/cost.js';
import { minuteOf, periodOf } from '../../domain/billing-calendar.js';

const price = (inputMicrosPerMtok: number, outputMicrosPerMtok: number): TokenPrice => ({ inputMicrosPerMtok, outputMicrosPerMtok });

describe('costMicros', () => {
  it('is zero for zero tokens', () => {
    expect(costMicros(price(1_500_000, 2_000_000), 0, 0)).toBe(0);
    expect(costMicros(price(0, 0), 1_000, 1_000)).toBe(0);
  });

  it('charges input and output at their own prices', () => {
    // 2M input tokens at $0.50/Mtok = 1_000_000 µ$; 1M output tokens at $1.50/Mtok = 1_500_000 µ$.
    expect(costMicros(price(500_000, 1_500_000), 2_000_000, 0)).toBe(1_000_000);
    expect(costMicros(price(500_000, 1_500_000), 0, 1_000_000)).toBe(1_500_000);
    expect(costMicros(price(500_000, 1_500_000), 2_000_000, 1_000_000)).toBe(2_500_000);
  });

  it('rounds up to the next whole micro-USD, never bills a fraction as zero', () => {
    expect(costMicros(price(1, 0), 1, 0)).toBe(1); // 1e-6 µ$
    expect(costMicros(price(1, 0), 999_999, 0)).toBe(1);
    expect(costMicros(price(1, 0), 1_000_000, 0)).toBe(1); // exactly 1 µ$: no extra
    expect(costMicros(price(1, 0), 1_000_001, 0)).toBe(2);
    // 1234 input at 2_500_000 = 3_085_000_000 / 1e6 = 3085 exactly; + 1 output at 1 → 3085.000001 → 3086.
    expect(costMicros(price(2_500_000, 1), 1_234, 0)).toBe(3_085);
    expect(costMicros(price(2_500_000, 1), 1_234, 1)).toBe(3_086);
  });

  it('is exact where floating point would lose the last micro-USD', () => {
    // 1e12 output tokens at 1e6 µ$/Mtok = 1e18, plus 1 input token at 1 µ$/Mtok = 1e18 + 1 (in µ$·1e-6),
    // so the cost is 1e12 + 1 µ$ after rounding up. In doubles 1e18 + 1 === 1e18, which would give 1e12.
    expect(1e18 + 1).toBe(1e18);
    expect(costMicros(price(1, 1_000_000), 1, 1_000_000_000_000)).toBe(1_000_000_000_001);
  });

  it('is exact for the largest safe token count', () => {
    // 9_007_199_254_740_991 × 3 = 27_021_597_764_222_973 → / 1e6 = 27_021_597_764.222973 → 27_021_597_765.
    expect(costMicros(price(3, 0), Number.MAX_SAFE_INTEGER, 0)).toBe(27_021_597_765);
    // 123_456_789_012 × 98_765_432 = 12_193_263_100_103_033_184
    // 987_654_321 × 123_456_789 = 121_932_631_112_635_269
    // sum = 12_315_195_731_215_668_453 → ceil(/1e6) = 12_315_195_731_216
    expect(costMicros(price(98_765_432, 123_456_789), 123_456_789_012, 987_654_321)).toBe(12_315_195_731_216);
  });

  it.each([
    ['negative input tokens', price(1, 1), -1, 0],
    ['negative output tokens', price(1, 1), 0, -5],
    ['fractional input tokens', price(1, 1), 1.5, 0],
    ['fractional output tokens', price(1, 1), 0, 0.1],
    ['NaN tokens', price(1, 1), Number.NaN, 0],
    ['infinite tokens', price(1, 1), Number.POSITIVE_INFINITY, 0],
    ['unsafe integer tokens', price(1, 1), 2 ** 53, 0],
    ['negative input price', price(-1, 1), 1, 1],
    ['negative output price', price(1, -1), 1, 1],
    ['fractional price', price(0.5, 1), 1, 1],
  ])('rejects %s', (_name, p, input, output) => {
    expect(() => costMicros(p, input, output)).toThrow(RangeError);
  });
});

describe('periodOf', () => {
  it('is the UTC calendar month as YYYY-MM', () => {
    expect(periodOf(new Date('2026-03-15T12:00:00Z'))).toBe('2026-03');
    expect(periodOf(new Date(Date.UTC(2026, 0, 1)))).toBe('2026-01');
  });

  it('switches exactly at the UTC month and year boundary', () => {
    expect(periodOf(new Date('2026-12-31T23:59:59.999Z'))).toBe('2026-12');
    expect(periodOf(new Date('2027-01-01T00:00:00.000Z'))).toBe('2027-01');
    expect(periodOf(new Date('2028-02-29T23:59:59.999Z'))).toBe('2028-02');
    expect(periodOf(new Date('2028-03-01T00:00:00.000Z'))).toBe('2028-03');
  });

  it('uses UTC, not the offset the instant was written in', () => {
    // 00:30 on 1 Feb at +01:00 is still 31 Jan in UTC; 23:30 on 31 Dec at -05:00 is already January.
    expect(periodOf(new Date('2026-02-01T00:30:00+01:00'))).toBe('2026-01');
    expect(periodOf(new Date('2026-12-31T23:30:00-05:00'))).toBe('2027-01');
  });
});

describe('minuteOf', () => {
  it('truncates to the start of the UTC minute', () => {
    expect(minuteOf(new Date('2026-05-05T10:20:30.456Z')).toISOString()).toBe('2026-05-05T10:20:00.000Z');
    expect(minuteOf(new Date('2026-05-05T10:20:00.000Z')).toISOString()).toBe('2026-05-05T10:20:00.000Z');
    expect(minuteOf(new Date('2026-05-05T10:20:59.999Z')).toISOString()).toBe('2026-05-05T10:20:00.000Z');
  });

  it('stays in the right minute across day, month and year boundaries', () => {
    expect(minuteOf(new Date('2026-12-31T23:59:59.999Z')).toISOString()).toBe('2026-12-31T23:59:00.000Z');
    expect(minuteOf(new Date('2027-01-01T00:00:00.001Z')).toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });

  it('floors instants before 1970 too', () => {
    expect(minuteOf(new Date('1969-12-31T23:59:30.500Z')).toISOString()).toBe('1969-12-31T23:59:00.000Z');
  });

  it('returns a new Date and leaves the argument alone', () => {
    const at = new Date('2026-05-05T10:20:30.456Z');
    const m = minuteOf(at);
    expect(m).not.toBe(at);
    expect(at.toISOString()).toBe('2026-05-05T10:20:30.456Z');
  });
});
