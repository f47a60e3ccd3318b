/**
 * An inference backend that forwards chat completions and embeddings to an OpenAI-compatible HTTP upstream
 * (OpenAI itself, vLLM, llama.cpp's server, a hosted provider).
 *
 * The client never retries (`maxRetries: 0`): retries, backoff and `Retry-After` belong to the
 * Temporal retry policy, so every upstream failure is translated into a {@link BackendError} whose
 * kind tells that policy what to do. Nothing here logs: neither the API key nor prompt text can
 * leak through this module, and the client's own logger is switched off so `OPENAI_LOG` cannot
 * turn request logging back on.
 */
import OpenAI from 'openai';
import type {
  ChatCompletion,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageParam,
} from 'openai/resources/chat/completions';
import type { CreateEmbeddingResponse, EmbeddingCreateParams } from 'openai/resources/embeddings';
import { estimatePromptTokens } from '../../domain/chat-validation.js';
import { base64ToVector } from '../../domain/embedding-vectors.js';
import { MAX_EMBEDDING_VALUES } from '../../contracts/embeddings.js';
import type { TokenLogprob } from '../../contracts/chat.js';
import { BackendError, type ConsumedTokens } from './types.js';
import type { ChatMessage, EmbedResult, GenerateParams, GenerateRequest, GenerateResult, InferenceBackend } from './types.js';
import { ResponseTooLargeError, createPinnedFetch, type PinnedFetch } from './pinned-fetch.js';
import { AddressRefusedError } from '../net/address-guard.js';

/** How to reach one OpenAI-compatible upstream deployment. */
export interface OpenAICompatibleBackendOptions {
  /** Base URL of the upstream API, including the version path, e.g. `https://api.openai.com/v1`. */
  baseURL: string;
  /** Bearer key for the upstream; `null` sends no `Authorization` header (a keyless local server). */
  apiKey: string | null;
  /** The model name as the upstream knows it (not Sluice's public model name). */
  model: string;
  /**
   * Upper bound of one HTTP call, headers and body, in milliseconds. A timeout is `unavailable`.
   * @default 600000
   */
  timeoutMs?: number;
  /**
   * Hosts or addresses the connection may reach although they are loopback, private or link-local
   * (`*` = all); every other host is refused at connect time, on the address actually connected to.
   * @default [] (see `SLUICE_ALLOW_PRIVATE_UPSTREAMS`)
   */
  allowPrivateHosts?: readonly string[];
  /**
   * Largest upstream response body read; past it the call fails as `too_large` (not retried).
   * @default DEFAULT_MAX_RESPONSE_BYTES (4 MiB)
   */
  maxResponseBytes?: number;
  /**
   * The `fetch` implementation the client uses (tests). Replacing it drops the connect-time
   * address guard, the redirect refusal and the size cap of {@link createPinnedFetch}.
   * @default createPinnedFetch({ allow: allowPrivateHosts, maxResponseBytes })
   */
  fetch?: typeof fetch;
}

/** 4 MiB: a completion larger than Temporal's 2 MB payload limit cannot be returned anyway. */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** Ten minutes, the `openai` client's own default: a long generation must not look like a failure. */
const DEFAULT_TIMEOUT_MS = 600_000;

/** Upstream statuses whose request can never succeed as sent. */
const BAD_REQUEST_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 404, 409, 413, 422]);

/** Upstream error messages are cut to this length before they travel into workflow history. */
const MAX_UPSTREAM_MESSAGE_CHARS = 500;

/**
 * Creates a backend that serves one deployment from an OpenAI-compatible upstream.
 *
 * Usage accounting: prompt and completion tokens come from the upstream's `usage` object, clamped
 * to what the request reserved ({@link clampUsage}). An upstream that answers without valid usage
 * has broken the contract billing relies on; the call fails as `unavailable` rather than returning
 * invented counts (see {@link readUsage}).
 */
