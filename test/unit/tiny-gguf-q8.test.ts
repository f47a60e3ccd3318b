/**
 * The generated GGUF with Q8_0 weight matrices (what the bench-size model uses): llama.cpp loads
 * it, reads its tensors as Q8_0, and generates deterministically; matrices take ~34/128 of their
 * F32 size; a matrix whose inner dimension is not a multiple of 32 is refused.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getLlama, LlamaCompletion, type Llama } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BENCH_GGUF_OPTIONS, encodeTinyGguf, writeTinyGguf } from '../../workers/llama/tiny-gguf.js';

let dir: string;
let llama: Llama;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-q8-'));
  llama = await getLlama({ build: 'never', gpu: false });
});
afterAll(async () => {
  await llama?.dispose();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

describe('Q8_0 weights in the generated GGUF', () => {
  it('stores the matrices in about 34/128 of their F32 bytes', () => {
    const options = { embeddingLength: 128, feedForwardLength: 256 };
    const f32 = encodeTinyGguf(options).length;
    const q8 = encodeTinyGguf({ ...options, quantization: 'q8_0' }).length;
    expect(q8).toBeLessThan(f32 * 0.4);
    expect(q8).toBeGreaterThan(f32 * 0.2);
  });

  it('loads in llama.cpp as Q8_0 and generates the same tokens twice', async () => {
    const file = path.join(dir, 'q8.gguf');
    await writeTinyGguf(file, { embeddingLength: 128, feedForwardLength: 256, quantization: 'q8_0' });
    const model = await llama.loadModel({ modelPath: file });
    try {
      // GGML type 8 = Q8_0 for the matrices; the norm vectors stay F32 (type 0).
      const types = new Map(model.fileInfo.fullTensorInfo?.map((t) => [t.name, Number(t.ggmlType)]) ?? []);
      expect(types.get('blk.0.attn_q.weight')).toBe(8);
      expect(types.get('token_embd.weight')).toBe(8);
      expect(types.get('blk.0.attn_norm.weight')).toBe(0);
      const context = await model.createContext({ contextSize: 256, threads: 1 });
      try {
        const sequence = context.getSequence();
        const completion = new LlamaCompletion({ contextSequence: sequence });
        const run = async () => {
          await sequence.clearHistory();
          const tokens: number[] = [];
          await completion.generateCompletion('hello there', { maxTokens: 12, temperature: 0, onToken: (t) => { tokens.push(...t); } });
          return tokens;
        };
        const first = await run();
        expect(first.length).toBeGreaterThan(0);
        expect(await run()).toEqual(first);
      } finally {
        await context.dispose();
      }
    } finally {
      await model.dispose();
    }
  });

  it('refuses Q8_0 for a matrix whose inner dimension is not a multiple of 32', () => {
    expect(() => encodeTinyGguf({ embeddingLength: 48, headCount: 4, headCountKv: 4, quantization: 'q8_0' })).toThrow(/multiple of 32/);
  });

  it('describes a bench model of about 100M parameters in Q8_0', () => {
    const { embeddingLength: e = 0, blockCount: b = 0, feedForwardLength: f = 0 } = BENCH_GGUF_OPTIONS;
    const perBlock = 4 * e * e + 3 * e * f;
    expect(b * perBlock).toBeGreaterThan(90e6);
    expect(b * perBlock).toBeLessThan(110e6);
    expect(BENCH_GGUF_OPTIONS.quantization).toBe('q8_0');
  });
});
