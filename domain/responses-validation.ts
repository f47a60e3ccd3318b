/**
 * Request-body validation for `POST /v1/responses`, pure: a closed table of the fields of OpenAI's
 * Responses create reference, each honoured or refused with a 400 naming it (a field outside the
 * table is `unrecognized_request_argument`, as OpenAI answers), and the body turned into the chat
 * pipeline's input, so a response is authorized, reserved, billed and audited as a chat
 * completion is. `text.format` becomes the chat path's `response_format` (enforced by grammar on
 * llama.cpp, `domain/response-format.ts`); errors of that path are renamed to the Responses names
 * by {@link responsesParam}.
 */
import type { ChatExtras, ChatMessageInput, ChatParams } from '../contracts/chat.js';
import type { ValidChatBody } from './chat-validation.js';
import type { ResponseEcho, ResponseInputItem, ResponseInputMessage, ResponseTextFormat } from '../contracts/responses.js';
import { validateChatExtras } from './chat-extras.js';
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';
import { requestMetadata } from './request-metadata.js';
import { samplingNumber } from './sampling-params.js';
import { checkCallOutputs, functionCallOutputTurnOf, functionCallTurnOf, responseToolsOf, responsesToolParam, type FunctionCallOutputTurn, type FunctionCallTurn } from './responses-tools.js';
import { requestModel } from './request-model.js';

/** Every field of OpenAI's Responses create reference (December 2026), with what Sluice does with it (README). */
export const RESPONSE_FIELDS = {
  model: 'honoured',
  input: 'honoured: a string, or items: messages (roles user, assistant, system, developer) whose content is a string or `input_text` (`output_text` for assistant) parts, `function_call` and `function_call_output` (an earlier call answered); other item and part types are refused naming their path',
  instructions: 'honoured: a system message before the input (not carried to a response chained after it, as OpenAI)',
  max_output_tokens: "honoured: bounded by the model's `max_output_tokens`",
  temperature: 'honoured',
  top_p: 'honoured',
  text: 'honoured: `format` (`text`, `json_object`, `json_schema` with `strict`, enforced by grammar on llama.cpp) and `verbosity` (upstream deployments only)',
  store: 'honoured (default true): the response is kept for `GET /v1/responses/{id}` and `previous_response_id`, under the tenant\'s retention',
  previous_response_id: 'honoured: a stored response of the same tenant; its turns come before the input',
  metadata: 'honoured: up to 16 string pairs, stored and returned',
  user: 'honoured: the sticky subject of experiment assignment',
  safety_identifier: 'honoured: as `user` (when `user` is absent)',
  stream: 'honoured: server-sent Responses events (`response.created` … `response.completed`)',
  stream_options: 'only `include_obfuscation: false` (no obfuscation padding is sent)',
  prompt_cache_key: 'upstream deployments: passed on; llama.cpp: refused',
  tools: 'honoured: function tools, run as the chat path runs them (forced by grammar on llama.cpp for `required` or a named function, passed on to an upstream); built-in tools (web search, file search, code interpreter, computer use, image generation, MCP, shell) and custom tools are refused naming `tools[i].type`',
  tool_choice: 'honoured: `none`, `auto`, `required` or `{type: \'function\', name}` (without tools only `none` or `auto`)',
  parallel_tool_calls: 'honoured as on chat (`false`: at most one call)',
  max_tool_calls: 'refused: a response is one generation, its calls made together (`parallel_tool_calls: false` for at most one)',
  include: 'only `[]`',
  reasoning: 'refused (no reasoning models)',
  top_logprobs: 'only 0',
  truncation: 'only `disabled`: an input longer than the context is a 400',
  background: 'only `false` (no background responses)',
  conversation: 'refused (the Conversations API is not offered; chain with `previous_response_id`)',
  prompt: 'refused (no stored prompt templates)',
  prompt_cache_retention: "refused: how long an upstream keeps a tenant's prompts is the operator's contract",
  service_tier: '`auto` or `default` only',
} as const;

export type ResponseFieldName = keyof typeof RESPONSE_FIELDS;

/** Most input items in one request. */
export const MAX_INPUT_ITEMS = 2048;
/** Longest `previous_response_id`. */
const MAX_ID = 128;

/** One message of the input as given: its role and its parts' kinds (for `input_items`). */
export interface ResponseInputMessageTurn {
  type: 'message';
  role: ResponseInputMessage['role'];
  parts: Array<{ type: 'input_text' | 'output_text'; text: string }>;
}