export function createOpenAICompatibleBackend(options: OpenAICompatibleBackendOptions): InferenceBackend {
  const pinned = options.fetch ? null : createPinnedFetch({ allow: options.allowPrivateHosts ?? [], maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES });
  const client = createClient(options, options.fetch ?? (pinned as PinnedFetch).fetch);
  return {
    generate: async (request) => {
      // Refused at the route for models with an upstream deployment; here for any other path.
      if (request.params.rawPrompt === true) throw new BackendError('bad_request', 'legacy completions are served by llama.cpp deployments only');
      if (request.onDelta) return generateStreamed(client, options, request, request.onDelta);
      const body = buildRequestBody(options.model, request.messages, request.params);
      let completion: ChatCompletion;
      try {
        completion = await client.chat.completions.create(body, { signal: request.signal });
      } catch (error) {
        throw toBackendError(error, request.signal, options.apiKey);
      }
      const bounds = { maxPromptTokens: estimatePromptTokens(request.messages), maxCompletionTokens: request.params.maxTokens };
      const result = toGenerateResult(completion, bounds);
      request.onProgress?.(result.completionTokens, result.promptTokens);
      return result;
    },
    embed: async (request) => {
      const body: EmbeddingCreateParams = {
        model: options.model,
        // All strings or all token arrays (domain/embeddings-validation.ts), as the upstream requires.
        input: request.inputs as string[] | number[][],
        encoding_format: 'base64',
        ...(request.dimensions !== null ? { dimensions: request.dimensions } : {}),
      };
      let response: CreateEmbeddingResponse;
      try {
        response = await client.embeddings.create(body, { signal: request.signal });
      } catch (error) {
        throw toBackendError(error, request.signal, options.apiKey);
      }
      return toEmbedResult(response, request.inputs.length, request.dimensions, request.maxPromptTokens);
    },
    close: async () => {
      pinned?.close();
    },
  };
}

/** One upstream vector: base64 float32 (as asked) or, from servers that ignore the format, numbers. */
function upstreamVector(raw: unknown): Float32Array | null {
  if (typeof raw === 'string') return base64ToVector(raw);
  if (Array.isArray(raw) && raw.every((v) => typeof v === 'number' && Number.isFinite(v))) return Float32Array.from(raw as number[]);
  return null;
}

/**
 * Checks an upstream's embeddings answer: one vector per input (by `index`), all of the same
 * length (`dimensions` when asked), finite values, at most {@link MAX_EMBEDDING_VALUES} in all,
 * and valid usage (clamped to the reservation's estimate, as chat usage is). Anything else is the
 * deployment's fault (`unavailable`), except a result too large to carry (`too_large`).
 */
function toEmbedResult(response: CreateEmbeddingResponse, count: number, dimensions: number | null, maxPromptTokens: number): EmbedResult {
  const promptTokens = response.usage?.prompt_tokens;
  if (!isTokenCount(promptTokens)) throw new BackendError('unavailable', 'upstream embeddings response carried no valid usage (prompt_tokens)');
  const spent = { promptTokens: Math.min(promptTokens, Math.max(0, maxPromptTokens)), completionTokens: 0 };
  const data: unknown = response.data;
  if (!Array.isArray(data) || data.length !== count) {
    throw new BackendError('unavailable', `upstream returned ${Array.isArray(data) ? data.length : 'no'} embeddings for ${count} inputs`, null, null, spent);
  }
  const vectors: Array<Float32Array | undefined> = new Array<Float32Array | undefined>(count);
  let total = 0;
  let width: number | null = dimensions;
  for (const item of data as Array<{ index?: unknown; embedding?: unknown }>) {
    const index = item?.index;
    const vector = upstreamVector(item?.embedding);
    if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index >= count || vectors[index] !== undefined || vector === null
      || vector.some((v) => !Number.isFinite(v)) || vector.length === 0
      || vector.length !== (width ?? vector.length)) {
      throw new BackendError('unavailable', 'upstream returned a malformed embeddings list', null, null, spent);
    }
    width = vector.length;
    total += vector.length;
    if (total > MAX_EMBEDDING_VALUES) throw new BackendError('too_large', `embeddings of more than ${MAX_EMBEDDING_VALUES} values do not fit a result`, null, null, spent);
    vectors[index] = vector;
  }
  return { vectors: vectors as Float32Array[], promptTokens: spent.promptTokens };
}

/**
 * A streamed request: the upstream is asked to stream (`stream: true`, and its usage with
 * `stream_options.include_usage`, since the usage is billed) and each content delta is relayed as
 * it arrives. Usage is read and clamped as for a non-streamed call; a stream that ends without it
 * fails as `unavailable`. A failure before the first delta is retried or falls back like any other
 * (the client saw nothing); after it, the inference activity ends the stream (StreamInterrupted).
 */
