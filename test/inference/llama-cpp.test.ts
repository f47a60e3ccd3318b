/**
 * Real llama.cpp on the generated tiny model. The model's output is gibberish, so these tests only
 * assert shapes, counts and equalities, never the generated text itself.
 *
 * Threads: 1. On the 2-core CI VM, 2 threads made the tiny model ~20x slower than 1 (thread sync
 * costs more than the math), and the default thread count several hundred times slower.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { getLlama, type Llama } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createLlamaCppBackend, type LlamaCppBackend } from '../../activities/backends/llama-cpp.js';
import { formatPlainChatPrompt } from '../../activities/backends/llama-cpp/prompt-preparer.js';
import { SlotQueue } from '../../activities/backends/llama-cpp/slot-queue.js';
import { BackendError, InterruptedGeneration, type ChatMessage, type GenerateParams, type GenerateRequest } from '../../activities/backends/types.js';
import { ensureTinyGguf, writeTinyGguf } from '../../workers/llama/tiny-gguf.js';

const THREADS = 1;
const CONTEXT_SIZE = 256;

const messages: ChatMessage[] = [
  { role: 'system', content: 'You are a durable model.' },
  { role: 'user', content: 'hello the world, how are you? ünïcode 你好' },
];

/** A request with greedy defaults; `params` overrides them. */
function request(params: Partial<GenerateParams> = {}, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    messages,
    params: { maxTokens: 24, temperature: 0, topP: null, seed: null, stop: null, ...params },
    signal: new AbortController().signal,
    ...extra,
  };
}

/** SHA-256 of a file, hex. */
async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

let dir: string;
let modelPath: string;
let llama: Llama;
let backend: LlamaCppBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-llama-'));
  modelPath = await ensureTinyGguf(dir);
  llama = await getLlama({ build: 'never', gpu: false });
  backend = await createLlamaCppBackend({ modelPath, slots: 4, threads: THREADS, contextSize: CONTEXT_SIZE, llama });
});

