/**
 * The infer activity in a mocked activity context: results pass through with latency added, and
 * backend failures become the ApplicationFailures the workflow's retry policy needs.
 * This is the activity around a backend, not inference (docs/testing.md): the backends are the
 * deterministic instant backend and doubles written here. llama.cpp's own token counts, finish
 * reasons and aborts are tested in test/inference/llama-cpp.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure, CancelledFailure, type Logger } from '@temporalio/common';
import { createInferenceActivities } from '../../activities/inference.js';
import { LINE_RETRY, MAX_CHUNK_RESULT_BYTES, createBatchInferenceActivities } from '../../activities/inference-lines.js';
import { createInstantBackend } from '../../activities/backends/instant.js';
import { BackendError, InterruptedGeneration, type GenerateRequest, type InferenceBackend } from '../../activities/backends/types.js';
import type { BackendRegistry } from '../../activities/backends/registry.js';
import type { DeploymentTarget, InferInput, InferOutput } from '../../contracts/chat.js';
import type { EmbedInput, EmbedOutput } from '../../contracts/embeddings.js';

const deployment: DeploymentTarget = {
  id: 'dep-1',
  model: 'tiny',
  pool: 'local',
  provider: 'instant',
  ggufPath: null,
  baseUrl: null,
  apiKeyRef: null,
  upstreamModel: null,
  weight: 1,
  priority: 0,
};

/** The SDK logs every activity failure; these failures are the point of the tests. */
const quiet: Logger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
const mockEnv = () => new MockActivityEnvironment(undefined, { logger: quiet });

function input(maxTokens = 16): InferInput {
  return {
    requestId: 'req-1',
    tenantId: 'tenant-1',
    deployment,
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'héllo' },
    ],
    params: { maxTokens, temperature: 0, topP: null, seed: null, stop: null },
  };
}

/** A registry test double that serves one backend and records what it was asked for. */
function registryOf(backend: InferenceBackend | (() => Promise<InferenceBackend>)): BackendRegistry & { asked: DeploymentTarget[] } {
  const asked: DeploymentTarget[] = [];
  return {
    asked,
    get: async (t) => {
      asked.push(t);
      return typeof backend === 'function' ? backend() : backend;
    },
    close: async () => {},
  };
}

function failingBackend(err: unknown): InferenceBackend {
  return {
    generate: async () => {
      throw err;
    },
    close: async () => {},
  };
}

async function runInfer(registry: BackendRegistry, inp: InferInput = input(), env = mockEnv()): Promise<InferOutput> {
  const { infer } = createInferenceActivities({ backends: registry, pool: 'local', metrics: null });
  return env.run<[InferInput], InferOutput, typeof infer>(infer, inp);
}