async function generateStreamed(client: OpenAI, options: OpenAICompatibleBackendOptions, request: GenerateRequest, onDelta: (text: string) => void): Promise<GenerateResult> {
  const body = { ...buildRequestBody(options.model, request.messages, request.params), stream: true as const, stream_options: { include_usage: true } };
  const bounds = { maxPromptTokens: estimatePromptTokens(request.messages), maxCompletionTokens: request.params.maxTokens };
  let content = '';
  let finishReason: GenerateResult['finishReason'] = 'stop';
  let usage: ChatCompletion['usage'] | undefined;
  let sawChoice = false;
  try {
    const stream = await client.chat.completions.create(body, { signal: request.signal });
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      sawChoice = true;
      const delta = choice.delta?.content;
      if (typeof delta === 'string' && delta !== '') {
        content += delta;
        onDelta(delta);
      }
      if (choice.finish_reason) finishReason = choice.finish_reason === 'length' ? 'length' : 'stop';
    }
  } catch (error) {
    throw toBackendError(error, request.signal, options.apiKey);
  }
  if (!sawChoice) {
    const { prompt_tokens: promptTokens, completion_tokens: completionTokens } = usage ?? {};
    const consumed = isTokenCount(promptTokens) && isTokenCount(completionTokens) ? clampUsage({ promptTokens, completionTokens }, bounds) : null;
    throw new BackendError('unavailable', 'upstream stream carried no choices', null, null, consumed);
  }
  const counts = clampUsage(readUsage(usage), bounds);
  request.onProgress?.(counts.completionTokens, counts.promptTokens);
  return { content, finishReason, ...counts };
}

/**
 * Builds the `openai` client with every option explicit, so no `OPENAI_*` environment variable
 * (key, organisation, project, base URL, log level) changes what this backend sends or logs.
 */
function createClient(options: OpenAICompatibleBackendOptions, fetchImpl: typeof fetch): OpenAI {
  return new OpenAI({
    baseURL: options.baseURL,
    // The client refuses to start without credentials; a keyless upstream gets a placeholder
    // that the `Authorization: null` default header below strips from every request.
    apiKey: options.apiKey ?? 'no-key',
    adminAPIKey: null,
    organization: null,
    project: null,
    webhookSecret: null,
    maxRetries: 0,
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    logLevel: 'off',
    ...(options.apiKey === null ? { defaultHeaders: { Authorization: null } } : {}),
    fetch: fetchImpl,
  });
}

/**
 * Translates a resolved request into a non-streaming chat completion body.
 * `max_tokens` (not `max_completion_tokens`) because every OpenAI-compatible server accepts it.
 */
export function buildRequestBody(
  model: string,
  messages: readonly ChatMessage[],
  params: GenerateParams,
): ChatCompletionCreateParamsNonStreaming {
  return {
    model,
    messages: messages.map(toUpstreamMessage),
    max_tokens: params.maxTokens,
    temperature: params.temperature,
    ...(params.topP !== null ? { top_p: params.topP } : {}),
    ...(params.seed !== null ? { seed: params.seed } : {}),
    ...(params.stop !== null ? { stop: params.stop } : {}),
    // Validated options under their OpenAI names (domain/chat-extras.ts), passed on unchanged.
    ...params.extras,
  };
}

/**
 * Maps one Sluice message to the upstream's shape.
 * `developer` becomes `system`, which every compatible server understands and OpenAI treats as
 * developer instructions on models that distinguish them. `tool` is refused before any paid call:
 * the upstream requires a `tool_call_id`, which a flattened Sluice message does not carry.
 */
function toUpstreamMessage(message: ChatMessage): ChatCompletionMessageParam {
  switch (message.role) {
    case 'system':
    case 'developer':
      return { role: 'system', content: message.content };
    case 'user':
      return { role: 'user', content: message.content };
    case 'assistant':
      return { role: 'assistant', content: message.content };
    case 'tool':
      throw new BackendError('bad_request', 'tool messages are not supported by OpenAI-compatible deployments');
  }
}

const MAX_TOKEN_CHARS = 256;

function isLogprobEntry(v: unknown): v is { token: string; logprob: number; bytes?: unknown } {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return typeof e.token === 'string' && e.token.length <= MAX_TOKEN_CHARS && typeof e.logprob === 'number' && Number.isFinite(e.logprob);
}

function bytesOf(v: unknown): number[] | null {
  return Array.isArray(v) && v.length <= 4 * MAX_TOKEN_CHARS && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255) ? (v as number[]) : null;
}

/**
 * The upstream's per-token logprobs, re-built field by field (a hostile upstream's extra fields
 * or sizes never reach the history): at most one entry per billed completion token and 20
 * alternatives each; null when it sent none or something else.
 */