/** One input item as given: a message, a function call or a call's output. */
export type ResponseInputTurn = ResponseInputMessageTurn | FunctionCallTurn | FunctionCallOutputTurn;

export interface ValidResponsesBody {
  model: string;
  input: ResponseInputTurn[];
  instructions: string | null;
  params: ChatParams;
  previousResponseId: string | null;
  store: boolean;
  stream: boolean;
  /** The subject of experiment assignment (`user`, else `safety_identifier`). */
  subject: string | null;
  /** What the response object says of the request (`previousResponseId` included). */
  echo: ResponseEcho;
}

const given = (v: unknown): boolean => v !== undefined && v !== null;

function invalid(message: string, param: string | null, code = 'invalid_value'): InvalidRequestError {
  return new InvalidRequestError(message, param, code);
}

function unsupported(name: string, why: string, param: string = name): InvalidRequestError {
  return new InvalidRequestError(`'${name}' is not supported: ${why}`, param, 'unsupported_parameter');
}

/** Checks a `/v1/responses` body; throws {@link InvalidRequestError} naming the first bad field. */
export function validateResponsesBody(raw: unknown): ValidResponsesBody {
  if (!isObject(raw)) throw invalid('The request body must be a JSON object', null, 'invalid_type');
  for (const name of Object.keys(raw)) {
    if (!Object.prototype.hasOwnProperty.call(RESPONSE_FIELDS, name)) throw invalid(`Unrecognized request argument supplied: ${name}`, name, 'unrecognized_request_argument');
  }
  const model = requestModel(raw.model);
  const tools = responseToolsOf(raw);
  const input = inputOf(raw.input);
  if (given(raw.instructions) && typeof raw.instructions !== 'string') throw invalid("'instructions' must be a string", 'instructions', 'invalid_type');
  const instructions = typeof raw.instructions === 'string' && raw.instructions !== '' ? raw.instructions : null;
  const maxTokens = samplingNumber('max_tokens', raw.max_output_tokens, 'max_output_tokens');
  const temperature = samplingNumber('temperature', raw.temperature);
  const topP = samplingNumber('top_p', raw.top_p);
  if (given(raw.store) && typeof raw.store !== 'boolean') throw invalid("'store' must be a boolean", 'store', 'invalid_type');
  if (given(raw.stream) && typeof raw.stream !== 'boolean') throw invalid("'stream' must be a boolean", 'stream', 'invalid_type');
  const stream = raw.stream === true;
  streamOptions(raw.stream_options, stream);
  const previousResponseId = previousIdOf(raw.previous_response_id);
  // Unchained, every output answers a call of this input; chained, the route checks against the chain.
  if (previousResponseId === null) checkCallOutputs([], input);
  const metadata = requestMetadata(raw.metadata) ?? {};
  const subject = subjectOf(raw);
  refuseNeutralOnly(raw);
  const { format, verbosity, extras: textExtras } = textOf(raw.text);
  const extras: ChatExtras = { ...textExtras, ...tools.extras };
  if (given(raw.prompt_cache_key)) {
    const cache = validateChatExtras({ prompt_cache_key: raw.prompt_cache_key });
    if (cache?.prompt_cache_key !== undefined) extras.prompt_cache_key = cache.prompt_cache_key;
  }
  const store = raw.store !== false;
  return {
    model,
    input,
    instructions,
    params: { maxTokens, temperature, topP, seed: null, stop: null, ...(Object.keys(extras).length > 0 ? { extras } : {}) },
    previousResponseId,
    store,
    stream,
    subject,
    echo: {
      instructions, maxOutputTokens: maxTokens, temperature, topP, previousResponseId, metadata,
      user: typeof raw.user === 'string' && raw.user !== '' ? raw.user : null, store, format, verbosity,
      ...(tools.tools.length > 0 ? { tools: tools.tools, toolChoice: tools.toolChoice, parallelToolCalls: tools.parallelToolCalls } : {}),
    },
  };
}

