/**
 * The contract between the inference activity and whatever runs a model.
 * One backend serves one deployment (a llama.cpp GGUF, an OpenAI-compatible upstream, or the
 * instant in-process backend used by benchmarks).
 */

import type { ChatMessageInput, ConsumedTokens, FinishReason, GenerateParams, TokenLogprob, ToolCall } from '../../contracts/chat.js';

export type { GenerateParams };

/** A chat message as the backend receives it: already validated, content flattened to text. */
export type ChatMessage = ChatMessageInput;

export interface GenerateRequest {
  messages: ChatMessage[];
  params: GenerateParams;
  /** Aborted when the activity is cancelled (job cancel, workflow timeout, worker shutdown). */
  signal: AbortSignal;
  /**
   * Called as tokens are produced so the activity can heartbeat; `promptTokens` once the prompt
   * was evaluated (its tokens are spent even if the worker dies before the end).
   */
  onProgress?: (completionTokens: number, promptTokens: number) => void;
  /**
   * Streamed requests: called with each new piece of the answer's text as it is generated, never
   * taken back; the pieces join to `GenerateResult.content`. A backend that cannot stream may
   * leave it uncalled (the caller sends the whole content at the end). @default undefined
   */
  onDelta?: (text: string) => void;
  /**
   * `batch`: a batch line, served after every waiting interactive (sync or async) request by a
   * backend that queues requests for its slots. @default 'interactive'
   */
  priority?: 'interactive' | 'batch';
  /** Batch lines with different keys (their tenants) take turns for a slot. @default '' */
  fairnessKey?: string;
}

export interface GenerateResult {
  /** The answer's text (`''` when it is only tool calls). */
  content: string;
  /**
   * The calls the answer makes (absent: none; `finishReason` is then `tool_calls`). An empty `id`
   * is given by the inference activity (`toolCallId`, deterministic per request); an upstream's IDs
   * are relayed.
   */
  toolCalls?: ToolCall[];
  finishReason: FinishReason;
  /** Counted by the model's tokenizer (or reported by the upstream), never estimated. */
  promptTokens: number;
  completionTokens: number;
  /** Per content token, when `params.extras.logprobs` asked for them. */
  logprobs?: TokenLogprob[];
}

/** Every input of one embeddings request, for one backend call (already validated). */
export interface EmbedRequest {
  /** Texts, or token IDs of the model's vocabulary. */
  inputs: Array<string | number[]>;
  /** Fewer dimensions than the model's own; null = all. */
  dimensions: number | null;
  /** The reservation's prompt estimate: the most prompt tokens an upstream's report is billed. */
  maxPromptTokens: number;
  signal: AbortSignal;
}

export interface EmbedResult {
  /** One vector per input, in order. */
  vectors: Float32Array[];
  /** Counted by the model's tokenizer (or reported by the upstream), never estimated. */
  promptTokens: number;
}

export interface InferenceBackend {
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** Embeddings of every input of a request; absent on backends that serve none (`bad_request`). */
  embed?(request: EmbedRequest): Promise<EmbedResult>;
  close(): Promise<void>;
}

/**
 * Why a backend call failed, in the terms the workflow's retry policy needs.
 * - `bad_request`: the input can never succeed (non-retryable, surfaces as HTTP 400).
 * - `context_length`: prompt + max_tokens exceed the model's context (non-retryable, HTTP 400).
 * - `rate_limited`: upstream said slow down; retry after `retryAfterMs` if given.
 * - `unavailable`: transient (5xx, connection refused, timeout); retry with backoff.
 * - `too_large`: the response or completion is larger than Sluice can carry (Temporal's payload
 *   limit): non-retryable and no fallback, since every retry would buy the same completion again.
 */
export type BackendErrorKind = 'bad_request' | 'context_length' | 'rate_limited' | 'unavailable' | 'too_large';

export class BackendError extends Error {
  override readonly name = 'BackendError';
  constructor(
    readonly kind: BackendErrorKind,
    message: string,
    readonly retryAfterMs: number | null = null,
    readonly status: number | null = null,
    /** Tokens the deployment spent on the failed call, when known (an upstream that reported usage). */
    readonly consumed: ConsumedTokens | null = null,
  ) {
    super(message);
  }
}

/**
 * An embeddings input the backend refuses for a reason Sluice states itself (a token outside the
 * model's vocabulary, an input longer than its context, more `dimensions` than it has): the
 * message is written for the caller and names no internals, `param` and `code` are the client's.
 */
export class InvalidEmbeddingInput extends BackendError {
  constructor(message: string, readonly param: string, readonly code: string) {
    super('bad_request', message);
  }
}

export type { ConsumedTokens };

/**
 * A generation stopped part way (cancelled, or failed after the prompt was evaluated): `cause` is
 * the abort reason or error as it would have been thrown, `consumed` what was spent until then.
 */
export class InterruptedGeneration extends Error {
  override readonly name = 'InterruptedGeneration';
  constructor(
    override readonly cause: unknown,
    readonly consumed: ConsumedTokens,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}