function readLogprobs(content: unknown, maxTokens: number): TokenLogprob[] | null {
  if (!Array.isArray(content)) return null;
  return content.slice(0, maxTokens).filter(isLogprobEntry).map((e) => {
    const top = (e as { top_logprobs?: unknown }).top_logprobs;
    return {
      token: e.token, logprob: e.logprob, bytes: bytesOf(e.bytes),
      top_logprobs: (Array.isArray(top) ? top.slice(0, 20).filter(isLogprobEntry) : []).map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytesOf(t.bytes) })),
    };
  });
}

/** The most a request may be billed for: what its reservation held. */
export interface UsageBounds {
  /** The reservation's prompt estimate (one token per byte of the messages, roles and separators). */
  maxPromptTokens: number;
  /** The request's `max_tokens`, as sent to the upstream. */
  maxCompletionTokens: number;
}

/**
 * Clamps an upstream's reported usage to what the request reserved: completion tokens never above
 * `max_tokens` (an upstream cannot generate more than it was asked for), prompt tokens never above
 * the reservation's estimate (an upper bound for any tokenizer: one token per byte, plus the
 * roles and separators). An upstream reporting more is wrong or hostile; the tenant is billed the
 * bound (docs/billing.md).
 */
export function clampUsage(usage: ConsumedTokens, bounds: UsageBounds): ConsumedTokens {
  return {
    promptTokens: Math.min(usage.promptTokens, Math.max(0, bounds.maxPromptTokens)),
    completionTokens: Math.min(usage.completionTokens, Math.max(0, bounds.maxCompletionTokens)),
  };
}

/** Reads the first choice and the upstream's usage; a response without either is `unavailable`. */
function toGenerateResult(completion: ChatCompletion, bounds: UsageBounds): GenerateResult {
  const choice = completion.choices?.[0];
  if (!choice) {
    // The upstream may still have spent (and charged for) tokens: say how many when it reports them.
    const { prompt_tokens: promptTokens, completion_tokens: completionTokens } = completion.usage ?? {};
    const consumed = isTokenCount(promptTokens) && isTokenCount(completionTokens) ? clampUsage({ promptTokens, completionTokens }, bounds) : null;
    throw new BackendError('unavailable', 'upstream returned no choices', null, null, consumed);
  }
  const usage = clampUsage(readUsage(completion.usage), bounds);
  const logprobs = readLogprobs(choice.logprobs?.content, usage.completionTokens);
  return {
    content: choice.message?.content ?? '',
    finishReason: choice.finish_reason === 'length' ? 'length' : 'stop',
    ...usage,
    ...(logprobs !== null ? { logprobs } : {}),
  };
}

/**
 * Takes token counts from the upstream's `usage`. Counts are never estimated (they are billed), so
 * missing or malformed usage fails the call as `unavailable`: it is the deployment's fault, not
 * the caller's (so not `bad_request`); a retry may reach a healthy replica, and a deployment that
 * never reports usage trips its circuit breaker and the fallback chain takes over instead of
 * serving unbilled completions.
 */
function readUsage(usage: ChatCompletion['usage']): Pick<GenerateResult, 'promptTokens' | 'completionTokens'> {
  const promptTokens = usage?.prompt_tokens;
  const completionTokens = usage?.completion_tokens;
  if (!isTokenCount(promptTokens) || !isTokenCount(completionTokens)) {
    throw new BackendError('unavailable', 'upstream response carried no valid usage (prompt_tokens, completion_tokens)');
  }
  return { promptTokens, completionTokens };
}

/** True for a non-negative integer. */
function isTokenCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Normalises anything the client threw. An aborted call rethrows the signal's reason untouched (as
 * `fetch` does), so a cancelled activity surfaces its own cancellation, not a backend failure.
 */
function toBackendError(error: unknown, signal: AbortSignal, apiKey: string | null): unknown {
  if (signal.aborted) {
    return signal.reason;
  }
  if (error instanceof BackendError) {
    return error;
  }
  // Raised inside the pinned fetch; the client wraps them in an APIConnectionError.
  const tooLarge = findCause(error, ResponseTooLargeError);
  if (tooLarge) {
    return new BackendError('too_large', tooLarge.message);
  }
  const refused = findCause(error, AddressRefusedError);
  if (refused) {
    return new BackendError('bad_request', `upstream refused at connect: ${refused.message}`);
  }
  if (error instanceof OpenAI.APIError && typeof error.status === 'number') {
    return fromHttpError(error.status, error, apiKey);
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new BackendError('unavailable', 'upstream timed out');
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new BackendError('unavailable', 'upstream connection failed');
  }
  // A malformed 200 body or anything else unexpected from the wire: transient, bounded by retries.
  return new BackendError('unavailable', `upstream call failed: ${redact(describe(error), apiKey)}`);
}

