/**
 * Request-body validation for `/v1/chat/completions`, pure: everything decided before a
 * workflow exists. Errors name the offending parameter, as OpenAI's do.
 */
import { MESSAGE_ROLES, isMessageRole, type ChatMessageInput, type ChatParams, type MessageRole, type ToolDefinition } from '../contracts/chat.js';
import { samplingNumber, samplingStop, type NumericSamplingParam } from './sampling-params.js';
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';
import { checkChatFields } from './chat-fields.js';
import { requestMetadata } from './request-metadata.js';
import { validateChatExtras } from './chat-extras.js';
import { toolsBytes, validateToolCalls } from './tools.js';
import { requestModel } from './request-model.js';

export interface ValidChatBody {
  model: string;
  messages: ChatMessageInput[];
  params: ChatParams;
  user: string | null;
  /** The request's `metadata` (experiment targeting); null when absent or `{}`. */
  metadata: Record<string, string> | null;
  /** `stream: true`: answer with server-sent `chat.completion.chunk` events. */
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk carries the usage. */
  includeUsage: boolean;
}

/** `stream` and `stream_options` (OpenAI refuses `stream_options` without `stream: true`). */
function streamFields(raw: Record<string, unknown>): { stream: boolean; includeUsage: boolean } {
  if (raw.stream !== undefined && raw.stream !== null && typeof raw.stream !== 'boolean') throw invalid("'stream' must be a boolean", 'stream', 'invalid_type');
  const stream = raw.stream === true;
  const options = raw.stream_options;
  if (options === undefined || options === null) return { stream, includeUsage: false };
  if (!stream) throw invalid("'stream_options' is only allowed when 'stream' is true", 'stream_options', 'invalid_value');
  if (!isObject(options)) throw invalid("'stream_options' must be an object", 'stream_options', 'invalid_type');
  for (const key of Object.keys(options)) {
    if (key !== 'include_usage') throw invalid(`'stream_options.${key}' is not supported`, `stream_options.${key}`, 'unsupported_parameter');
  }
  const include = options.include_usage;
  if (include !== undefined && include !== null && typeof include !== 'boolean') throw invalid("'stream_options.include_usage' must be a boolean", 'stream_options.include_usage', 'invalid_type');
  return { stream, includeUsage: include === true };
}

/** A refused field of the body (the API answers 400 naming it). */
function invalid(message: string, param: string | null, code: string): InvalidRequestError {
  return new InvalidRequestError(message, param, code);
}

/** A numeric sampling field of the body (`param` as the client named it). */
function optionalNumber(body: Record<string, unknown>, name: NumericSamplingParam, param: string = name): number | null {
  return samplingNumber(name, body[param], param);
}

