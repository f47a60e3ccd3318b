/**
 * The one validator for sampling values (domain/sampling-params.ts): at entry (chat body, batch
 * lines, experiment variants) and at the backend boundary. Every refusal names the field.
 */
import { describe, expect, it } from 'vitest';
import {
  SamplingParamError,
  checkGenerateInput,
  samplingNumber,
  samplingStop,
  validateVariantOverrides,
} from '../../domain/sampling-params.js';

function refusal(fn: () => unknown): SamplingParamError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SamplingParamError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const POISON: unknown[] = ['hot', '1', true, [], {}, Number.NaN, Number.POSITIVE_INFINITY, -Number.POSITIVE_INFINITY];

describe('samplingNumber', () => {
  it('accepts the bounds and treats null/undefined as not given', () => {
    expect(samplingNumber('temperature', 0)).toBe(0);
    expect(samplingNumber('temperature', 2)).toBe(2);
    expect(samplingNumber('top_p', 1)).toBe(1);
    expect(samplingNumber('seed', -(2 ** 31))).toBe(-(2 ** 31));
    expect(samplingNumber('max_tokens', 1)).toBe(1);
    expect(samplingNumber('temperature', undefined)).toBeNull();
    expect(samplingNumber('temperature', null)).toBeNull();
  });

  it.each(POISON)('refuses %s as a temperature with invalid_type, naming the field', (value) => {
    const err = refusal(() => samplingNumber('temperature', value, 'variants[1].overrides.temperature'));
    expect(err).toMatchObject({ param: 'variants[1].overrides.temperature', code: 'invalid_type' });
    expect(err.message).toContain('variants[1].overrides.temperature');
  });

  it('refuses values out of range with invalid_value', () => {
    expect(refusal(() => samplingNumber('temperature', 2.01))).toMatchObject({ param: 'temperature', code: 'invalid_value' });
    expect(refusal(() => samplingNumber('temperature', -0.1))).toMatchObject({ code: 'invalid_value' });
    expect(refusal(() => samplingNumber('top_p', 1.5))).toMatchObject({ param: 'top_p', code: 'invalid_value' });
    expect(refusal(() => samplingNumber('max_tokens', 0))).toMatchObject({ param: 'max_tokens', code: 'invalid_value' });
    expect(refusal(() => samplingNumber('seed', 2 ** 31))).toMatchObject({ code: 'invalid_value' });
  });

  it('says a bounded range by both ends and an unbounded one by the bound it broke', () => {
    expect(refusal(() => samplingNumber('temperature', 3))).toMatchObject({ message: "'temperature' must be between 0 and 2, got 3" });
    expect(refusal(() => samplingNumber('max_tokens', 0))).toMatchObject({ message: "'max_tokens' must be >= 1, got 0" });
    expect(refusal(() => samplingNumber('max_tokens', 1e300))).toMatchObject({ message: "'max_tokens' must be at most 9007199254740991, got 1e+300" });
  });

  it('refuses fractions where an integer is needed', () => {
    expect(refusal(() => samplingNumber('max_tokens', 1.5))).toMatchObject({ code: 'invalid_type', message: expect.stringContaining('a fraction') });
    expect(refusal(() => samplingNumber('seed', 0.5))).toMatchObject({ code: 'invalid_type' });
  });
});

describe('samplingStop', () => {
  it('accepts a string or up to four non-empty strings', () => {
    expect(samplingStop('\n')).toEqual(['\n']);
    expect(samplingStop(['a', 'b', 'c', 'd'])).toEqual(['a', 'b', 'c', 'd']);
    expect(samplingStop(null)).toBeNull();
  });
  it('refuses the rest', () => {
    expect(refusal(() => samplingStop(5))).toMatchObject({ param: 'stop', code: 'invalid_type' });
    expect(refusal(() => samplingStop(['a', 'b', 'c', 'd', 'e']))).toMatchObject({ code: 'invalid_value' });
    expect(refusal(() => samplingStop(['a', 1]))).toMatchObject({ code: 'invalid_value' });
    expect(refusal(() => samplingStop(''))).toMatchObject({ code: 'invalid_value' });
  });
});

