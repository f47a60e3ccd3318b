/**
 * The contract between the inference activity and whatever runs a model.
 * One backend serves one deployment (a llama.cpp GGUF, an OpenAI-compatible upstream, or the
 * instant in-process backend used by benchmarks).
 */

import type { ConsumedTokens } from '../../contracts/chat.js';

/** A chat message as the backend receives it: already validated, content flattened to text. */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
}

/** Sampling parameters, resolved (defaults applied, experiment overrides merged). */
export interface GenerateParams {
  /** Upper bound of completion tokens. */
  maxTokens: number;
  /** 0 means greedy (deterministic). */
  temperature: number;
  topP: number | null;
  seed: number | null;
  stop: string[] | null;
}

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
  content: string;
  finishReason: 'stop' | 'length';
  /** Counted by the model's tokenizer (or reported by the upstream), never estimated. */
  promptTokens: number;
  completionTokens: number;
}

export interface InferenceBackend {
  generate(request: GenerateRequest): Promise<GenerateResult>;
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
