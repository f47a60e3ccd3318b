import { describe, expect, it } from 'vitest';
import { createDeltaTracker } from '../../activities/backends/stream-deltas.js';

/** Feeds growing texts and returns the deltas emitted, with the final content. */
function run(stops: string[], texts: string[], content: string): string[] {
  const out: string[] = [];
  const t = createDeltaTracker(stops, (d) => out.push(d));
  for (const text of texts) t.update(text);
  t.finish(content);
  return out;
}

describe('stream deltas', () => {
  it('sends each new piece of text once, joined to the content', () => {
    const deltas = run([], ['He', 'Hello', 'Hello wor', 'Hello world'], 'Hello world');
    expect(deltas).toEqual(['He', 'llo', ' wor', 'ld']);
  });

  it('holds back text that may start a stop string, and never sends the stop', () => {
    const deltas = run(['END'], ['ab', 'abE', 'abEN', 'abENx', 'abENxEND', 'abENxENDmore'], 'abENx');
    expect(deltas.join('')).toBe('abENx');
    expect(deltas).toEqual(['ab', 'ENx']);
  });

  it('holds back an incomplete UTF-8 character', () => {
    const deltas = run([], ['a\uFFFD', 'aé'], 'aé');
    expect(deltas).toEqual(['a', 'é']);
  });

  it('sends nothing after a stop, even if the final content is longer than what was sent', () => {
    const deltas = run(['\n\n'], ['one\n', 'one\n\ntwo'], 'one');
    expect(deltas).toEqual(['one']);
  });
});