describe('validateVariantOverrides', () => {
  const at = 'variants[1].overrides';
  it('keeps valid overrides, drops nulls, and takes a missing object as none', () => {
    expect(validateVariantOverrides({ model: 'm2', temperature: 0.5, top_p: 0.9, max_tokens: 32 }, at)).toEqual({ model: 'm2', temperature: 0.5, top_p: 0.9, max_tokens: 32 });
    expect(validateVariantOverrides({ temperature: null }, at)).toEqual({});
    expect(validateVariantOverrides(undefined, at)).toEqual({});
  });
  it('refuses the poison pill and every bad type or range, naming the field inside the variant', () => {
    expect(refusal(() => validateVariantOverrides({ temperature: 'hot' }, at))).toMatchObject({ param: `${at}.temperature`, code: 'invalid_type' });
    expect(refusal(() => validateVariantOverrides({ top_p: 7 }, at))).toMatchObject({ param: `${at}.top_p`, code: 'invalid_value' });
    expect(refusal(() => validateVariantOverrides({ max_tokens: '100' }, at))).toMatchObject({ param: `${at}.max_tokens`, code: 'invalid_type' });
    expect(refusal(() => validateVariantOverrides({ max_tokens: 0 }, at))).toMatchObject({ param: `${at}.max_tokens`, code: 'invalid_value' });
    expect(refusal(() => validateVariantOverrides({ model: 7 }, at))).toMatchObject({ param: `${at}.model`, code: 'invalid_type' });
    expect(refusal(() => validateVariantOverrides({ model: ' ' }, at))).toMatchObject({ param: `${at}.model`, code: 'invalid_value' });
    expect(refusal(() => validateVariantOverrides({ seed: 1 }, at))).toMatchObject({ param: `${at}.seed`, code: 'invalid_value' });
    expect(refusal(() => validateVariantOverrides('hot', at))).toMatchObject({ param: at, code: 'invalid_type' });
    expect(refusal(() => validateVariantOverrides([1], at))).toMatchObject({ param: at, code: 'invalid_type' });
  });
});

describe('checkGenerateInput (the backend boundary)', () => {
  const messages = [{ role: 'user', content: 'hi' }];
  const params = { maxTokens: 8, temperature: 0, topP: null, seed: null, stop: null };
  it('lets a resolved, valid request through', () => {
    expect(checkGenerateInput({ messages, params })).toBeNull();
    expect(checkGenerateInput({ messages, params: { ...params, topP: 0.5, seed: 3, stop: ['x'] } })).toBeNull();
  });
  it.each([
    ['a string temperature', { ...params, temperature: 'hot' }, 'temperature'],
    ['a missing temperature', { ...params, temperature: null }, 'temperature'],
    ['a NaN top_p', { ...params, topP: Number.NaN }, 'top_p'],
    ['a fractional max_tokens', { ...params, maxTokens: 2.5 }, 'max_tokens'],
    ['a missing max_tokens', { ...params, maxTokens: undefined }, 'max_tokens'],
    ['a string seed', { ...params, seed: '1' }, 'seed'],
    ['a numeric stop', { ...params, stop: [1] }, 'stop'],
    ['no params at all', null, 'params'],
  ])('refuses %s', (_name, bad, param) => {
    expect(checkGenerateInput({ messages, params: bad })).toMatchObject({ param });
  });
  it('refuses messages that are not role + text', () => {
    expect(checkGenerateInput({ messages: [], params })).toMatchObject({ param: 'messages' });
    expect(checkGenerateInput({ messages: [{ role: 'user', content: { text: 'x' } }], params })).toMatchObject({ param: 'messages[0]' });
    expect(checkGenerateInput({ messages: [{ role: 'root', content: 'x' }], params })).toMatchObject({ param: 'messages[0]' });
    expect(checkGenerateInput({ messages: 'hi', params })).toMatchObject({ param: 'messages' });
  });
});