/** Text of a message's content: a string, or an array of `{type: "text", text}` parts (closed). */
function contentText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        if (isObject(part) && part.type === 'text' && typeof part.text === 'string') {
          const extra = Object.keys(part).find((k) => k !== 'type' && k !== 'text');
          if (extra !== undefined) throw invalid(`Unrecognized argument 'messages[${i}].content[${j}].${extra}'`, `messages[${i}].content[${j}].${extra}`, 'unrecognized_request_argument');
          return part.text;
        }
        throw invalid(`messages[${i}].content[${j}]: only text parts are supported`, `messages[${i}].content`, 'invalid_type');
      })
      .join('');
  }
  throw invalid(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`, 'invalid_type');
}

/** The fields each role's message may carry (OpenAI's message shapes); anything else is refused naming it. */
const MESSAGE_FIELDS: Record<MessageRole, readonly string[]> = {
  system: ['role', 'content', 'name'],
  developer: ['role', 'content', 'name'],
  user: ['role', 'content', 'name'],
  assistant: ['role', 'content', 'name', 'tool_calls', 'refusal', 'audio', 'function_call'],
  tool: ['role', 'content', 'tool_call_id'],
};

/**
 * One message, a closed shape per role: `content` (text; null only on an assistant message with
 * `tool_calls`), an assistant's `tool_calls` (domain/tools.ts), a tool message's `tool_call_id`
 * naming a call of an earlier assistant message not answered yet. `name` is refused (Sluice does
 * not render participant names on llama.cpp and never lets a field reach one backend only), as are a
 * non-null `refusal`, `audio` and the deprecated `function_call`; an unknown field is
 * `unrecognized_request_argument` naming `messages[i].<field>`.
 */
function validateMessage(m: unknown, i: number, callIds: Set<string>, answered: Set<string>): ChatMessageInput {
  if (!isObject(m)) throw invalid(`messages[${i}] must be an object`, `messages[${i}]`, 'invalid_type');
  if (!isMessageRole(m.role)) {
    throw invalid(`messages[${i}].role must be one of ${MESSAGE_ROLES.join(', ')}`, `messages[${i}].role`, 'invalid_value');
  }
  const role = m.role;
  const at = `messages[${i}]`;
  const extra = Object.keys(m).find((k) => !MESSAGE_FIELDS[role].includes(k));
  if (extra !== undefined) throw invalid(`Unrecognized argument '${at}.${extra}' for a ${role} message`, `${at}.${extra}`, 'unrecognized_request_argument');
  for (const refused of ['name', 'audio', 'function_call', 'refusal'] as const) {
    if (m[refused] !== undefined && m[refused] !== null) throw invalid(`'${at}.${refused}' is not supported`, `${at}.${refused}`, 'unsupported_parameter');
  }
  if (role === 'assistant' && m.tool_calls !== undefined && m.tool_calls !== null) {
    const toolCalls = validateToolCalls(m.tool_calls, `${at}.tool_calls`, callIds);
    const content = m.content === undefined || m.content === null ? '' : contentText(m.content, i);
    return { role, content, tool_calls: toolCalls };
  }
  if (m.content === undefined || m.content === null) throw invalid(`${at}.content is required`, `${at}.content`, 'missing_required_parameter');
  const content = contentText(m.content, i);
  if (role === 'tool') {
    const id = m.tool_call_id;
    if (typeof id !== 'string' || id === '') throw invalid(`'${at}.tool_call_id' is required on a tool message`, `${at}.tool_call_id`, 'missing_required_parameter');
    if (!callIds.has(id)) throw invalid(`'${at}.tool_call_id' must be the id of a tool call of an earlier assistant message`, `${at}.tool_call_id`, 'invalid_value');
    if (answered.has(id)) throw invalid(`'${at}.tool_call_id': that call is already answered by an earlier tool message`, `${at}.tool_call_id`, 'invalid_value');
    answered.add(id);
    return { role, content, tool_call_id: id };
  }
  return { role, content };
}

export function validateChatBody(raw: unknown): ValidChatBody {
  if (!isObject(raw)) throw invalid('The request body must be a JSON object', null, 'invalid_type');
  const model = requestModel(raw.model);
  if (!Array.isArray(raw.messages)) throw invalid("'messages' is required and must be an array", 'messages', 'missing_required_parameter');
  if (raw.messages.length === 0) throw invalid("'messages' must contain at least one message", 'messages', 'invalid_value');
  const callIds = new Set<string>();
  const answered = new Set<string>();
  const messages = raw.messages.map((m, i) => validateMessage(m, i, callIds, answered));
  const streaming = streamFields(raw);
  if (raw.n !== undefined && raw.n !== null && raw.n !== 1) throw invalid("only 'n': 1 is supported", 'n', 'unsupported_parameter');
  // Every other field: known (else `unrecognized_request_argument`) and honoured somewhere (domain/chat-fields.ts).
  checkChatFields(raw);
  const extras = validateChatExtras(raw);
  const maxTokensName = raw.max_completion_tokens !== undefined && raw.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optionalNumber(raw, 'max_tokens', maxTokensName);
  const stop = samplingStop(raw.stop);
  if (raw.user !== undefined && raw.user !== null && typeof raw.user !== 'string') throw invalid("'user' must be a string", 'user', 'invalid_type');
  const safetyId = raw.safety_identifier;
  if (safetyId !== undefined && safetyId !== null && (typeof safetyId !== 'string' || safetyId.length > 256)) {
    throw invalid("'safety_identifier' must be a string of at most 256 characters", 'safety_identifier', 'invalid_type');
  }
  const subject = typeof raw.user === 'string' && raw.user !== '' ? raw.user : typeof safetyId === 'string' && safetyId !== '' ? safetyId : null;
  const metadata = requestMetadata(raw.metadata);
  return {
    model,
    messages,
    params: {
      maxTokens,
      temperature: optionalNumber(raw, 'temperature'),
      topP: optionalNumber(raw, 'top_p'),
      seed: optionalNumber(raw, 'seed'),
      stop,
      ...(extras !== null ? { extras } : {}),
    },
    user: subject,
    metadata: metadata !== null && Object.keys(metadata).length > 0 ? metadata : null,
    ...streaming,
  };
}

/** Bytes of the prompt text (with its tool calls and the request's tool definitions): the basis of the token estimate. */
export function promptBytes(messages: readonly ChatMessageInput[], tools?: readonly ToolDefinition[]): number {
  const callBytes = (m: ChatMessageInput) => (m.tool_calls ?? []).reduce((n, c) => n + Buffer.byteLength(c.id) + Buffer.byteLength(c.function.name) + Buffer.byteLength(c.function.arguments) + 8, 0)
    + (m.tool_call_id !== undefined ? Buffer.byteLength(m.tool_call_id) : 0);
  return messages.reduce((n, m) => n + Buffer.byteLength(m.content) + Buffer.byteLength(m.role) + 4 + callBytes(m), toolsBytes(tools));
}

/**
 * Prompt tokens assumed for the reservation before the tokenizer has counted: one per byte, an
 * upper bound for byte-fallback vocabularies, so a reservation never holds less than is spent.
 * Settlement replaces it with the tokenizer's count.
 */
export function estimatePromptTokens(messages: readonly ChatMessageInput[], tools?: readonly ToolDefinition[]): number {
  return promptBytes(messages, tools);
}

/**
 * A lower bound of prompt tokens for any common tokenizer (no piece is longer than 16 bytes):
 * a prompt whose lower bound already exceeds the context is refused before a workflow starts.
 */
export function minPromptTokens(messages: readonly ChatMessageInput[], tools?: readonly ToolDefinition[]): number {
  return Math.ceil(promptBytes(messages, tools) / 16);
}

/** A model's token limits, as its `models` row holds them. */
export interface ModelTokenLimits {
  max_output_tokens: number;
  context_length: number;
}

/**
 * A `max_tokens` (null: absent) within the model's output limit, else an {@link InvalidRequestError}
 * naming `param` (`invalid_value`). Part of {@link checkTokenLimits}; experiment variants' overrides
 * are checked with it alone (they have no messages).
 */
export function checkMaxTokens(model: Pick<ModelTokenLimits, 'max_output_tokens'>, maxTokens: number | null, param = 'max_tokens'): void {
  if (maxTokens !== null && maxTokens > model.max_output_tokens) {
    throw invalid(`max_tokens is too large: ${maxTokens}. This model supports at most ${model.max_output_tokens} completion tokens.`, param, 'invalid_value');
  }
}

/**
 * The completion-size rule of a chat request against its model, before any workflow runs (the
 * chat route and batch validation both apply it): `max_tokens`, when given, at most the model's
 * output limit, and the prompt's lower bound ({@link minPromptTokens}) plus the completion within
 * the model's context. Throws an {@link InvalidRequestError} naming `max_tokens` (`invalid_value`)
 * or `messages` (`context_length_exceeded`).
 *
 * @param maxTokens - the request's `max_tokens`; null when absent.
 * @param assumedMaxTokens - the completion the context must hold when `max_tokens` is absent.
 * @returns the completion tokens checked: `maxTokens ?? assumedMaxTokens`.
 */
export function checkTokenLimits(model: ModelTokenLimits, messages: readonly ChatMessageInput[], maxTokens: number | null, assumedMaxTokens: number): number {
  checkMaxTokens(model, maxTokens);
  const completion = maxTokens ?? assumedMaxTokens;
  if (minPromptTokens(messages) + completion > model.context_length) {
    throw invalid(`This model's maximum context length is ${model.context_length} tokens; your messages are longer.`, 'messages', 'context_length_exceeded');
  }
  return completion;
}