/** Maps an upstream HTTP error status to the retry policy's terms. */
function fromHttpError(
  status: number,
  error: InstanceType<typeof OpenAI.APIError>,
  apiKey: string | null,
): BackendError {
  const message = upstreamMessage(status, error, apiKey);
  const retryAfterMs = parseRetryAfterMs(error.headers);
  if (status === 429) {
    return new BackendError('rate_limited', message, retryAfterMs, status);
  }
  if (status >= 300 && status < 400) {
    // Never followed: a public upstream must not send the worker elsewhere (SSRF).
    return new BackendError('unavailable', `upstream answered a redirect (${status}); redirects are not followed`, null, status);
  }
  if (BAD_REQUEST_STATUSES.has(status)) {
    const kind = isContextLengthError(error) ? 'context_length' : 'bad_request';
    return new BackendError(kind, message, null, status);
  }
  // 5xx, 408 and any status the table does not know: transient.
  return new BackendError('unavailable', message, retryAfterMs, status);
}

/**
 * Recognises "prompt + max_tokens exceed the context": OpenAI's `context_length_exceeded` code,
 * llama.cpp's `exceed_context_size_error` type, and vLLM's message (it sends no code).
 */
function isContextLengthError(error: InstanceType<typeof OpenAI.APIError>): boolean {
  if (error.code === 'context_length_exceeded' || error.type === 'exceed_context_size_error') {
    return true;
  }
  return /maximum context length|exceeds the available context size/i.test(error.message);
}

/**
 * Reads how long the upstream asked us to wait, in milliseconds: `retry-after-ms` first (OpenAI's
 * precise header), then `Retry-After` as delta-seconds or an HTTP date. `null` when absent or
 * unparseable; a date in the past is 0. Not capped here: the workflow's retry policy bounds it.
 */
export function parseRetryAfterMs(headers: Headers | undefined, now: number = Date.now()): number | null {
  const precise = parseNonNegativeNumber(headers?.get('retry-after-ms'));
  if (precise !== null) {
    return Math.ceil(precise);
  }
  const value = headers?.get('retry-after')?.trim();
  if (!value) {
    return null;
  }
  const seconds = parseNonNegativeNumber(value);
  if (seconds !== null) {
    return Math.ceil(seconds * 1000);
  }
  // An HTTP date always names a month; this keeps `Date.parse` from reading "-3" as a year.
  const date = /[a-z]/i.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** Parses a plain non-negative decimal (`"2"`, `"1.5"`); anything else is `null`. */
function parseNonNegativeNumber(value: string | null | undefined): number | null {
  if (value === null || value === undefined || !/^\s*\d+(\.\d+)?\s*$/.test(value)) {
    return null;
  }
  return Number(value);
}

/**
 * The message a failure carries into workflow history (and, for `bad_request`, to the caller).
 * Credential rejections get a fixed text: upstreams echo key fragments there, and the caller has no
 * business knowing about the deployment's credentials. Everything else is truncated, with the key
 * scrubbed in case an upstream echoes it.
 */
function upstreamMessage(
  status: number,
  error: InstanceType<typeof OpenAI.APIError>,
  apiKey: string | null,
): string {
  if (status === 401 || status === 403) {
    return `upstream rejected the deployment's credentials (${status})`;
  }
  return `upstream ${truncate(redact(error.message, apiKey))}`;
}

/** Replaces every occurrence of the API key in `text`. */
function redact(text: string, apiKey: string | null): string {
  return apiKey ? text.split(apiKey).join('[redacted]') : text;
}

/** Shortens an upstream message: it may be long, and it ends up in workflow history. */
function truncate(message: string): string {
  return message.length <= MAX_UPSTREAM_MESSAGE_CHARS ? message : `${message.slice(0, MAX_UPSTREAM_MESSAGE_CHARS)}…`;
}

/** The first error of class `type` in `error`'s cause chain. */
function findCause<T extends Error>(error: unknown, type: abstract new (...args: never[]) => T): T | null {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth += 1) {
    if (e instanceof type) return e;
  }
  return null;
}

/** A short description of an unknown thrown value. */
function describe(error: unknown): string {
  return truncate(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
}
