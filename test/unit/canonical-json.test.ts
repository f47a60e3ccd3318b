/** Canonical JSON: the same value always serialises to the same text, whatever the key order. */
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../domain/canonical-json.js';

/** Same data with object keys inserted in reverse order at every depth. */
function reverseKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reverseKeys);
  if (v === null || typeof v !== 'object' || v instanceof Date) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).reverse()) out[k] = reverseKeys((v as Record<string, unknown>)[k]);
  return out;
}

const sample = {
  tenant: 't-1',
  limits: { tokens_per_minute: 1000, requests_per_minute: 60, allowed_models: ['b', 'a'], nested: { z: 1, a: { y: [{ q: 1, p: 2 }], x: null } } },
  active: true,
  amount: -12.5,
  name: 'Zoë "quoted" \\ \n',
};

describe('canonicalJson', () => {
  it('is independent of key order at every depth', () => {
    const reversed = reverseKeys(sample);
    expect(JSON.stringify(reversed)).not.toBe(JSON.stringify(sample)); // the orders really differ
    expect(canonicalJson(reversed)).toBe(canonicalJson(sample));
  });

  it('sorts keys and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 2], c: 'x y' } })).toBe('{"a":{"c":"x y","d":[1,2]},"b":1}');
    expect(canonicalJson([{ b: 2, a: 1 }, { d: 4, c: 3 }])).toBe('[{"a":1,"b":2},{"c":3,"d":4}]');
  });

  it('keeps the order of arrays', () => {
    expect(canonicalJson([3, 1, 2])).not.toBe(canonicalJson([1, 2, 3]));
    expect(canonicalJson({ list: ['b', 'a'] })).toBe('{"list":["b","a"]}');
  });

  it('parses back to the same data as JSON.stringify does', () => {
    expect(JSON.parse(canonicalJson(sample))).toEqual(JSON.parse(JSON.stringify(sample)));
  });

  it('drops undefined properties, so they hash like absent ones', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
    expect(canonicalJson({ outer: { a: undefined, b: 2 } })).toBe('{"outer":{"b":2}}');
  });

  it('writes undefined in an array and at the top as null, like JSON', () => {
    expect(canonicalJson([1, undefined, 3])).toBe('[1,null,3]');
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('distinguishes null from an absent property', () => {
    expect(canonicalJson({ a: null })).not.toBe(canonicalJson({}));
  });

  it('writes Dates as ISO 8601 strings in UTC, at any depth', () => {
    const at = new Date(Date.UTC(2026, 10, 21, 8, 5, 3, 7));
    expect(canonicalJson(at)).toBe('"2026-11-21T08:05:03.007Z"');
    expect(canonicalJson({ at, list: [at] })).toBe('{"at":"2026-11-21T08:05:03.007Z","list":["2026-11-21T08:05:03.007Z"]}');
    expect(canonicalJson({ at })).toBe(canonicalJson({ at: at.toISOString() }));
  });

  it('escapes strings and keys as JSON does', () => {
    expect(canonicalJson({ 'k"ey': 'line\nbreak' })).toBe('{"k\\"ey":"line\\nbreak"}');
  });

  it('writes scalars as JSON', () => {
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson(true)).toBe('true');
    expect(canonicalJson(0)).toBe('0');
    expect(canonicalJson(-1.25)).toBe('-1.25');
    expect(canonicalJson('s')).toBe('"s"');
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['NaN nested in an object', { a: { b: Number.NaN } }],
    ['Infinity nested in an array', [1, [2, Number.POSITIVE_INFINITY]]],
  ])('throws for %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(TypeError);
  });

  it('differs for different values', () => {
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: '1' }));
    expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
    expect(canonicalJson({ a: { b: 1 } })).not.toBe(canonicalJson({ 'a.b': 1 }));
  });
});
