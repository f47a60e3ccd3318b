import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOpenAICompatibleBackend } from '../../activities/backends/openai-compatible.js';
import { parseRetryAfterMs } from '../../activities/backends/openai-compatible/upstream-errors.js';
import type { OpenAICompatibleBackendOptions } from '../../activities/backends/openai-compatible/options.js';
import { BackendError } from '../../activities/backends/types.js';
import type { GenerateRequest, InferenceBackend } from '../../activities/backends/types.js';
import { fakeEmbedding, startFakeUpstream } from '../support/fake-openai-upstream.js';
import type { FakeUpstream } from '../support/fake-openai-upstream.js';

const API_KEY = 'sk-upstream-test';
const UPSTREAM_MODEL = 'upstream-model-7b';

let upstream: FakeUpstream;
let backend: InferenceBackend;

beforeAll(async () => {
  upstream = await startFakeUpstream({ apiKey: API_KEY });
  backend = backendFor({});
});

afterAll(async () => {
  await backend.close();
  await upstream.close();
});

beforeEach(() => {
  upstream.setBehaviour({ kind: 'succeed' });
});

/** A backend against the shared fake upstream, with option overrides. */
function backendFor(overrides: Partial<OpenAICompatibleBackendOptions>): InferenceBackend {
  return createOpenAICompatibleBackend({ baseURL: upstream.url, apiKey: API_KEY, model: UPSTREAM_MODEL, allowPrivateHosts: ['127.0.0.1'], ...overrides });
}

/** A small request; `signal` defaults to one that never aborts. */
function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    messages: [
      { role: 'developer', content: 'Answer briefly.' },
      { role: 'user', content: 'Say hello to the tests' },
    ],
    params: { maxTokens: 64, temperature: 0, topP: null, seed: 7, stop: null },
    signal: new AbortController().signal,
    ...overrides,
  };
}