afterAll(async () => {
  await backend?.close();
  await llama?.dispose();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('tiny GGUF generator', () => {
  it('writes byte-identical files across runs', async () => {
    const first = join(dir, 'a.gguf');
    const second = join(dir, 'b.gguf');
    await writeTinyGguf(first);
    await writeTinyGguf(second);
    expect(await sha256(first)).toBe(await sha256(second));
    expect(await sha256(modelPath)).toBe(await sha256(first));
  });

  it('changes with the seed', async () => {
    const other = join(dir, 'seed-7.gguf');
    await writeTinyGguf(other, { seed: 7 });
    expect(await sha256(other)).not.toBe(await sha256(modelPath));
  });

  it('ensureTinyGguf reuses an existing file', async () => {
    const before = await stat(modelPath);
    expect(await ensureTinyGguf(dir)).toBe(modelPath);
    expect((await stat(modelPath)).mtimeMs).toBe(before.mtimeMs);
  });
});

describe('llama.cpp backend', () => {
  it('reports the per-sequence context size', () => {
    expect(backend.contextSize).toBe(CONTEXT_SIZE);
  });

  it('counts prompt tokens with the tokenizer and bounds completion tokens', async () => {
    const result = await backend.generate(request({ maxTokens: 24 }));
    expect(result.promptTokens).toBe(backend.countTokens(formatPlainChatPrompt(messages)));
    expect(result.completionTokens).toBeGreaterThan(0);
    expect(result.completionTokens).toBeLessThanOrEqual(24);
    if (result.finishReason === 'length') expect(result.completionTokens).toBe(24);
    expect(typeof result.content).toBe('string');
  });

  it('stops at exactly maxTokens with finishReason length', async () => {
    const result = await backend.generate(request({ maxTokens: 3, stop: null }));
    expect(result).toMatchObject({ finishReason: 'length', completionTokens: 3 });
  });

  it('is deterministic at temperature 0, alone and on 4 concurrent slots', async () => {
    const first = await backend.generate(request());
    const second = await backend.generate(request());
    expect(second).toEqual(first);
    const concurrent = await Promise.all([1, 2, 3, 4].map(() => backend.generate(request())));
    for (const result of concurrent) expect(result).toEqual(first);
  });

  it('is reproducible with a seed at temperature > 0', async () => {
    const params = { temperature: 0.9, topP: 0.95, seed: 1234 };
    expect(await backend.generate(request(params))).toEqual(await backend.generate(request(params)));
  });

  it('cuts the content before a stop string', async () => {
    const full = await backend.generate(request({ maxTokens: 48 }));
    const match = /[a-z]{2}/.exec(full.content.slice(4));
    expect(match).not.toBeNull();
    const stop = match![0];
    const stopped = await backend.generate(request({ maxTokens: 48, stop: [stop] }));
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.content).toBe(full.content.slice(0, full.content.indexOf(stop)));
    expect(stopped.completionTokens).toBeLessThan(full.completionTokens);
  });

  it('reports progress up to the final count', async () => {
    const seen: number[] = [];
    const result = await backend.generate(request({ maxTokens: 40 }, { onProgress: (n) => seen.push(n) }));
    expect(seen.length).toBeGreaterThan(1);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(seen.at(-1)).toBe(result.completionTokens);
  });

  it('rejects prompt + maxTokens beyond the context with context_length', async () => {
    const long = request({ maxTokens: 8 }, { messages: [{ role: 'user', content: 'hello '.repeat(300) }] });
    await expect(backend.generate(long)).rejects.toMatchObject({ name: 'BackendError', kind: 'context_length' });
    const promptTokens = backend.countTokens(formatPlainChatPrompt(messages));
    const tooMany = request({ maxTokens: CONTEXT_SIZE - promptTokens + 1 });
    await expect(backend.generate(tooMany)).rejects.toBeInstanceOf(BackendError);
    const exact = await backend.generate(request({ maxTokens: CONTEXT_SIZE - promptTokens, stop: null }));
    expect(exact.completionTokens).toBeLessThanOrEqual(CONTEXT_SIZE - promptTokens);
  });

  it('aborts mid-generation and leaves the slot clean', async () => {
    const reference = await backend.generate(request());
    const controller = new AbortController();
    let last = 0;
    const aborted = backend.generate(
      request(
        { maxTokens: 150 },
        {
          signal: controller.signal,
          onProgress: (n) => {
            last = n;
            if (n >= 16) controller.abort();
          },
        },
      ),
    );
    // The abort reason, with what the interrupted generation spent: its prompt and the tokens so far.
    const err = await aborted.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedGeneration);
    expect((err as InterruptedGeneration).cause).toMatchObject({ name: 'AbortError' });
    expect((err as InterruptedGeneration).consumed).toEqual({ promptTokens: reference.promptTokens, completionTokens: expect.any(Number) });
    expect((err as InterruptedGeneration).consumed.completionTokens).toBeGreaterThanOrEqual(16);
    expect(last).toBeLessThan(150);
    const results = await Promise.all([1, 2, 3, 4].map(() => backend.generate(request())));
    for (const result of results) expect(result).toEqual(reference);
  });
});

describe('llama.cpp backend queueing', () => {
  let single: LlamaCppBackend;

  beforeAll(async () => {
    single = await createLlamaCppBackend({ modelPath, slots: 1, threads: THREADS, contextSize: CONTEXT_SIZE, llama });
  });

  afterAll(async () => {
    await single?.close();
  });

  it('serves more requests than slots in arrival order', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    const runs = [0, 1, 2, 3].map(async (id) => {
      const onProgress = (): void => {
        if (!started.includes(id)) started.push(id);
      };
      const result = await single.generate(request({ maxTokens: 20 }, { onProgress }));
      finished.push(id);
      return result;
    });
    const results = await Promise.all(runs);
    expect(started).toEqual([0, 1, 2, 3]);
    expect(finished).toEqual([0, 1, 2, 3]);
    for (const result of results) expect(result).toEqual(results[0]);
  });

  it('drops an aborted waiter from the queue', async () => {
    const controller = new AbortController();
    const running = single.generate(request({ maxTokens: 20 }));
    const queued = single.generate(request({}, { signal: controller.signal }));
    const after = single.generate(request({ maxTokens: 20 }));
    controller.abort();
    await expect(queued).rejects.toMatchObject({ name: 'AbortError' });
    const [a, b] = await Promise.all([running, after]);
    expect(b).toEqual(a);
  });

  it('uses the chat wrapper when the model has a chat template', async () => {
    const path = join(dir, 'chatml.gguf');
    const chatTemplate =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}" +
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    await writeTinyGguf(path, { chatTemplate });
    const templated = await createLlamaCppBackend({ modelPath: path, slots: 1, threads: THREADS, contextSize: CONTEXT_SIZE, llama });
    try {
      const result = await templated.generate(request({ maxTokens: 8 }));
      expect(result.completionTokens).toBeLessThanOrEqual(8);
      expect(result.promptTokens).not.toBe(templated.countTokens(formatPlainChatPrompt(messages)));
      expect(result.promptTokens).toBeGreaterThan(templated.countTokens(messages.map((m) => m.content).join('')));
    } finally {
      await templated.close();
    }
    await expect(templated.generate(request())).rejects.toMatchObject({ kind: 'unavailable' });
  });
});

