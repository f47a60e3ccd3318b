/**
 * Batched decoding on real llama.cpp (the generated tiny model, 1 thread): requests that generate
 * at the same time share every decode step (activities/backends/llama-cpp/full-batches.ts), and
 * the wait for a missing sequence is bounded. Counts of steps, never timings.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { getLlama, type BatchItem, type Llama, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createLlamaCppBackend, type LlamaCppBackend } from '../../activities/backends/llama-cpp.js';
import { createFullBatchStrategy, fairShares } from '../../activities/backends/llama-cpp/full-batches.js';
import type { GenerateRequest } from '../../activities/backends/types.js';
import { ensureTinyGguf } from '../../workers/llama/tiny-gguf.js';

const SLOTS = 4;

/** A greedy request (the same prompt: every concurrent answer is the same tokens). */
function request(maxTokens: number): GenerateRequest {
  return {
    messages: [{ role: 'user', content: 'hello the world, how are you?' }],
    params: { maxTokens, temperature: 0, topP: null, seed: null, stop: null },
    signal: new AbortController().signal,
  };
}

/** A queued decode of `n` tokens. */
const item = (n: number): BatchItem => ({ tokens: Array.from({ length: n }, (_, i) => i as Token), logits: [], evaluationPriority: 5 });

describe('full decode batches (pure)', () => {
  it('shares a step between items, cutting a long prompt and filling what is left in order', () => {
    const items = [item(1), item(300), item(1), item(100)];
    const shares = fairShares(items, 256).map((s) => s.processAmount);
    expect(shares.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(256);
    expect(shares).toEqual([1, 190, 1, 64]);
    expect(fairShares([item(1), item(1)], 512).map((s) => s.processAmount)).toEqual([1, 1]);
  });

  it('waits for every generating sequence, then goes with what is queued after maxWaits asks', () => {
    const batches: number[] = [];
    const strategy = createFullBatchStrategy({ generating: () => 3, maxWaits: 4, onBatch: (n) => batches.push(n) });
    const two = [item(1), item(1)];
    const answers = Array.from({ length: 5 }, () => strategy({ items: two, size: 512 }).length);
    expect(answers).toEqual([0, 0, 0, 0, 2]);
    expect(strategy({ items: [...two, item(1)], size: 512 })).toHaveLength(3);
    expect(batches).toEqual([2, 3]);
    // A full queue never waits.
    expect(strategy({ items: [item(1), item(1), item(1)], size: 512 })).toHaveLength(3);
  });
});

describe('llama.cpp backend decode steps', () => {
  let dir: string;
  let llama: Llama;
  let backend: LlamaCppBackend;
  const steps: number[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-llama-batching-'));
    const modelPath = await ensureTinyGguf(dir);
    llama = await getLlama({ build: 'never', gpu: false });
    backend = await createLlamaCppBackend({ modelPath, slots: SLOTS, threads: 1, contextSize: 256, llama, fullSteps: true, onBatch: (n) => steps.push(n) });
  });

  afterAll(async () => {
    await backend?.close();
    await llama?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('decodes every concurrent generation in every step', async () => {
    const alone = await backend.generate(request(32));
    const tokens = alone.completionTokens;
    expect(tokens).toBeGreaterThan(8);
    steps.length = 0;
    const results = await Promise.all(Array.from({ length: SLOTS }, () => backend.generate(request(32))));
    for (const result of results) expect(result).toEqual(alone);
    // One step for the prompts and one per generated token but the last, each with all 4
    // sequences (node-llama-cpp's default left one out of each step: `tokens × 4 / 3` steps of 3).
    // Bounds with room for a step that went without a late sequence on a loaded machine (the wait
    // is bounded); the default dispatch gives none of 4 and ~tokens × 4 / 3 steps, out of both.
    expect(steps.filter((n) => n === SLOTS).length).toBeGreaterThanOrEqual(Math.floor(0.8 * tokens));
    expect(steps.length).toBeLessThanOrEqual(Math.ceil(1.2 * tokens) + 1);
  });

  it('two generations share their steps, the second starting mid-way through the first', async () => {
    steps.length = 0;
    const first = backend.generate(request(32));
    await new Promise((resolve) => setImmediate(resolve));
    const second = backend.generate(request(32));
    const [a, b] = await Promise.all([first, second]);
    expect(b).toEqual(a);
    // Without full steps, two sequences decode one at a time: as many steps as tokens of both.
    expect(steps.filter((n) => n === 2).length).toBeGreaterThanOrEqual(a.completionTokens / 2);
    expect(steps.length).toBeLessThan(a.completionTokens + b.completionTokens);
  });
});

describe('llama.cpp backend with SLUICE_LLAMA_FULL_STEPS off (the default)', () => {
  it('decodes the same completions with node-llama-cpp\'s default batching, its steps not the strategy\'s', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-llama-default-steps-'));
    const llama = await getLlama({ build: 'never', gpu: false });
    const steps: number[] = [];
    const full = await createLlamaCppBackend({ modelPath: await ensureTinyGguf(dir), slots: SLOTS, threads: 1, contextSize: 256, llama, fullSteps: true });
    const plain = await createLlamaCppBackend({ modelPath: await ensureTinyGguf(dir), slots: SLOTS, threads: 1, contextSize: 256, llama, onBatch: (n) => steps.push(n) });
    try {
      const expected = await full.generate(request(32));
      const results = await Promise.all(Array.from({ length: SLOTS }, () => plain.generate(request(32))));
      for (const result of results) expect(result).toEqual(expected);
      expect(steps).toEqual([]);
    } finally {
      await full.close();
      await plain.close();
      await llama.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