/** Runs `generate` and returns the BackendError it rejects with. */
async function backendError(promise: Promise<unknown>): Promise<BackendError> {
  const error = await promise.then(
    () => expect.fail('expected generate to fail'),
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(BackendError);
  return error as BackendError;
}

describe('openai-compatible backend: success', () => {
  it('returns the completion with the upstream usage and reports progress', async () => {
    const progress: number[] = [];
    const before = upstream.calls;
    const result = await backend.generate(request({ onProgress: (tokens) => progress.push(tokens) }));

    expect(result).toEqual({
      content: 'This is a deterministic reply from the fake upstream.',
      finishReason: 'stop',
      promptTokens: 7,
      completionTokens: 9,
    });
    expect(progress).toEqual([9]);
    expect(upstream.calls).toBe(before + 1);
    const sent = upstream.requests.at(-1);
    expect(sent?.authorization).toBe(`Bearer ${API_KEY}`);
    expect(sent?.body).toEqual({
      model: UPSTREAM_MODEL,
      messages: [
        { role: 'system', content: 'Answer briefly.' },
        { role: 'user', content: 'Say hello to the tests' },
      ],
      max_tokens: 64,
      temperature: 0,
      seed: 7,
    });
  });

  it('takes token counts from upstream usage, not from the text', async () => {
    upstream.setBehaviour({ kind: 'succeed', usage: { promptTokens: 23, completionTokens: 45 } });
    const result = await backend.generate(request());
    expect(result.promptTokens).toBe(23);
    expect(result.completionTokens).toBe(45);
  });

  it("maps finish_reason 'length' to 'length' and anything else to 'stop'", async () => {
    const cut = await backend.generate(request({ params: { maxTokens: 3, temperature: 0, topP: null, seed: null, stop: null } }));
    expect(cut).toMatchObject({ content: 'This is a', finishReason: 'length', completionTokens: 3 });

    upstream.setBehaviour({ kind: 'succeed', finishReason: 'content_filter' });
    expect((await backend.generate(request())).finishReason).toBe('stop');
  });

  it('sends no Authorization header when the deployment has no key', async () => {
    const keyless = await startFakeUpstream();
    try {
      const result = await createOpenAICompatibleBackend({ baseURL: keyless.url, apiKey: null, model: 'm', allowPrivateHosts: ['127.0.0.1'] }).generate(request());
      expect(result.finishReason).toBe('stop');
      expect(keyless.requests[0]?.authorization).toBeNull();
    } finally {
      await keyless.close();
    }
  });

  it('fails as unavailable when the upstream reports no usage (never estimated)', async () => {
    upstream.setBehaviour({ kind: 'succeed', usage: 'omit' });
    const error = await backendError(backend.generate(request()));
    expect(error.kind).toBe('unavailable');
  });
});

describe('openai-compatible backend: error mapping', () => {
  it('maps 400 to a non-retryable bad_request, without retrying in the client', async () => {
    upstream.setBehaviour({ kind: 'fail', status: 400, message: 'temperature must be <= 2' });
    const before = upstream.calls;
    const error = await backendError(backend.generate(request()));
    expect(error).toMatchObject({ kind: 'bad_request', status: 400, retryAfterMs: null });
    expect(error.message).toContain('temperature must be <= 2');
    expect(upstream.calls).toBe(before + 1);
  });

  it.each([401, 403, 404, 409, 422])('maps %i to bad_request', async (status) => {
    upstream.setBehaviour({ kind: 'fail', status });
    expect(await backendError(backend.generate(request()))).toMatchObject({ kind: 'bad_request', status });
  });

  it('maps a rejected API key (401) to bad_request and never puts the key in the error', async () => {
    const error = await backendError(backendFor({ apiKey: 'sk-wrong-key' }).generate(request()));
    expect(error).toMatchObject({ kind: 'bad_request', status: 401 });
    expect(error.message).toBe("upstream rejected the deployment's credentials (401)");
  });

  it('never carries the API key in an error message, even when the upstream echoes it', async () => {
    upstream.setBehaviour({ kind: 'fail', status: 400, message: `bad request for key ${API_KEY}` });
    const error = await backendError(backend.generate(request()));
    expect(error.message).not.toContain(API_KEY);
    expect(error.message).toContain('[redacted]');
  });

  it('maps context_length_exceeded to context_length', async () => {
    upstream.setBehaviour({
      kind: 'fail',
      status: 400,
      code: 'context_length_exceeded',
      message: "This model's maximum context length is 4096 tokens.",
    });
    expect(await backendError(backend.generate(request()))).toMatchObject({ kind: 'context_length', status: 400 });
  });

  it('maps 429 with Retry-After: 2 to rate_limited after 2000 ms', async () => {
    upstream.setBehaviour({ kind: 'fail', status: 429, retryAfter: '2' });
    expect(await backendError(backend.generate(request()))).toMatchObject({
      kind: 'rate_limited',
      status: 429,
      retryAfterMs: 2000,
    });
  });

  it('prefers retry-after-ms over Retry-After, and gives null when neither is sent', async () => {
    upstream.setBehaviour({ kind: 'fail', status: 429, retryAfter: '2', retryAfterMs: '1500' });
    expect((await backendError(backend.generate(request()))).retryAfterMs).toBe(1500);

    upstream.setBehaviour({ kind: 'fail', status: 429 });
    expect((await backendError(backend.generate(request()))).retryAfterMs).toBeNull();
  });

  it.each([500, 502, 503])('maps %i to unavailable', async (status) => {
    upstream.setBehaviour({ kind: 'fail', status });
    expect(await backendError(backend.generate(request()))).toMatchObject({ kind: 'unavailable', status, retryAfterMs: null });
  });

  it('keeps Retry-After on a 503', async () => {
    upstream.setBehaviour({ kind: 'fail', status: 503, retryAfter: '5' });
    expect(await backendError(backend.generate(request()))).toMatchObject({ kind: 'unavailable', retryAfterMs: 5000 });
  });

  it('maps a refused connection to unavailable', async () => {
    const gone = await startFakeUpstream();
    await gone.close();
    const error = await backendError(backendFor({ baseURL: gone.url }).generate(request()));
    expect(error).toMatchObject({ kind: 'unavailable', status: null });
  });

  it('maps a timeout to unavailable and drops the upstream call', async () => {
    upstream.setBehaviour({ kind: 'hang' });
    const disconnects = upstream.disconnects;
    const error = await backendError(backendFor({ timeoutMs: 200 }).generate(request()));
    expect(error).toMatchObject({ kind: 'unavailable', status: null });
    await upstream.waitForDisconnects(disconnects + 1);
  });

  it('refuses tool messages without a tool_call_id (recorded before tools) before calling the upstream', async () => {
    const before = upstream.calls;
    const error = await backendError(backend.generate(request({ messages: [{ role: 'tool', content: '42' }] })));
    expect(error.kind).toBe('bad_request');
    expect(upstream.calls).toBe(before);
  });

  it('fails the first K calls, then succeeds (one attempt per generate)', async () => {
    upstream.setBehaviour({ kind: 'fail-then-succeed', failures: 2, fail: { status: 503 } });
    expect((await backendError(backend.generate(request()))).kind).toBe('unavailable');
    expect((await backendError(backend.generate(request()))).kind).toBe('unavailable');
    expect((await backend.generate(request())).finishReason).toBe('stop');
  });
});

describe('openai-compatible backend: cancellation', () => {
  it('aborting the signal cancels the HTTP call and rejects with the abort reason', async () => {
    upstream.setBehaviour({ kind: 'hang' });
    const calls = upstream.calls;
    const disconnects = upstream.disconnects;
    const controller = new AbortController();
    const pending = backend.generate(request({ signal: controller.signal }));

    await upstream.waitForCalls(calls + 1);
    const reason = new Error('activity cancelled');
    controller.abort(reason);

    await expect(pending).rejects.toBe(reason);
    await upstream.waitForDisconnects(disconnects + 1);
  });

  it('does not call the upstream when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('already cancelled'));
    const before = upstream.calls;
    await expect(backend.generate(request({ signal: controller.signal }))).rejects.toThrow('already cancelled');
    expect(upstream.calls).toBe(before);
  });
});

