/** A chat request as workflows, activities and the API pass it: inputs, the completion, inference in and out. Pure types. */

export type RequestKind = 'sync' | 'async' | 'batch';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** The roles a chat message may have: the one list (validation, the backend boundary, the backends' switches). */
export const MESSAGE_ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;
export type MessageRole = (typeof MESSAGE_ROLES)[number];

/** True when `v` is one of {@link MESSAGE_ROLES}. */
export function isMessageRole(v: unknown): v is MessageRole {
  return (MESSAGE_ROLES as readonly unknown[]).includes(v);
}

/**
 * One chat message, validated (`domain/chat-validation.ts`) and flattened: `content` is its text
 * (text parts joined; `''` for an assistant message that only calls tools, whose OpenAI `content`
 * was null). Tool fields are present only where OpenAI allows them: `tool_calls` on an assistant
 * message, `tool_call_id` on a `tool` message (naming a call of an earlier assistant message).
 */
export interface ChatMessageInput {
  role: MessageRole;
  content: string;
  /** An assistant message's calls (1 to {@link MAX_TOOL_CALLS}), in OpenAI's shape. Absent: none. */
  tool_calls?: ToolCall[];
  /** A `tool` message: the `id` of the call it answers. */
  tool_call_id?: string;
}

/**
 * A tool call, in OpenAI's shape: in an assistant message of a request, and in a completion's
 * `message.tool_calls`. `arguments` is JSON text (from a llama.cpp deployment it parses and
 * validates against the function's `parameters`; from an upstream it is relayed as received).
 * Ids Sluice generates are `call_` + 24 hex digits, derived from the request ID and the call's
 * index, so every retry and replay of a request agrees on them.
 */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** Most calls in one assistant message (and in one completion). */
export const MAX_TOOL_CALLS = 128;

/**
 * A function tool of a request (`tools[i]`), validated: `parameters` is a JSON Schema of an object
 * (absent: no parameters), `strict` as the client gave it. The Responses API's function tools map
 * onto this shape (name, description, parameters, strict).
 */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

/**
 * `tool_choice`, validated: `auto` (text or calls), `none` (text only, the tools still described
 * to the model), `required` (at least one call), or one named function (a call of it).
 */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

/** Sampling parameters as the client asked for them (null = model default). */
export interface ChatParams {
  maxTokens: number | null;
  temperature: number | null;
  topP: number | null;
  seed: number | null;
  stop: string[] | null;
  /** Generation options beyond sampling (absent: none asked for). */
  extras?: ChatExtras;
  /**
   * A legacy text completion (`/v1/completions`): the one user message is the raw prompt, continued
   * without a chat template. Absent for chat requests.
   */
  rawPrompt?: true;
}

/**
 * Generation options beyond the sampling basics, under their OpenAI names and in their OpenAI
 * shapes, validated (`domain/chat-extras.ts`); only the ones a request asks for are present, so a
 * key is a field name of the field table (`domain/chat-fields.ts`) and each backend checks the
 * keys against its column before it runs. An openai-compatible upstream receives them unchanged.
 */
export interface ChatExtras {
  response_format?: ResponseFormat;
  presence_penalty?: number;
  frequency_penalty?: number;
  /** Token ID (decimal string, the backend's vocabulary) → bias added to its logit, -100 to 100. */
  logit_bias?: Record<string, number>;
  reasoning_effort?: 'none' | 'minimal' | 'low' | 'medium' | 'high';
  verbosity?: 'low' | 'medium' | 'high';
  prompt_cache_key?: string;
  logprobs?: true;
  /** Most likely alternatives per token, 0 to 20 (with `logprobs`). */
  top_logprobs?: number;
  /** Function tools (1 to 128, unique names); `domain/tools.ts`. */
  tools?: ToolDefinition[];
  /** Only with `tools` (absent: `auto`). */
  tool_choice?: ToolChoice;
  /** Only with `tools`, as the client gave it (absent: `true`); `false`: at most one call. */
  parallel_tool_calls?: boolean;
}

/** One generated token's log probability and its most likely alternatives (OpenAI's shape). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] | null }>;
}

/** A requested `response_format` (`text` is the default and never carried). */
export type ResponseFormat =
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean } };

/** Input of the `chatRequest` workflow. Built by the API after validation and authentication. */
export interface ChatRequestInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  /** Sticky subject for experiment assignment (the `user` field, else the key). */
  subject: string;
  /**
   * The request's `metadata`, for experiment targeting (`targeting.metadata`). Absent when the
   * request has none (and in histories recorded before it existed).
   */
  metadata?: Record<string, string>;
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
  /**
   * What the request's headers ask of the response cache (README "Response cache"): absent = the
   * tenant's setting decides. Absent in histories recorded before the cache.
   */
  cache?: CacheDirective;
  /**
   * `true`: the API answers this sync request as soon as its served attempt's output is in the
   * workflow's history (`api/answer.ts`), before the settlement. From then on the attempt is the
   * caller's, so the workflow settles it whatever cancel follows, and retries its settlement until
   * it succeeds. Absent on every other request and in histories recorded before it. @default false
   */
  answeredEarly?: true;
}

/**
 * The summary (user metadata) of an `infer` attempt whose workflow honours `answeredEarly`: the
 * API answers from the history only an attempt scheduled with it, so a workflow run by a worker of
 * a release that ignores the flag is answered by its result. Shown in the Temporal UI too.
 */
export const ANSWERED_EARLY_SUMMARY = 'answered early: settled whatever cancel follows';

/**
 * A request's response-cache directive: `no-cache` (`Cache-Control: no-cache`) looks nothing up
 * but stores the answer, `no-store` (`Cache-Control: no-store`) neither looks up nor stores,
 * `force` (`X-Sluice-Cache: force`) looks up and stores even when the tenant's setting is off.
 */
export type CacheDirective = 'no-cache' | 'no-store' | 'force';

/** An OpenAI chat completion object, as returned to clients. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: Array<{
    index: number;
    /** `content` is null when the answer is only tool calls; `tool_calls` is present only when there are some. */
    message: { role: 'assistant'; content: string | null; refusal: null; tool_calls?: ToolCall[] };
    logprobs: { content: TokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason;
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
  params: GenerateParams;
  /** Publish the text to the stream channel as it is generated (see `ChatRequestInput.stream`). @default false */
  stream?: boolean;
}

/** Sampling parameters, resolved (defaults applied, experiment overrides merged): what a backend runs with. */
export interface GenerateParams {
  /** Upper bound of completion tokens. */
  maxTokens: number;
  /** 0 means greedy (deterministic). */
  temperature: number;
  topP: number | null;
  seed: number | null;
  stop: string[] | null;
  /** Options beyond sampling, under their OpenAI names; absent: none (`domain/chat-fields.ts` says which backend honours which). */
  extras?: ChatExtras;
  /** The one user message is a raw prompt to continue, without a chat template (`/v1/completions`). */
  rawPrompt?: true;
}

/** Why a completion ended: a stop (the model's own end or a stop sequence), `max_tokens`, or tool calls to make. */
export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface InferOutput {
  /** The answer's text (`''` when it is only tool calls). */
  content: string;
  /** The calls the answer makes (absent: none); `finishReason` is then `tool_calls`. */
  toolCalls?: ToolCall[];
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** Per content token, when the request asked for `logprobs`. */
  logprobs?: TokenLogprob[];
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
  /**
   * Answered from the response cache: priced at the model's cache price, marked `cached` in the
   * ledger, the token counts those of the stored response. Absent: generated.
   */
  cached?: true;
}
