/** An embeddings request as the API, workflow and activities pass it (issue 14). Pure types. */
import type { DeploymentTarget, RequestKind } from './chat.js';

/** One input of a request: text, or token IDs of the model's vocabulary. */
export type EmbeddingInputItem = string | number[];

/** Input of the `embeddingsRequest` workflow. Built by the API after validation and authentication. */
export interface EmbeddingsRequestInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  /** Sticky subject for experiment assignment (the `user` field, else the key). */
  subject: string;
  model: string;
  inputs: EmbeddingInputItem[];
  /** Fewer dimensions than the model's own (models with `accepts_dimensions` only); null = all. */
  dimensions: number | null;
  /** Upper bound of the prompt tokens, for the reservation; the worker counts the real ones. */
  promptTokensEstimate: number;
  /** Unix seconds of acceptance. */
  created: number;
}

/** The `embed` activity's input: every input of one request, on one deployment, in one call. */
export interface EmbedInput {
  requestId: string;
  tenantId: string;
  deployment: DeploymentTarget;
  inputs: EmbeddingInputItem[];
  dimensions: number | null;
  /** The reservation's prompt estimate: an upstream reporting more is billed this (docs/billing.md). */
  maxPromptTokens: number;
}

/** The `embed` activity's result. */
export interface EmbedOutput {
  /**
   * One vector per input, in order, each as OpenAI's `base64` encoding (little-endian float32):
   * a quarter of the JSON size, so a request's vectors fit a Temporal payload.
   */
  vectors: string[];
  promptTokens: number;
  latencyMs: number;
}

/** The workflow's result: what the API answers, vectors still base64 (the route decodes for `float`). */
export interface EmbeddingsResult {
  object: 'list';
  data: Array<{ object: 'embedding'; index: number; embedding: string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/**
 * Most vector values one request may return: 4 bytes each, base64, stays well under Temporal's
 * 2 MB payload limit (a 1536-dim model: 170 inputs; the tiny demo model: 4096).
 */
export const MAX_EMBEDDING_VALUES = 262_144;

/** Most inputs in one request (OpenAI's limit). */
export const MAX_EMBEDDING_INPUTS = 2048;