describe('openai-compatible backend: a hostile upstream', () => {
  it('does not follow a 307 to a private address: the attempt fails and the target gets nothing', async () => {
    const internal = await startFakeUpstream();
    try {
      // The "metadata service" is reachable (loopback is allowed here): only the refusal to follow
      // keeps the worker from calling it.
      upstream.setBehaviour({ kind: 'redirect', status: 307, location: `${internal.url}/chat/completions` });
      const before = upstream.calls;
      const error = await backendError(backend.generate(request()));
      expect(error).toMatchObject({ kind: 'unavailable', status: 307 });
      expect(error.message).toMatch(/redirect/);
      expect(upstream.calls).toBe(before + 1);
      expect(internal.calls).toBe(0);
    } finally {
      await internal.close();
    }
  });

  it('checks the address it connects to: a name resolving to loopback is refused at connect time', async () => {
    // `localhost` is not an IP literal, so only the connection's lookup sees 127.0.0.1.
    const before = upstream.calls;
    const port = new URL(upstream.url).port;
    const error = await backendError(backendFor({ baseURL: `http://localhost:${port}/v1`, allowPrivateHosts: [] }).generate(request()));
    expect(error.kind).toBe('bad_request');
    expect(error.message).toMatch(/loopback/);
    expect(upstream.calls).toBe(before);
    // Allowed by name, the same call goes through.
    const ok = await backendFor({ baseURL: `http://localhost:${port}/v1`, allowPrivateHosts: ['localhost'] }).generate(request());
    expect(ok.finishReason).toBe('stop');
  });

  it('fails a response over the size cap as too_large, after one call', async () => {
    upstream.setBehaviour({ kind: 'succeed', content: 'x'.repeat(300_000), usage: { promptTokens: 5, completionTokens: 5 } });
    const before = upstream.calls;
    const error = await backendError(backendFor({ maxResponseBytes: 64 * 1024 }).generate(request()));
    expect(error.kind).toBe('too_large');
    expect(upstream.calls).toBe(before + 1);
  });

  it('clamps usage to what was reserved: completion tokens to max_tokens, prompt tokens to the estimate', async () => {
    upstream.setBehaviour({ kind: 'succeed', usage: { promptTokens: 1_000_000, completionTokens: 1_000_000 } });
    const result = await backend.generate(request({ params: { maxTokens: 8, temperature: 0, topP: null, seed: null, stop: null } }));
    expect(result.completionTokens).toBe(8);
    // The reservation's estimate of these two messages: bytes of content and role, plus 4 each.
    expect(result.promptTokens).toBe(15 + 9 + 4 + 22 + 4 + 4);
  });
});

