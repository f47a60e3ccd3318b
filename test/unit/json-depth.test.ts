/** The iterative nesting check where JSON enters (HTTP bodies, batch lines). */
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, jsonDeeperThan } from '../../domain/json-depth.js';

/** `levels` nested arrays. */
const nested = (levels: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
};

describe('jsonDeeperThan', () => {
  it('counts objects and arrays, not scalars', () => {
    expect(jsonDeeperThan(1, 0)).toBe(false);
    expect(jsonDeeperThan({ a: [1] }, 2)).toBe(false);
    expect(jsonDeeperThan({ a: [1] }, 1)).toBe(true);
  });

  it('accepts exactly the limit and refuses one more', () => {
    expect(jsonDeeperThan(nested(MAX_JSON_DEPTH))).toBe(false);
    expect(jsonDeeperThan(nested(MAX_JSON_DEPTH + 1))).toBe(true);
  });

  it('walks a million levels without overflowing the stack', () => {
    expect(jsonDeeperThan(nested(1_000_000))).toBe(true);
  });
});