describe('SlotQueue', () => {
  /** A queue whose one item is taken, so every acquire waits. */
  async function busyQueue() {
    const queue = new SlotQueue(['a']);
    await queue.acquire(new AbortController().signal);
    return queue;
  }

  /** Releases the item `n` times, letting each waiter it reaches record its turn. */
  async function releaseEach(queue: SlotQueue<string>, n: number) {
    for (let i = 0; i < n; i++) {
      queue.release('a');
      await new Promise((r) => setImmediate(r));
    }
  }

  it('hands released items to waiters first come, first served', async () => {
    const queue = new SlotQueue(['a']);
    const signal = new AbortController().signal;
    expect(await queue.acquire(signal)).toBe('a');
    const order: string[] = [];
    const first = queue.acquire(signal).then((item) => order.push(`first:${item}`));
    const second = queue.acquire(signal).then((item) => order.push(`second:${item}`));
    expect(queue.waiting).toBe(2);
    queue.release('a');
    await first;
    queue.release('a');
    await second;
    expect(order).toEqual(['first:a', 'second:a']);
  });

  it('serves every waiting interactive request before the batch lines that waited longer', async () => {
    const queue = await busyQueue();
    const signal = new AbortController().signal;
    const order: string[] = [];
    const waits = [
      queue.acquire(signal, 'batch').then(() => order.push('batch-1')),
      queue.acquire(signal, 'batch').then(() => order.push('batch-2')),
      queue.acquire(signal).then(() => order.push('interactive-1')),
      queue.acquire(signal, 'interactive').then(() => order.push('interactive-2')),
    ];
    const aborted = new AbortController();
    const gone = queue.acquire(aborted.signal, 'batch');
    aborted.abort(new Error('cancelled'));
    await expect(gone).rejects.toThrow('cancelled');
    expect(queue.waiting).toBe(4);
    await releaseEach(queue, 4);
    await Promise.all(waits);
    expect(order).toEqual(['interactive-1', 'interactive-2', 'batch-1', 'batch-2']);
  });

  it('lets batch lines of different tenants take turns, first come first served within each', async () => {
    const queue = await busyQueue();
    const signal = new AbortController().signal;
    const order: string[] = [];
    const waits = [
      ...['A1', 'A2', 'A3'].map((n) => queue.acquire(signal, 'batch', 'tenant-a').then(() => order.push(n))),
      ...['B1', 'B2'].map((n) => queue.acquire(signal, 'batch', 'tenant-b').then(() => order.push(n))),
      queue.acquire(signal, 'batch', 'tenant-c').then(() => order.push('C1')),
    ];
    await releaseEach(queue, 6);
    await Promise.all(waits);
    expect(order).toEqual(['A1', 'B1', 'C1', 'A2', 'B2', 'A3']);
    expect(queue.waiting).toBe(0);
  });

  it('rejects waiters on close', async () => {
    const queue = new SlotQueue<string>([]);
    const waiting = queue.acquire(new AbortController().signal);
    queue.close(new Error('closed'));
    await expect(waiting).rejects.toThrow('closed');
    await expect(queue.acquire(new AbortController().signal)).rejects.toThrow('closed');
  });
});
