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

/**
 * A function tool of a Responses request, as the response echoes it (OpenAI's flat shape; the chat
 * pipeline runs it as `{type: 'function', function: {…}}`, `ToolDefinition`). `strict` defaults to
 * true, as on OpenAI's Responses API.
 */
export interface ResponseFunctionTool {
  type: 'function';
  name: string;
  description: string | null;
  parameters: Record<string, unknown> | null;
  strict: boolean;
}

/** `tool_choice` of a Responses request (OpenAI's shape: a named function is `{type, name}`). */
export type ResponseToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; name: string };

/**
 * A function call: an output item of a response (the model asks the client to run `name`), and an
 * input item of a later request that carries it back. `id` is the item's (`fc_…`), `call_id` the
 * call's (`call_…`), which a `function_call_output` names.
 */
export interface ResponseFunctionCall {
  id: string;
  type: 'function_call';
  call_id: string;
  name: string;
  /** JSON text; from a llama.cpp deployment it validates against the function's `parameters`. */
  arguments: string;
  status: 'completed' | 'incomplete' | 'in_progress';
}

/** An input item answering a function call (`call_id`) with the client's `output`. */
export interface ResponseFunctionCallOutput {
  id: string;
  type: 'function_call_output';
  call_id: string;
  output: string;
  status: 'completed';
}

/** One input item as `input_items` lists it. */
export type ResponseInputItem = ResponseInputMessage | ResponseFunctionCall | ResponseFunctionCallOutput;

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
  /** Function tools (absent in histories recorded before tools on /v1/responses: none). */
  tools?: ResponseFunctionTool[];
  /** Absent: `none` without tools, `auto` with them. */
  toolChoice?: ResponseToolChoice;
  /** Absent: false without tools, true with them. */
  parallelToolCalls?: boolean;
}

/** Input of the `responseRequest` workflow. Built by the API after validation and authentication. */
export interface ResponseRequestInput {
  /** The chat pipeline's input: instructions as a system message, then {@link conversation}. */
  request: ChatRequestInput;
  echo: ResponseEcho;
  /** The earlier turns of the chain (from the stored previous response), then this request's input. */
  conversation: ChatMessageInput[];
  /** This request's input items, as listed by `input_items`. */
  inputItems: ResponseInputItem[];
}

/** The assistant message of a response. */
export interface ResponseOutputMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  status: 'completed' | 'incomplete' | 'in_progress';
  content: Array<{ type: 'output_text'; text: string; annotations: []; logprobs: [] }>;
}

/** One output item of a response. */
export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall;

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
  /** The assistant message (when it has text, or there is no call), then the function calls. */
  output: ResponseOutputItem[];
  /** The concatenated text of the output (the SDKs' `output_text`). */
  output_text: string;
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  reasoning: { effort: null; summary: null };
  service_tier: 'default';
  store: boolean;
  temperature: number | null;
  text: { format: ResponseTextFormat; verbosity: 'low' | 'medium' | 'high' };
  tool_choice: ResponseToolChoice;
  tools: ResponseFunctionTool[];
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
  inputItems: ResponseInputItem[];
  /** Every turn up to and including this response's output: what `previous_response_id` continues. */
  conversation: ChatMessageInput[];
}