/** Fields accepted only with the value that asks for nothing. */
function refuseNeutralOnly(raw: Record<string, unknown>): void {
  if (given(raw.max_tool_calls)) throw unsupported('max_tool_calls', "a response is one generation; use 'parallel_tool_calls': false for at most one call");
  if (given(raw.include) && !(Array.isArray(raw.include) && raw.include.length === 0)) throw unsupported('include', 'no extra output data is offered');
  if (given(raw.reasoning) && !(isObject(raw.reasoning) && Object.values(raw.reasoning).every((v) => v === null || v === undefined))) throw unsupported('reasoning', 'no reasoning models');
  if (given(raw.top_logprobs) && raw.top_logprobs !== 0) throw unsupported('top_logprobs', 'log probabilities are not returned on /v1/responses');
  if (given(raw.truncation) && raw.truncation !== 'disabled') throw unsupported('truncation', "only 'disabled': an input longer than the context is refused");
  if (given(raw.background) && raw.background !== false) throw unsupported('background', 'no background responses');
  if (given(raw.conversation)) throw unsupported('conversation', "the Conversations API is not offered; chain with 'previous_response_id'");
  if (given(raw.prompt)) throw unsupported('prompt', 'no stored prompt templates');
  if (given(raw.prompt_cache_retention)) throw unsupported('prompt_cache_retention', "an upstream's prompt retention is the operator's contract");
  if (given(raw.service_tier) && raw.service_tier !== 'auto' && raw.service_tier !== 'default') throw unsupported('service_tier', "only 'auto' or 'default'");
}

function streamOptions(options: unknown, stream: boolean): void {
  if (!given(options)) return;
  if (!stream) throw invalid("'stream_options' is only allowed when 'stream' is true", 'stream_options');
  if (!isObject(options)) throw invalid("'stream_options' must be an object", 'stream_options', 'invalid_type');
  for (const [key, value] of Object.entries(options)) {
    if (key !== 'include_obfuscation') throw invalid(`'stream_options.${key}' is not supported`, `stream_options.${key}`, 'unsupported_parameter');
    if (given(value) && value !== false) throw unsupported('stream_options.include_obfuscation', 'no obfuscation padding is sent', 'stream_options.include_obfuscation');
  }
}

function previousIdOf(value: unknown): string | null {
  if (!given(value)) return null;
  if (typeof value !== 'string' || !/^resp_[A-Za-z0-9_]+$/.test(value) || value.length > MAX_ID) {
    throw invalid("'previous_response_id' must be the ID of a response ('resp_…')", 'previous_response_id');
  }
  return value;
}

function subjectOf(raw: Record<string, unknown>): string | null {
  if (given(raw.user) && typeof raw.user !== 'string') throw invalid("'user' must be a string", 'user', 'invalid_type');
  const safety = raw.safety_identifier;
  if (given(safety) && (typeof safety !== 'string' || safety.length > 256)) throw invalid("'safety_identifier' must be a string of at most 256 characters", 'safety_identifier', 'invalid_type');
  if (typeof raw.user === 'string' && raw.user !== '') return raw.user;
  return typeof safety === 'string' && safety !== '' ? safety : null;
}

/** `text`: `format` onto the chat path's `response_format`, `verbosity` onto its extra. */
function textOf(value: unknown): { format: ResponseTextFormat; verbosity: ResponseEcho['verbosity']; extras: ChatExtras } {
  const extras: ChatExtras = {};
  if (!given(value)) return { format: { type: 'text' }, verbosity: null, extras };
  if (!isObject(value)) throw invalid("'text' must be an object", 'text', 'invalid_type');
  for (const key of Object.keys(value)) {
    if (key !== 'format' && key !== 'verbosity') throw invalid(`Unrecognized argument 'text.${key}'`, `text.${key}`, 'unrecognized_request_argument');
  }
  let verbosity: ResponseEcho['verbosity'] = null;
  if (given(value.verbosity)) {
    const checked = renamed(() => validateChatExtras({ verbosity: value.verbosity }));
    verbosity = checked?.verbosity ?? null;
    if (verbosity !== null) extras.verbosity = verbosity;
  }
  const raw = value.format;
  if (!given(raw)) return { format: { type: 'text' }, verbosity, extras };
  if (!isObject(raw)) throw invalid("'text.format' must be an object", 'text.format', 'invalid_type');
  if (raw.type === 'text') {
    if (Object.keys(raw).length !== 1) throw invalid("'text.format' of type text takes no other field", 'text.format');
    return { format: { type: 'text' }, verbosity, extras };
  }
  if (raw.type === 'json_object') {
    if (Object.keys(raw).length !== 1) throw invalid("'text.format' of type json_object takes no other field", 'text.format');
    extras.response_format = { type: 'json_object' };
    return { format: { type: 'json_object' }, verbosity, extras };
  }
  if (raw.type !== 'json_schema') throw invalid("'text.format.type' must be one of text, json_object, json_schema", 'text.format.type');
  const { type: _type, ...schema } = raw;
  if (!isObject(schema.schema)) throw invalid("'text.format.schema' is required for type json_schema", 'text.format.schema', 'missing_required_parameter');
  const checked = renamed(() => validateChatExtras({ response_format: { type: 'json_schema', json_schema: schema } }));
  const rf = checked?.response_format;
  if (rf?.type !== 'json_schema') throw invalid("'text.format' is not a valid json_schema format", 'text.format');
  extras.response_format = rf;
  const js = rf.json_schema;
  return {
    format: { type: 'json_schema', name: js.name, schema: js.schema ?? {}, ...(js.description !== undefined ? { description: js.description } : {}), strict: js.strict ?? null },
    verbosity,
    extras,
  };
}