async function failureOf(registry: BackendRegistry): Promise<ApplicationFailure> {
  const err = await runInfer(registry).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('infer: success', () => {
  it('passes the backend’s content, finish reason and token counts through, with its latency', async () => {
    const registry = registryOf(createInstantBackend());
    const out = await runInfer(registry);
    // Prompt "system: be brief\nuser: héllo": 16 + 1 + 12 bytes ("é" is two) = 29.
    expect(out).toMatchObject({ content: 'ok', finishReason: 'stop', promptTokens: 29, completionTokens: 2 });
    expect(Number.isInteger(out.latencyMs)).toBe(true);
    expect(out.latencyMs).toBeGreaterThanOrEqual(0);
    expect(registry.asked).toEqual([deployment]);
  });

  it('passes a completion cut by max_tokens through as "length"', async () => {
    const out = await runInfer(registryOf(createInstantBackend()), input(1));
    expect(out).toMatchObject({ content: 'o', finishReason: 'length', completionTokens: 1 });
  });

  it('passes messages, params and an abort signal to the backend, and heartbeats', async () => {
    let seen: GenerateRequest | null = null;
    const backend: InferenceBackend = {
      generate: async (req) => {
        seen = req;
        req.onProgress?.(1, 3);
        return { content: 'x', finishReason: 'stop', promptTokens: 3, completionTokens: 1 };
      },
      close: async () => {},
    };
    const env = mockEnv();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const inp = input(7);
    await runInfer(registryOf(backend), inp, env);
    const req = seen as GenerateRequest | null;
    expect(req?.messages).toEqual(inp.messages);
    expect(req?.params).toEqual(inp.params);
    expect(req?.signal).toBeInstanceOf(AbortSignal);
    expect(req?.signal.aborted).toBe(false);
    expect(beats).toEqual([{ completionTokens: 1, promptTokens: 3, consumedBefore: null }]);
  });

  it('sends no heartbeat for a generation that ends within a second without progress', async () => {
    const env = mockEnv();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    await runInfer(registryOf(createInstantBackend()), input(), env);
    expect(beats).toEqual([]);
  });
});

describe('infer: failures', () => {
  it("maps 'bad_request' to a non-retryable BadRequest", async () => {
    const f = await failureOf(registryOf(failingBackend(new BackendError('bad_request', 'upstream said 400', null, 400))));
    expect(f.type).toBe('BadRequest');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toBe('upstream said 400');
    expect(f.details?.[0]).toMatchObject({ code: 'upstream_bad_request' });
  });

  it("maps 'context_length' to a non-retryable ContextLengthExceeded on 'messages'", async () => {
    const f = await failureOf(registryOf(failingBackend(new BackendError('context_length', 'prompt too long'))));
    expect(f.type).toBe('ContextLengthExceeded');
    expect(f.nonRetryable).toBe(true);
    expect(f.details?.[0]).toMatchObject({ code: 'context_length_exceeded', param: 'messages' });
  });

  it("maps 'rate_limited' with Retry-After to a retryable failure with nextRetryDelay", async () => {
    const f = await failureOf(registryOf(failingBackend(new BackendError('rate_limited', 'slow down', 2000, 429))));
    expect(f.type).toBe('UpstreamRateLimited');
    expect(f.nonRetryable).toBe(false);
    expect(f.nextRetryDelay).toBe(2000);
  });

  it("maps 'rate_limited' without Retry-After to a retryable failure left to the retry policy's backoff", async () => {
    const f = await failureOf(registryOf(failingBackend(new BackendError('rate_limited', 'slow down'))));
    expect(f.type).toBe('UpstreamRateLimited');
    expect(f.nonRetryable).toBe(false);
    expect(f.nextRetryDelay).toBeUndefined();
  });

  it("maps 'unavailable' to a retryable UpstreamUnavailable", async () => {
    const f = await failureOf(registryOf(failingBackend(new BackendError('unavailable', 'connection refused', null, 503))));
    expect(f.type).toBe('UpstreamUnavailable');
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toBe('connection refused');
  });

  it('maps a BackendError from the registry itself', async () => {
    const f = await failureOf(
      registryOf(async () => {
        throw new BackendError('bad_request', 'deployment dep-1 has no gguf_path');
      }),
    );
    expect(f.type).toBe('BadRequest');
    expect(f.nonRetryable).toBe(true);
  });

  it('lets any other error through unchanged (retryable by default)', async () => {
    const original = new TypeError('unexpected');
    await expect(runInfer(registryOf(failingBackend(original)))).rejects.toBe(original);
  });

  it('aborts the backend when the activity is cancelled', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const backend: InferenceBackend = {
      generate: (req) =>
        new Promise((_resolve, reject) => {
          req.signal.addEventListener('abort', () => reject(req.signal.reason));
          started();
        }),
      close: async () => {},
    };
    const env = mockEnv();
    const result = runInfer(registryOf(backend), input(), env);
    await running;
    env.cancel();
    await expect(result).rejects.toBeInstanceOf(CancelledFailure);
  });
});

