/**
 * `generateOnSequence`'s sampling count (`onSampling`, which the llama.cpp backend's full-step
 * wait reads, full-batches.ts): a sequence counts from its first sampled token, not while its
 * prompt is set up or evaluated, and stops counting as soon as its loop ends, before its
 * evaluation is released; a generation that never sampled is never counted. The sequence is a
 * stand-in whose evaluation records each step in order (no model needed: no stops, no grammar).
 */
import { describe, expect, it } from 'vitest';
import type { LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { generateOnSequence, type GenerationInput } from '../../activities/backends/llama-cpp/generate-on-sequence.js';

/** A sequence whose evaluation yields `tokens` after its prompt, then ends (as at an end-of-generation token); `failFirst` throws instead of the first token. */
function sequenceOf(events: string[], tokens: number[], failFirst = false): LlamaContextSequence {
  return {
    evaluate: (prompt: Token[]) => ({
      [Symbol.asyncIterator]: async function* () {
        try {
          events.push(`prompt ${prompt.length}`);
          if (failFirst) throw new Error('prompt evaluation failed');
          for (const token of tokens) {
            events.push(`token ${token}`);
            yield token as Token;
          }
          events.push('end');
        } finally {
          events.push('released');
        }
      },
    }),
  } as unknown as LlamaContextSequence;
}

const model = { tokenizer: {} } as unknown as LlamaModel;

function input(events: string[], maxTokens: number): GenerationInput {
  return {
    prompt: { tokens: [1, 2, 3] as Token[], templateStops: [], stopTokens: new Set(), wrapper: null },
    params: { maxTokens, temperature: 0, topP: null, seed: 1, stop: null },
    signal: new AbortController().signal,
    onProgress: undefined,
    progressEveryTokens: 16,
    fault: new Promise<never>(() => undefined),
    faulted: () => false,
    grammar: null,
    tokenBias: null,
    onSampling: (sampling) => events.push(`sampling ${sampling}`),
  };
}

describe('generateOnSequence: the sampling count', () => {
  it('counts from the first sampled token and stops before the evaluation is released (cut at max_tokens)', async () => {
    const events: string[] = [];
    const outcome = await generateOnSequence(model, sequenceOf(events, [7, 8, 9, 10]), input(events, 3), []);
    expect(outcome.tokens).toEqual([7, 8, 9]);
    expect(outcome.finishReason).toBe('length');
    expect(events).toEqual(['prompt 3', 'token 7', 'sampling true', 'token 8', 'token 9', 'sampling false', 'released']);
  });

  it('stops counting when the evaluation ends by itself (an end-of-generation token)', async () => {
    const events: string[] = [];
    const outcome = await generateOnSequence(model, sequenceOf(events, [7, 8]), input(events, 16), []);
    expect(outcome.tokens).toEqual([7, 8]);
    expect(events).toEqual(['prompt 3', 'token 7', 'sampling true', 'token 8', 'end', 'released', 'sampling false']);
  });

  it('never counts a generation whose prompt evaluation failed', async () => {
    const events: string[] = [];
    await expect(generateOnSequence(model, sequenceOf(events, [7], true), input(events, 16), [])).rejects.toThrow(/prompt evaluation failed/);
    expect(events).toEqual(['prompt 3', 'released']);
  });
});