/** Runs a check of the chat path and renames the fields its errors name (see {@link responsesParam}). */
function renamed<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw err instanceof InvalidRequestError ? responsesParam(err) : err;
  }
}

/**
 * The chat path's error with the Responses field names: `response_format.json_schema.*` →
 * `text.format.*`, `verbosity` → `text.verbosity`, `max_tokens` → `max_output_tokens`, `messages` → `input`.
 */
export function responsesParam(err: InvalidRequestError): InvalidRequestError {
  const rename = (s: string) => s
    .replaceAll('response_format.json_schema', 'text.format')
    .replaceAll('response_format', 'text.format')
    .replace(/^verbosity$/, 'text.verbosity')
    .replace(/^max_tokens$/, 'max_output_tokens')
    .replace(/^messages$/, 'input');
  const param = err.param === null ? null : responsesToolParam(rename(err.param));
  const message = err.message.replaceAll('response_format.json_schema', 'text.format').replaceAll('response_format', 'text.format')
    .replace(/^max_tokens is/, 'max_output_tokens is').replace('your messages are longer', 'your input is longer')
    .replace(/tools\[(\d+)\]\.function\./g, 'tools[$1].');
  return new InvalidRequestError(message, param, err.code);
}

const INPUT_ROLES: readonly string[] = ['user', 'assistant', 'system', 'developer'];

/** `input`: a string (one user message) or an array of message items. */
function inputOf(value: unknown): ResponseInputTurn[] {
  if (typeof value === 'string') {
    if (value === '') throw invalid("'input' must not be empty", 'input');
    return [{ type: 'message', role: 'user', parts: [{ type: 'input_text', text: value }] }];
  }
  if (value === undefined || value === null) throw invalid("'input' is required", 'input', 'missing_required_parameter');
  if (!Array.isArray(value)) throw invalid("'input' must be a string or an array of input items", 'input', 'invalid_type');
  if (value.length === 0) throw invalid("'input' must contain at least one item", 'input');
  if (value.length > MAX_INPUT_ITEMS) throw invalid(`'input' may hold at most ${MAX_INPUT_ITEMS} items`, 'input');
  return value.map((item, i): ResponseInputTurn => {
    const at = `input[${i}]`;
    if (!isObject(item)) throw invalid(`'${at}' must be an object`, at, 'invalid_type');
    if (item.type === 'function_call') return functionCallTurnOf(item, at);
    if (item.type === 'function_call_output') return functionCallOutputTurnOf(item, at);
    if (item.type !== undefined && item.type !== 'message') {
      const type = typeof item.type === 'string' ? item.type.slice(0, 64) : typeof item.type;
      throw invalid(`Input items of type '${type}' are not supported: only 'message', 'function_call' and 'function_call_output' items`, `${at}.type`, 'unsupported_parameter');
    }
    for (const key of Object.keys(item)) {
      if (!['type', 'role', 'content', 'id', 'status'].includes(key)) throw invalid(`Unrecognized argument '${at}.${key}'`, `${at}.${key}`, 'unrecognized_request_argument');
    }
    if (typeof item.role !== 'string' || !INPUT_ROLES.includes(item.role)) throw invalid(`'${at}.role' must be one of ${INPUT_ROLES.join(', ')}`, `${at}.role`);
    const role = item.role as ResponseInputMessageTurn['role'];
    return { type: 'message', role, parts: partsOf(item.content, role, at) };
  });
}