describe('infer: the backend boundary', () => {
  it.each([
    ['a string temperature (an experiment override written past the API)', { temperature: 'hot' }, 'temperature'],
    ['a NaN top_p', { topP: Number.NaN }, 'top_p'],
    ['a fractional max_tokens', { maxTokens: 1.5 }, 'max_tokens'],
  ])('refuses %s as a non-retryable BadRequest before any backend is asked', async (_name, bad, param) => {
    const registry = registryOf(createInstantBackend());
    const err = await runInfer(registry, { ...input(), params: { ...input().params, ...bad } as InferInput['params'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'BadRequest', nonRetryable: true });
    expect((err as ApplicationFailure).details?.[0]).toMatchObject({ code: 'invalid_value', param });
    expect(registry.asked).toEqual([]);
  });

  it('refuses a bad batch line at once, the others of its chunk unharmed', async () => {
    const registry = registryOf(createInstantBackend());
    const { inferLines } = createBatchInferenceActivities({ backends: registry, pool: 'local', metrics: null });
    const bad = { ...input(4), requestId: 'bad', params: { ...input(4).params, temperature: 'hot' as unknown as number } };
    const results = (await mockEnv().run(inferLines, { items: [input(4), bad] })) as Awaited<ReturnType<typeof inferLines>>;
    expect(results[0]).toMatchObject({ ok: true });
    expect(results[1]).toMatchObject({ ok: false, failure: { type: 'BadRequest', details: [{ code: 'invalid_value', param: 'temperature' }] } });
    expect(registry.asked).toHaveLength(1);
  });
});

describe('infer: tokens spent by failed and cancelled attempts', () => {
  const spent = { promptTokens: 7, completionTokens: 3 };

  it('puts what a failed call spent in the failure details and in a last heartbeat for the next attempt', async () => {
    const env = mockEnv();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const err = await runInfer(registryOf(failingBackend(new BackendError('unavailable', 'no choices', null, null, spent))), input(), env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(false);
    expect((err as ApplicationFailure).details?.[0]).toMatchObject({ consumed: spent });
    expect(beats.at(-1)).toMatchObject({ consumedBefore: spent });
  });

  it('carries earlier attempts\' spending: added to a new failure, reported with a success', async () => {
    const before = { promptTokens: 5, completionTokens: 1 };
    const failing = new MockActivityEnvironment({ heartbeatDetails: { completionTokens: 0, consumedBefore: before } }, { logger: quiet });
    const err = (await runInfer(registryOf(failingBackend(new BackendError('unavailable', 'x', null, null, spent))), input(), failing).catch((e: unknown) => e)) as ApplicationFailure;
    expect(err.details?.[0]).toMatchObject({ consumed: { promptTokens: 12, completionTokens: 4 } });
    const succeeding = new MockActivityEnvironment({ heartbeatDetails: { completionTokens: 0, consumedBefore: before } }, { logger: quiet });
    const out = await runInfer(registryOf(createInstantBackend()), input(), succeeding);
    expect(out.failedAttempts).toEqual(before);
    expect((await runInfer(registryOf(createInstantBackend()))).failedAttempts).toBeNull();
  });

  it('counts what an attempt whose worker died had reported in its last heartbeat', async () => {
    const afterCrash = new MockActivityEnvironment({ heartbeatDetails: { completionTokens: 5, promptTokens: 9, consumedBefore: { promptTokens: 1, completionTokens: 1 } } }, { logger: quiet });
    expect((await runInfer(registryOf(createInstantBackend()), input(), afterCrash)).failedAttempts).toEqual({ promptTokens: 10, completionTokens: 6 });
  });

  it('a failure that spent nothing carries no count', async () => {
    const err = (await runInfer(registryOf(failingBackend(new BackendError('unavailable', 'down')))).catch((e: unknown) => e)) as ApplicationFailure;
    expect(err.details?.[0]).toMatchObject({ consumed: null });
  });

  it('a cancelled generation reports the tokens it spent in the cancellation', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const backend: InferenceBackend = {
      generate: (req) =>
        new Promise((_resolve, reject) => {
          req.signal.addEventListener('abort', () => reject(new InterruptedGeneration(req.signal.reason, spent)));
          started();
        }),
      close: async () => {},
    };
    const env = mockEnv();
    const result = runInfer(registryOf(backend), input(), env).catch((e: unknown) => e);
    await running;
    env.cancel();
    const err = await result;
    expect(err).toBeInstanceOf(CancelledFailure);
    expect((err as CancelledFailure).details).toEqual([{ consumed: spent }]);
  });
});

describe('inferLines (a chunk of batch lines)', () => {
  const line = (requestId: string): InferInput => ({ ...input(4), requestId, messages: [{ role: 'user', content: requestId }] });

  it('a chunk whose completions outweigh the payload limit fails its largest lines once as completion_too_large, their tokens kept', async () => {
    const calls = new Map<string, number>();
    const big = 'x'.repeat(600 * 1024);
    const backend: InferenceBackend = {
      generate: async (r: GenerateRequest) => {
        const id = r.messages[0]!.content;
        calls.set(id, (calls.get(id) ?? 0) + 1);
        return { content: id.startsWith('big') ? big : 'ok', finishReason: 'length', promptTokens: 3, completionTokens: 4 };
      },
      close: async () => {},
    };
    const { inferLines } = createBatchInferenceActivities({ backends: registryOf(backend), pool: 'local', metrics: null });
    const items = ['big-1', 'small', 'big-2', 'big-3'].map(line);
    const results = (await mockEnv().run(inferLines, { items })) as Awaited<ReturnType<typeof inferLines>>;
    expect(Buffer.byteLength(JSON.stringify(results))).toBeLessThanOrEqual(MAX_CHUNK_RESULT_BYTES);
    const failed = results.filter((r) => !r.ok);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ ok: false, failure: { type: 'BadRequest', details: [{ code: 'completion_too_large', consumed: { promptTokens: 3, completionTokens: 4 } }] } });
    expect(results[1]).toMatchObject({ ok: true, value: { content: 'ok' } });
    expect(results.filter((r) => r.ok && r.value.content === big)).toHaveLength(2);
    // Each line was generated once: nothing is re-run (or, upstream, bought again).
    expect([...calls.values()]).toEqual([1, 1, 1, 1]);
  });

  it('returns each line\'s own result: retried like its own activity, a bad request at once, tokens every attempt spent', async () => {
    const attempts = new Map<string, number>();
    const priorities = new Set<string | undefined>();
    const backend: InferenceBackend = {
      generate: async (r: GenerateRequest) => {
        const id = r.messages[0]!.content;
        const n = (attempts.get(id) ?? 0) + 1;
        attempts.set(id, n);
        priorities.add(r.priority);
        if (id === 'flaky' && n < 3) throw new BackendError('unavailable', 'upstream 503', 1, 503, { promptTokens: 2, completionTokens: 0 });
        if (id === 'down') throw new BackendError('unavailable', 'upstream 503', 1, 503, { promptTokens: 2, completionTokens: 1 });
        if (id === 'bad') throw new BackendError('bad_request', 'no such thing', null, 400);
        return { content: 'ok', finishReason: 'stop', promptTokens: 5, completionTokens: 2 };
      },
      close: async () => {},
    };
    const { inferLines } = createBatchInferenceActivities({ backends: registryOf(backend), pool: 'local', metrics: null });
    const results = (await mockEnv().run(inferLines, { items: ['fine', 'flaky', 'down', 'bad'].map(line) })) as Awaited<ReturnType<typeof inferLines>>;
    expect(priorities).toEqual(new Set(['batch']));
    expect(results[0]).toMatchObject({ ok: true, value: { content: 'ok', promptTokens: 5, completionTokens: 2, failedAttempts: null } });
    // Two failed attempts before the third succeeded: what they spent rides along, unbilled.
    expect(results[1]).toMatchObject({ ok: true, value: { content: 'ok', failedAttempts: { promptTokens: 4, completionTokens: 0 } } });
    expect(attempts.get('down')).toBe(LINE_RETRY.maximumAttempts);
    expect(results[2]).toMatchObject({ ok: false, failure: { type: 'UpstreamUnavailable', details: [{ consumed: { promptTokens: 6, completionTokens: 3 } }] } });
    expect(attempts.get('bad')).toBe(1);
    expect(results[3]).toMatchObject({ ok: false, failure: { type: 'BadRequest', details: [{ code: 'upstream_bad_request' }] } });
  });

  it('a cancelled chunk reports every unfinished line as Cancelled with what it spent', async () => {
    const env = mockEnv();
    const backend: InferenceBackend = {
      generate: (r: GenerateRequest) => new Promise((_, reject) => {
        r.onProgress?.(3, 7);
        r.signal.addEventListener('abort', () => reject(new InterruptedGeneration(r.signal.reason, { promptTokens: 7, completionTokens: 3 })));
      }),
      close: async () => {},
    };
    const { inferLines } = createBatchInferenceActivities({ backends: registryOf(backend), pool: 'local', metrics: null });
    const running = env.run(inferLines, { items: [line('a'), line('b')] });
    setTimeout(() => env.cancel(), 50);
    const results = await running;
    expect(results).toEqual([
      { ok: false, failure: { type: 'Cancelled', message: 'generation cancelled', details: [{ code: null, param: null, retryAfterSeconds: null, consumed: { promptTokens: 7, completionTokens: 3 } }] } },
      { ok: false, failure: { type: 'Cancelled', message: 'generation cancelled', details: [{ code: null, param: null, retryAfterSeconds: null, consumed: { promptTokens: 7, completionTokens: 3 } }] } },
    ]);
  });
});

