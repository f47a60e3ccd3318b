/** The upload line splitter: lines as the bytes say, linear work however the bytes are chunked, a per-line byte limit. */
import { describe, expect, it } from 'vitest';
import { LineTooLongError, createLineSplitter } from '../../api/line-splitter.js';

function splitAll(chunks: Buffer[], max = 1 << 20): { lines: string[]; work: number } {
  const s = createLineSplitter(max);
  const lines: string[] = [];
  for (const c of chunks) for (const l of s.push(c)) lines.push(l.toString('utf8'));
  const last = s.end();
  if (last !== null) lines.push(last.toString('utf8'));
  return { lines, work: s.work };
}

describe('line splitter', () => {
  it('splits on newlines across chunk boundaries, empty lines kept, no trailing line after a final newline', () => {
    const text = 'ab\n\ncdé\nf';
    const whole = splitAll([Buffer.from(text)]).lines;
    expect(whole).toEqual(['ab', '', 'cdé', 'f']);
    const bytes = Buffer.from(text);
    const oneByOne = splitAll([...bytes].map((b) => Buffer.from([b]))).lines;
    expect(oneByOne).toEqual(whole);
    expect(splitAll([Buffer.from('x\ny\n')]).lines).toEqual(['x', 'y']);
    expect(splitAll([]).lines).toEqual([]);
  });

  it('does O(N) work for N one-byte chunks of one long line (counted, not timed)', () => {
    for (const n of [1_000, 10_000, 100_000]) {
      const chunks = Array.from({ length: n }, () => Buffer.from('a'));
      const { lines, work } = splitAll(chunks, n);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toHaveLength(n);
      // Each byte is scanned once and copied once when the line ends: 2N. A splitter that re-joins
      // the pending partial line on every chunk does about N²/2 (5·10⁹ for the last case).
      expect(work).toBeLessThanOrEqual(2 * n);
    }
  });

  it('does O(N) work for many short lines in one-byte chunks', () => {
    const text = Buffer.from('{"a":1}\n'.repeat(5_000));
    const { lines, work } = splitAll([...text].map((b) => Buffer.from([b])));
    expect(lines).toHaveLength(5_000);
    expect(work).toBeLessThanOrEqual(2 * text.length);
  });

  it('refuses a line over the limit as soon as it is that long, naming the line', () => {
    const s = createLineSplitter(10);
    expect(s.push(Buffer.from('ok\n'))).toHaveLength(1);
    s.push(Buffer.from('0123456789'));
    let caught: unknown = null;
    try {
      s.push(Buffer.from('x'));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(LineTooLongError);
    expect((caught as LineTooLongError).lineNo).toBe(2);
    // A line of exactly the limit passes.
    expect(createLineSplitter(3).push(Buffer.from('abc\n'))[0]?.toString()).toBe('abc');
  });
});