/** A message's content: a string, or `input_text` parts (`output_text` for an assistant message). */
function partsOf(content: unknown, role: ResponseInputMessageTurn['role'], at: string): ResponseInputMessageTurn['parts'] {
  const textType = role === 'assistant' ? 'output_text' : 'input_text';
  if (typeof content === 'string') return [{ type: textType, text: content }];
  if (!Array.isArray(content)) throw invalid(`'${at}.content' must be a string or an array of content parts`, `${at}.content`, content === undefined ? 'missing_required_parameter' : 'invalid_type');
  if (content.length === 0) throw invalid(`'${at}.content' must contain at least one part`, `${at}.content`);
  return content.map((part, j) => {
    const pat = `${at}.content[${j}]`;
    if (!isObject(part)) throw invalid(`'${pat}' must be an object`, pat, 'invalid_type');
    const allowed = role === 'assistant' ? ['output_text', 'input_text'] : ['input_text'];
    if (typeof part.type !== 'string' || !allowed.includes(part.type)) {
      const type = typeof part.type === 'string' ? part.type.slice(0, 64) : typeof part.type;
      throw invalid(`Content parts of type '${type}' are not supported here: only ${allowed.join(' or ')} (text)`, `${pat}.type`, 'unsupported_parameter');
    }
    for (const key of Object.keys(part)) {
      if (!['type', 'text', 'annotations', 'logprobs'].includes(key)) throw invalid(`Unrecognized argument '${pat}.${key}'`, `${pat}.${key}`, 'unrecognized_request_argument');
    }
    if (typeof part.text !== 'string') throw invalid(`'${pat}.text' must be a string`, `${pat}.text`, 'invalid_type');
    return { type: part.type === 'output_text' ? 'output_text' : 'input_text', text: part.text };
  });
}

/**
 * The input as chat messages: a message per message item (its parts' text joined); function calls
 * join the assistant message before them (or, after anything else, a new assistant message with no
 * text), as one chat assistant message carries its `tool_calls`; a call's output is a `tool` message.
 */
export function messagesOf(input: readonly ResponseInputTurn[]): ChatMessageInput[] {
  const out: ChatMessageInput[] = [];
  for (const t of input) {
    if (t.type === 'message') {
      out.push({ role: t.role, content: t.parts.map((p) => p.text).join('') });
    } else if (t.type === 'function_call_output') {
      out.push({ role: 'tool', content: t.output, tool_call_id: t.callId });
    } else {
      const call = { id: t.callId, type: 'function' as const, function: { name: t.name, arguments: t.arguments } };
      const last = out.at(-1);
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else out.push({ role: 'assistant', content: '', tool_calls: [call] });
    }
  }
  return out;
}

/** The input items as `input_items` lists them, with IDs derived from the response's (a function call keeps the ID it came with). */
export function inputItemsOf(input: readonly ResponseInputTurn[], responseId: string): ResponseInputItem[] {
  const base = responseId.replace(/^resp_/, '');
  return input.map((t, i): ResponseInputItem => {
    if (t.type === 'function_call') return { id: t.id ?? `fc_${base}_in${i}`, type: 'function_call', call_id: t.callId, name: t.name, arguments: t.arguments, status: 'completed' };
    if (t.type === 'function_call_output') return { id: t.id ?? `fco_${base}_in${i}`, type: 'function_call_output', call_id: t.callId, output: t.output, status: 'completed' };
    return {
      id: `msg_${base}_in${i}`,
      type: 'message',
      role: t.role,
      status: 'completed',
      content: t.parts.map((p) => (p.type === 'output_text' ? { type: 'output_text', text: p.text, annotations: [] } : { type: 'input_text', text: p.text })),
    };
  });
}

/** The chat messages of a validated body: its instructions as a system message, then its input. */
export function chatMessagesOf(body: Pick<ValidResponsesBody, 'instructions' | 'input'>, earlier: readonly ChatMessageInput[] = []): ChatMessageInput[] {
  const conversation = [...earlier, ...messagesOf(body.input)];
  return body.instructions !== null ? [{ role: 'system', content: body.instructions }, ...conversation] : conversation;
}

/**
 * A `/v1/responses` batch line's body as the chat request it runs as (as OpenAI's Batch API, the
 * line takes the endpoint's fields). A batch line is answered in the output file, never streamed or
 * stored: `stream: true`, `store: true` and `previous_response_id` are refused naming them (`store`
 * defaults to false in a batch). Throws {@link InvalidRequestError} naming the field.
 */
export function responsesAsChatBody(raw: unknown): ValidChatBody {
  const body = validateResponsesBody(raw);
  const given = isObject(raw) ? raw : {};
  if (body.stream) throw unsupported('stream', 'batch lines are answered in the output file');
  if (given.store === true) throw unsupported('store', 'batch lines are not stored (their responses are in the output file)');
  if (body.previousResponseId !== null) throw unsupported('previous_response_id', 'batch lines do not chain onto stored responses');
  const metadata = Object.keys(body.echo.metadata).length > 0 ? body.echo.metadata : null;
  return { model: body.model, messages: chatMessagesOf(body), params: body.params, user: body.subject, metadata, stream: false, includeUsage: false };
}
