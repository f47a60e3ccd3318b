/**
 * `POST /v1/responses` as workflows, activities and the API pass it: the `responseRequest`
 * workflow's input (a chat request, plus what the response object echoes and what is stored), the
 * response object in OpenAI's shape, and the stored response a chain (`previous_response_id`)
 * continues. Pure types.
 */
import type { ChatMessageInput, ChatRequestInput } from './chat.js';

/** Prefix of the request IDs of `/v1/responses` requests; the request ID is the response's `id`. */
export const RESPONSES_REQUEST_PREFIX = 'resp';

/** `text.format` as the response object echoes it (OpenAI's shape). */
export type ResponseTextFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema: Record<string, unknown>; description?: string; strict: boolean | null };

/** One input item as `GET /v1/responses/{id}/input_items` lists it. */
export interface ResponseInputMessage {
  id: string;
  type: 'message';
  role: 'user' | 'assistant' | 'system' | 'developer';
  status: 'completed';
  content: Array<{ type: 'input_text'; text: string } | { type: 'output_text'; text: string; annotations: [] }>;
}

/** What the response object says of its request (the request's fields, validated). */
export interface ResponseEcho {
  instructions: string | null;
  maxOutputTokens: number | null;
  temperature: number | null;
  topP: number | null;
  previousResponseId: string | null;
  metadata: Record<string, string>;
  user: string | null;
  store: boolean;
  format: ResponseTextFormat;
  verbosity: 'low' | 'medium' | 'high' | null;
}

/** Input of the `responseRequest` workflow. Built by the API after validation and authentication. */
export interface ResponseRequestInput {
  /** The chat pipeline's input: instructions as a system message, then {@link conversation}. */
  request: ChatRequestInput;
  echo: ResponseEcho;
  /** The earlier turns of the chain (from the stored previous response), then this request's input. */
  conversation: ChatMessageInput[];
  /** This request's input items, as listed by `input_items`. */
  inputItems: ResponseInputMessage[];
}

/** The assistant message of a response. */
export interface ResponseOutputMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  status: 'completed' | 'incomplete' | 'in_progress';
  content: Array<{ type: 'output_text'; text: string; annotations: []; logprobs: [] }>;
}

/** `usage` of a response: the ledger row's tokens. */
export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** An OpenAI response object, as returned to clients. */
export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  status: 'completed' | 'incomplete' | 'in_progress' | 'failed';
  background: false;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: 'max_output_tokens' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  max_tool_calls: null;
  metadata: Record<string, string>;
  model: string;
  output: ResponseOutputMessage[];
  /** The concatenated text of the output (the SDKs' `output_text`). */
  output_text: string;
  parallel_tool_calls: false;
  previous_response_id: string | null;
  reasoning: { effort: null; summary: null };
  service_tier: 'default';
  store: boolean;
  temperature: number | null;
  text: { format: ResponseTextFormat; verbosity: 'low' | 'medium' | 'high' };
  tool_choice: 'none';
  tools: [];
  top_logprobs: 0;
  top_p: number | null;
  truncation: 'disabled';
  usage: ResponseUsage | null;
  user: string | null;
}

/** What `storeResponse` writes: the response, its input items and the conversation a chain continues. */
export interface StoreResponseInput {
  tenantId: string;
  response: ResponseObject;
  inputItems: ResponseInputMessage[];
  /** Every turn up to and including this response's output: what `previous_response_id` continues. */
  conversation: ChatMessageInput[];
}