describe('parseRetryAfterMs', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');

  it('reads delta-seconds, decimals, HTTP dates and retry-after-ms', () => {
    expect(parseRetryAfterMs(new Headers({ 'retry-after': '2' }), now)).toBe(2000);
    expect(parseRetryAfterMs(new Headers({ 'retry-after': '0.25' }), now)).toBe(250);
    expect(parseRetryAfterMs(new Headers({ 'retry-after': 'Wed, 01 Jan 2025 00:00:30 GMT' }), now)).toBe(30_000);
    expect(parseRetryAfterMs(new Headers({ 'retry-after-ms': '750', 'retry-after': '9' }), now)).toBe(750);
  });

  it('gives 0 for a past date and null for absent or garbage values', () => {
    expect(parseRetryAfterMs(new Headers({ 'retry-after': 'Tue, 31 Dec 2024 23:59:00 GMT' }), now)).toBe(0);
    expect(parseRetryAfterMs(new Headers({ 'retry-after': 'soon' }), now)).toBeNull();
    expect(parseRetryAfterMs(new Headers({ 'retry-after': '-3' }), now)).toBeNull();
    expect(parseRetryAfterMs(new Headers(), now)).toBeNull();
    expect(parseRetryAfterMs(undefined, now)).toBeNull();
  });
});

describe('openai-compatible backend: embeddings', () => {
  const embedRequest = (inputs: Array<string | number[]>, dimensions: number | null = null) => ({
    inputs, dimensions, maxPromptTokens: 1000, signal: new AbortController().signal,
  });
  const embed = (b: InferenceBackend, r: ReturnType<typeof embedRequest>) => {
    if (!b.embed) throw new Error('the backend has no embed');
    return b.embed(r);
  };

  it('sends the inputs, the upstream model, base64 and dimensions, and decodes the vectors in order', async () => {
    const result = await embed(backend, embedRequest(['one two', 'three'], 4));
    const sent = upstream.requests.at(-1);
    expect(sent?.path).toBe('/v1/embeddings');
    expect(sent?.authorization).toBe(`Bearer ${API_KEY}`);
    expect(sent?.body).toEqual({ model: UPSTREAM_MODEL, input: ['one two', 'three'], encoding_format: 'base64', dimensions: 4 });
    expect(result.vectors.map((v) => Array.from(v))).toEqual([fakeEmbedding('one two', 4), fakeEmbedding('three', 4)]);
    expect(result.promptTokens).toBe(3);
  });

  it('clamps reported prompt tokens to the reservation', async () => {
    upstream.setBehaviour({ kind: 'succeed', usage: { promptTokens: 1_000_000, completionTokens: 0 } });
    expect((await embed(backend, embedRequest(['x']))).promptTokens).toBe(1000);
  });

  it('fails as unavailable on missing usage or a malformed list, never inventing vectors', async () => {
    upstream.setBehaviour({ kind: 'succeed', usage: 'omit' });
    expect((await backendError(embed(backend, embedRequest(['x'])))).kind).toBe('unavailable');
    for (const data of [
      [],
      [{ index: 0, embedding: [1, 2] }, { index: 0, embedding: [1, 2] }],
      [{ index: 0, embedding: [1, 2] }, { index: 1, embedding: [1] }],
      [{ index: 0, embedding: 'AAA=' }, { index: 1, embedding: [1, 2] }],
      [{ index: 0, embedding: [1, 2] }, { index: 5, embedding: [1, 2] }],
      [{ index: 0, embedding: [1, null] }, { index: 1, embedding: [1, 2] }],
    ]) {
      upstream.setBehaviour({ kind: 'succeed', embeddingsData: data });
      const error = await backendError(embed(backend, embedRequest(['a', 'b'])));
      expect(error.kind, JSON.stringify(data)).toBe('unavailable');
      // What the upstream said it spent is reported, so it is recorded unbilled.
      expect(error.consumed, JSON.stringify(data)).toEqual({ promptTokens: 2, completionTokens: 0 });
    }
  });

  it('refuses vectors of another size than the dimensions asked for', async () => {
    upstream.setBehaviour({ kind: 'succeed', embeddingsData: [{ index: 0, embedding: [1, 2, 3] }] });
    expect((await backendError(embed(backend, embedRequest(['a'], 2)))).kind).toBe('unavailable');
  });
});
