/** The one reader of a client's time field (billing bodies, usage queries), and of an integer field (billing, models). */
import { describe, expect, it } from 'vitest';
import { timeParam } from '../../domain/time-param.js';
import { intParam } from '../../domain/int-param.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';

describe('timeParam', () => {
  const fallback = new Date('2025-01-01T00:00:00Z');

  it('reads unix seconds as a number or a string of digits, and ISO 8601', () => {
    expect(timeParam(1_735_689_600, 'from', fallback).toISOString()).toBe('2025-01-01T00:00:00.000Z');
    expect(timeParam('1735689600', 'from', fallback).toISOString()).toBe('2025-01-01T00:00:00.000Z');
    expect(timeParam('2025-03-15T12:00:00Z', 'from', fallback).toISOString()).toBe('2025-03-15T12:00:00.000Z');
  });

  it('answers the fallback for an absent field', () => {
    expect(timeParam(undefined, 'from', fallback)).toBe(fallback);
    expect(timeParam(null, 'from', fallback)).toBe(fallback);
  });

  it('refuses anything else with a 400 naming the field', () => {
    for (const bad of ['yesterday', '', Number.NaN, {}]) {
      let thrown: unknown;
      try {
        timeParam(bad, 'effective_from', fallback);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(InvalidRequestError);
      expect(thrown).toMatchObject({ param: 'effective_from', code: 'invalid_value' });
    }
  });
});

describe('intParam', () => {
  it('reads a safe integer in range and refuses anything else naming the field', () => {
    expect(intParam(5, 'weight', 1)).toBe(5);
    expect(intParam(-3, 'adjustment_bps', -10_000, 100_000)).toBe(-3);
    for (const [bad, message] of [[0, "'weight' must be an integer >= 1"], [1.5, "'weight' must be an integer >= 1"], ['5', "'weight' must be an integer >= 1"]] as const) {
      expect(() => intParam(bad, 'weight', 1)).toThrow(message);
    }
    expect(() => intParam(10_001, 'batch_discount_bps', 0, 10_000)).toThrow(new InvalidRequestError("'batch_discount_bps' must be an integer from 0 to 10000", 'batch_discount_bps', 'invalid_value'));
  });
});
