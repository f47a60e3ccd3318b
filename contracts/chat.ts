/** A chat request as workflows, activities and the API pass it: inputs, the completion, inference in and out. Pure types. */

export type RequestKind = 'sync' | 'async' | 'batch';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface ChatMessageInput {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
}

/** Sampling parameters as the client asked for them (null = model default). */
export interface ChatParams {
  maxTokens: number | null;
  temperature: number | null;
  topP: number | null;
  seed: number | null;
  stop: string[] | null;
}

/** Input of the `chatRequest` workflow. Built by the API after validation and authentication. */
export interface ChatRequestInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  /** Sticky subject for experiment assignment (the `user` field, else the key). */
  subject: string;
  model: string;
  messages: ChatMessageInput[];
  params: ChatParams;
  /** Estimated prompt tokens, for the reservation; the worker counts the real ones. */
  promptTokensEstimate: number;
  /** Unix seconds of acceptance, used as the completion's `created`. */
  created: number;
  batchId: string | null;
  /**
   * `stream: true`: the inference attempt publishes its text to the stream channel as it goes
   * (db/repositories/streams.ts). Absent in histories recorded before streaming. @default false
   */
  stream?: boolean;
}

/** An OpenAI chat completion object, as returned to clients. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: null;
    finish_reason: 'stop' | 'length';
  }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** The part of a deployment the inference worker needs to serve it. */
export interface DeploymentTarget {
  id: string;
  model: string;
  pool: string;
  provider: 'llama-cpp' | 'openai-compatible' | 'instant';
  ggufPath: string | null;
  baseUrl: string | null;
  apiKeyRef: string | null;
  upstreamModel: string | null;
  weight: number;
  priority: number;
}

export interface InferInput {
  requestId: string;
  /** The request's tenant: batch lines of different tenants take turns for a backend's slots. */
  tenantId: string;
  deployment: DeploymentTarget;
  messages: ChatMessageInput[];
  params: { maxTokens: number; temperature: number; topP: number | null; seed: number | null; stop: string[] | null };
  /** Publish the text to the stream channel as it is generated (see `ChatRequestInput.stream`). @default false */
  stream?: boolean;
}

export interface InferOutput {
  content: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  /** Tokens spent by earlier attempts of this activity that failed after spending them (null: none). */
  failedAttempts: ConsumedTokens | null;
}

/** Tokens a generation used before it failed or was cancelled: what the deployment really spent. */
export interface ConsumedTokens {
  promptTokens: number;
  completionTokens: number;
}

/**
 * The usage of one request step, as the workflow reports it to the ledger (`settle` and
 * `recordConsumed`, for sync, async and batch requests alike): the one definition of a usage row.
 * The ledger adds the price and cost (`UsageInput`, db/repositories/quota.ts) and stores it in
 * the `usage` table (`UsageTable`, db/tables/requests.ts), one row per (request, step).
 * An activity payload: changing its fields changes what recorded histories carry.
 */
export interface UsageEntry extends ConsumedTokens {
  requestId: string;
  /** `infer` for the served attempt; `infer:failed:<deployment>` or `infer:cancelled:<deployment>` for unbilled ones. */
  step: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  /** The effective model (a variant's, else the requested one). */
  model: string;
  deploymentId: string;
  pool: string;
  variant: string | null;
  latencyMs: number;
}
