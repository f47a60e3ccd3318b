import { describe, expect, it } from 'vitest';
import { MAX_RULE_VALUES, metadataMatches, validateMetadataRule } from '../../domain/experiment-targeting.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { requestMetadata } from '../../domain/request-metadata.js';

/** The InvalidRequestError `fn` throws (fails the test when it throws nothing or something else). */
function refusal(fn: () => unknown): InvalidRequestError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidRequestError) return err;
    throw err;
  }
  throw new Error('expected an InvalidRequestError');
}

describe('metadata targeting rule: matching', () => {
  it('needs every key of the rule, with the value or one of the listed values', () => {
    const rule = { plan: 'pro', region: ['eu', 'us'] };
    expect(metadataMatches(rule, { plan: 'pro', region: 'eu' })).toBe(true);
    expect(metadataMatches(rule, { plan: 'pro', region: 'us', other: 'x' })).toBe(true);
    expect(metadataMatches(rule, { plan: 'pro', region: 'apac' })).toBe(false);
    expect(metadataMatches(rule, { plan: 'free', region: 'eu' })).toBe(false);
    expect(metadataMatches(rule, { plan: 'pro' })).toBe(false);
    expect(metadataMatches(rule, {})).toBe(false);
    expect(metadataMatches(rule, null)).toBe(false);
  });

  it('compares exactly (no case folding, no prefix) and reads own keys only', () => {
    expect(metadataMatches({ plan: 'pro' }, { plan: 'Pro' })).toBe(false);
    expect(metadataMatches({ plan: 'pro' }, { plan: 'pro ' })).toBe(false);
    // `constructor` and `toString` exist on every object's prototype: not request metadata.
    expect(metadataMatches({ constructor: 'x' }, {})).toBe(false);
    expect(metadataMatches({ toString: ['x'] }, { plan: 'pro' })).toBe(false);
    const own = requestMetadata(JSON.parse('{"__proto__": "p"}'));
    expect(metadataMatches(validateMetadataRule(JSON.parse('{"__proto__": "p"}')), own)).toBe(true);
  });

  it('a stored rule of another shape (written past the API) matches nothing', () => {
    expect(metadataMatches({ plan: 7 } as unknown as Record<string, string>, { plan: '7' })).toBe(false);
  });
});

describe('metadata targeting rule: validation at creation', () => {
  it('keeps strings and lists (de-duplicated)', () => {
    expect(validateMetadataRule({ plan: 'pro', region: ['eu', 'us', 'eu'] })).toEqual({ plan: 'pro', region: ['eu', 'us'] });
  });

  it.each([
    ['not an object', 'x', 'targeting.metadata', 'invalid_type'],
    ['an array', ['a'], 'targeting.metadata', 'invalid_type'],
    ['empty (use no rule instead)', {}, 'targeting.metadata', 'invalid_value'],
    ['17 keys', Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])), 'targeting.metadata', 'invalid_value'],
    ['a 65-character key', { ['k'.repeat(65)]: 'v' }, 'targeting.metadata', 'invalid_value'],
    ['an empty key', { '': 'v' }, 'targeting.metadata', 'invalid_value'],
    ['a 513-character value', { plan: 'v'.repeat(513) }, 'targeting.metadata.plan', 'invalid_value'],
    ['a number', { plan: 1 }, 'targeting.metadata.plan', 'invalid_type'],
    ['null', { plan: null }, 'targeting.metadata.plan', 'invalid_type'],
    ['an empty list', { plan: [] }, 'targeting.metadata.plan', 'invalid_value'],
    ['too long a list', { plan: Array.from({ length: MAX_RULE_VALUES + 1 }, (_, i) => `v${i}`) }, 'targeting.metadata.plan', 'invalid_value'],
    ['a number in a list', { plan: ['a', 2] }, 'targeting.metadata.plan[1]', 'invalid_type'],
    ['a 513-character value in a list', { plan: ['a', 'v'.repeat(513)] }, 'targeting.metadata.plan[1]', 'invalid_value'],
  ])('refuses %s, naming the field', (_what, rule, param, code) => {
    const err = refusal(() => validateMetadataRule(rule));
    expect(err.param).toBe(param);
    expect(err.code).toBe(code);
  });

  it('accepts the bounds themselves: 16 keys, 64-character keys, 512-character values', () => {
    const rule = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`${i}`.padEnd(64, 'k'), 'v'.repeat(512)]));
    expect(Object.keys(validateMetadataRule(rule))).toHaveLength(16);
  });
});

describe('request metadata', () => {
  it('is string pairs within OpenAI bounds, else a 400 naming it', () => {
    expect(requestMetadata(undefined)).toBeNull();
    expect(requestMetadata(null)).toBeNull();
    expect(requestMetadata({ a: 'b' })).toEqual({ a: 'b' });
    expect(refusal(() => requestMetadata({ a: 1 })).param).toBe('metadata.a');
    expect(refusal(() => requestMetadata({ a: 'v'.repeat(513) })).param).toBe('metadata.a');
    expect(refusal(() => requestMetadata([])).param).toBe('metadata');
    expect(refusal(() => requestMetadata(Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])))).param).toBe('metadata');
    expect(refusal(() => requestMetadata({ ['k'.repeat(65)]: 'v' })).param).toBe('metadata');
  });
});
