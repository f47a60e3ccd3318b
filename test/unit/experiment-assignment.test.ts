/**
 * Sticky experiment assignment: deterministic per (experiment, subject), independent of the order
 * variants arrive in, proportional to weights, and independent across experiments.
 */
import { describe, expect, it } from 'vitest';
import { assignVariant, type WeightedVariant } from '../../domain/experiment-assignment.js';

const SUBJECTS = Array.from({ length: 20_000 }, (_, i) => `subject-${i}`);

function counts(experimentId: string, variants: readonly WeightedVariant[]): Map<string, number> {
  const out = new Map<string, number>(variants.map((v) => [v.name, 0]));
  for (const s of SUBJECTS) {
    const name = assignVariant(experimentId, s, variants).name;
    out.set(name, (out.get(name) ?? 0) + 1);
  }
  return out;
}

describe('assignVariant', () => {
  const variants: WeightedVariant[] = [
    { name: 'control', weight: 1 },
    { name: 'treatment-a', weight: 1 },
    { name: 'treatment-b', weight: 2 },
  ];

  it('is sticky: the same experiment and subject get the same variant on every call', () => {
    for (const s of SUBJECTS.slice(0, 500)) {
      const first = assignVariant('exp-1', s, variants);
      for (let i = 0; i < 3; i++) expect(assignVariant('exp-1', s, variants)).toBe(first);
      // A fresh but equal variant list (as a new database read would return) gives the same name.
      expect(assignVariant('exp-1', s, variants.map((v) => ({ ...v }))).name).toBe(first.name);
    }
  });

  it('returns one of the given variant objects', () => {
    for (const s of SUBJECTS.slice(0, 200)) expect(variants).toContain(assignVariant('exp-1', s, variants));
  });

  it('does not depend on the order of the variants', () => {
    const reversed = [...variants].reverse();
    const rotated = [variants[1]!, variants[2]!, variants[0]!];
    for (const s of SUBJECTS.slice(0, 2_000)) {
      const name = assignVariant('exp-order', s, variants).name;
      expect(assignVariant('exp-order', s, reversed).name).toBe(name);
      expect(assignVariant('exp-order', s, rotated).name).toBe(name);
    }
  });

  it('distributes 20k subjects roughly in proportion to the weights', () => {
    const weighted: WeightedVariant[] = [
      { name: 'a', weight: 10 },
      { name: 'b', weight: 30 },
      { name: 'c', weight: 60 },
    ];
    const total = weighted.reduce((n, v) => n + v.weight, 0);
    const got = counts('exp-dist', weighted);
    for (const v of weighted) {
      const share = (got.get(v.name) ?? 0) / SUBJECTS.length;
      expect(Math.abs(share - v.weight / total), `share of ${v.name}`).toBeLessThan(0.02);
    }
  });

  it('gives a variant with weight 0 no subjects while others have positive weight', () => {
    const got = counts('exp-zero', [
      { name: 'off', weight: 0 },
      { name: 'on', weight: 1 },
    ]);
    expect(got.get('off')).toBe(0);
    expect(got.get('on')).toBe(SUBJECTS.length);
  });

  it('shuffles subjects independently per experiment', () => {
    const half: WeightedVariant[] = [
      { name: 'a', weight: 1 },
      { name: 'b', weight: 1 },
    ];
    let same = 0;
    for (const s of SUBJECTS) {
      if (assignVariant('exp-x', s, half).name === assignVariant('exp-y', s, half).name) same++;
    }
    // Independent 50/50 assignments agree about half the time; a shared hash would agree always.
    expect(Math.abs(same / SUBJECTS.length - 0.5)).toBeLessThan(0.02);
  });

  it('does not confuse experiment and subject boundaries', () => {
    // "ab" + "c" and "a" + "bc" concatenate to the same text; the separator must keep them apart
    // in at least some cases across many subjects.
    const half: WeightedVariant[] = [
      { name: 'a', weight: 1 },
      { name: 'b', weight: 1 },
    ];
    let differs = 0;
    for (let i = 0; i < 200; i++) {
      if (assignVariant(`e${i}`, `x${i}`, half).name !== assignVariant(`e${i}x`, `${i}`, half).name) differs++;
    }
    expect(differs).toBeGreaterThan(0);
  });

  it('throws for an experiment with no variants', () => {
    expect(() => assignVariant('exp-empty', 's', [])).toThrow(/exp-empty.*no variants/);
  });

  it('throws when the total weight is zero', () => {
    expect(() =>
      assignVariant('exp-w0', 's', [
        { name: 'a', weight: 0 },
        { name: 'b', weight: 0 },
      ]),
    ).toThrow(/exp-w0.*no positive weight/);
  });
});
