/**
 * `lineSlots` (workflows/line-slots.ts): at most `limit` runs unsettled at once, the others
 * started in order as runs end (fulfilled or rejected, or throwing synchronously).
 */
import { describe, expect, it } from 'vitest';
import { lineSlots } from '../../workflows/line-slots.js';

function deferred() {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

describe('lineSlots', () => {
  it('refuses fewer than one slot (every run would wait forever)', () => {
    for (const limit of [0, -1, 1.5, Number.NaN]) expect(() => lineSlots(limit)).toThrow(RangeError);
    expect(() => lineSlots(1)).not.toThrow();
  });

  it('starts at most limit runs, the next in order as one ends, whichever way it ends', async () => {
    const slot = lineSlots(2);
    const started: number[] = [];
    const runs = Array.from({ length: 5 }, () => deferred());
    const ends = runs.map((d, i) => slot(() => {
      started.push(i);
      if (i === 3) throw new Error('sync throw');
      return d.promise.then(() => i);
    }));
    expect(started).toEqual([0, 1]);
    runs[1]?.reject(new Error('failed'));
    await expect(ends[1]).rejects.toThrow('failed');
    expect(started).toEqual([0, 1, 2]);
    runs[0]?.resolve();
    await expect(ends[0]).resolves.toBe(0);
    // 3 throws as it starts: its slot frees at once, and 4 starts.
    await expect(ends[3]).rejects.toThrow('sync throw');
    expect(started).toEqual([0, 1, 2, 3, 4]);
    runs[2]?.resolve();
    runs[4]?.resolve();
    await expect(Promise.all([ends[2], ends[4]])).resolves.toEqual([2, 4]);
  });

  it('keeps the most runs unsettled at once (its peak), never above the limit', async () => {
    const slot = lineSlots(3);
    expect(slot.peak).toBe(0);
    const first = deferred();
    const a = slot(() => first.promise);
    expect(slot.peak).toBe(1);
    first.resolve();
    await a;
    // One at a time so far: the peak stays 1 until runs overlap.
    expect(slot.peak).toBe(1);
    const runs = Array.from({ length: 5 }, () => deferred());
    const ends = runs.map((d) => slot(() => d.promise));
    expect(slot.peak).toBe(3);
    for (const d of runs) d.resolve();
    await Promise.all(ends);
    expect(slot.peak).toBe(3);
  });
});