describe('embed: the activity of an embeddings request', () => {
  const embedInput = (inputs: unknown, dimensions: number | null = null): EmbedInput => ({
    requestId: 'embreq_1', tenantId: 'tenant-1', deployment, inputs: inputs as EmbedInput['inputs'], dimensions, maxPromptTokens: 100,
  });
  async function runEmbed(registry: BackendRegistry, inp: EmbedInput): Promise<EmbedOutput> {
    const { embed } = createInferenceActivities({ backends: registry, pool: 'local', metrics: null });
    return mockEnv().run<[EmbedInput], EmbedOutput, typeof embed>(embed, inp);
  }
  const embedding = (vectors: Float32Array[], promptTokens = 3): InferenceBackend => ({
    generate: async () => { throw new Error('not a chat backend'); },
    embed: async () => ({ vectors, promptTokens }),
    close: async () => {},
  });
  const refusal = async (p: Promise<unknown>) => {
    const err = await p.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  };

  it('returns the vectors as base64 float32 with the backend\'s prompt tokens', async () => {
    const out = await runEmbed(registryOf(embedding([Float32Array.from([0.5, -1])])), embedInput(['x']));
    expect(out.vectors).toEqual([Buffer.from(Float32Array.from([0.5, -1]).buffer).toString('base64')]);
    expect(out.promptTokens).toBe(3);
  });

  it('refuses inputs a history may carry before any backend sees them', async () => {
    const registry = registryOf(embedding([]));
    for (const bad of [[''], [[1.5]], ['a', [1]], []]) {
      const err = await refusal(runEmbed(registry, embedInput(bad)));
      expect([err.type, err.nonRetryable], JSON.stringify(bad)).toEqual(['BadRequest', true]);
    }
    expect((await refusal(runEmbed(registry, embedInput(['a'], 0)))).type).toBe('BadRequest');
    expect(registry.asked).toHaveLength(0);
  });

  it('refuses a backend that serves no embeddings, and a vector count unlike the inputs', async () => {
    const chatOnly = await refusal(runEmbed(registryOf(createInstantBackend()), embedInput(['x'])));
    expect([chatOnly.type, chatOnly.nonRetryable]).toEqual(['BadRequest', true]);
    const short = await refusal(runEmbed(registryOf(embedding([])), embedInput(['x', 'y'])));
    expect(short.nonRetryable).toBe(false);
  });
});

describe('infer: the field table at the backend boundary', () => {
  const withExtras = (provider: DeploymentTarget['provider'], extras: unknown): InferInput => ({
    ...input(), deployment: { ...deployment, provider }, params: { ...input().params, extras: extras as never },
  });
  async function refusalOf(i: InferInput, registry: BackendRegistry): Promise<ApplicationFailure> {
    const err = await mockEnv().run(createInferenceActivities({ backends: registry, pool: 'local', metrics: null }).infer, i).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }

  it("refuses, before any backend is asked, a field the deployment's backend cannot honour (a variant's model may differ from the checked one)", async () => {
    const registry = registryOf(createInstantBackend());
    const f = await refusalOf(withExtras('llama-cpp', { reasoning_effort: 'low' }), registry);
    expect(f).toMatchObject({ type: 'BadRequest', nonRetryable: true });
    expect(f.details?.[0]).toMatchObject({ code: 'unsupported_parameter', param: 'reasoning_effort' });
    const schema = await refusalOf(withExtras('llama-cpp', { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'string', pattern: 'x' } } } }), registry);
    expect(schema.details?.[0]).toMatchObject({ code: 'unsupported_parameter', param: 'response_format.json_schema.schema.pattern' });
    expect(registry.asked).toHaveLength(0);
  });

  it('refuses an extras object from a history that no request could have carried', async () => {
    const registry = registryOf(createInstantBackend());
    for (const extras of [{ model: 'x' }, { logit_bias: { abc: 1 } }, { top_logprobs: 99, logprobs: true }, 'nope']) {
      const f = await refusalOf(withExtras('openai-compatible', extras), registry);
      expect(f).toMatchObject({ type: 'BadRequest', nonRetryable: true });
    }
    expect(registry.asked).toHaveLength(0);
  });
});
