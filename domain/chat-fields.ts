/**
 * The closed table of `/v1/chat/completions` request fields: every field of OpenAI's chat
 * completions reference, and for each backend whether Sluice honours it or refuses it. Nothing
 * is silently ignored: a field not in the table is refused as OpenAI refuses it
 * (`unrecognized_request_argument`), a field refused everywhere is refused where the body enters
 * (`unsupported_parameter`), and a field one backend cannot honour is refused for a model with a
 * deployment on that backend (the chat route, before a workflow exists) and again at the backend
 * boundary (the inference activity, for a value that took another path, e.g. a variant's model).
 *
 * A value that asks for nothing beyond the default (`n: 1`, `stream: false`, `store: false`,
 * `logprobs: false`, `null` for any field) is `neutral`: accepted whatever the backend.
 *
 * The README's field table is this table. Pure: no I/O.
 */
import type { ChatExtras } from '../contracts/chat.js';
import { InvalidRequestError } from './invalid-request.js';
import { llamaCppGrammarFor } from './response-format.js';
import { llamaCppToolsRefusal } from './tools.js';

/** The backends a deployment can be on, as far as request fields are concerned. */
export type FieldBackend = 'llama-cpp' | 'openai-compatible';

/** `honoured`: the field has its OpenAI effect; `refused`: a non-neutral value is a 400 naming it. */
export type FieldSupport = 'honoured' | 'refused';

export interface ChatField {
  'llama-cpp': FieldSupport;
  'openai-compatible': FieldSupport;
  /** Whether `value` asks for nothing (accepted even where the field is refused). `null`/absent always is. */
  neutral: (value: unknown) => boolean;
  /** What Sluice does with it, for the README. */
  note: string;
}

const never = (): boolean => false;
const isFalse = (v: unknown): boolean => v === false;
const both = (support: FieldSupport) => ({ 'llama-cpp': support, 'openai-compatible': support }) as const;
const upstreamOnly = { 'llama-cpp': 'refused', 'openai-compatible': 'honoured' } as const;

/** Every request field of OpenAI's chat completions reference (December 2026), closed. */
export const CHAT_FIELDS = {
  messages: { ...both('honoured'), neutral: never, note: "a closed shape per role: text content (string or text parts), an assistant's `tool_calls`, a tool message's `tool_call_id` (a call of an earlier assistant message); `name`, a non-null `refusal`, `audio`, other part types and unknown fields are a 400 naming `messages[i].<field>`" },
  model: { ...both('honoured'), neutral: never, note: "Sluice's model ID; mapped to the deployment's upstream model" },
  max_completion_tokens: { ...both('honoured'), neutral: never, note: 'bounded by the model\'s `max_output_tokens`' },
  max_tokens: { ...both('honoured'), neutral: never, note: 'as `max_completion_tokens`' },
  temperature: { ...both('honoured'), neutral: never, note: '0 to 2; 0 is greedy' },
  top_p: { ...both('honoured'), neutral: never, note: '0 to 1' },
  stop: { ...both('honoured'), neutral: never, note: 'up to 4 strings' },
  seed: { ...both('honoured'), neutral: never, note: 'llama.cpp: the sampler seed (same seed, same output); upstream: passed on' },
  user: { ...both('honoured'), neutral: never, note: 'the sticky subject of experiment assignment; not sent upstream' },
  safety_identifier: { ...both('honoured'), neutral: never, note: 'as `user` (when `user` is absent); not sent upstream' },
  n: { ...both('refused'), neutral: (v) => v === 1, note: 'only `n: 1`' },
  stream: { ...both('honoured'), neutral: isFalse, note: 'server-sent chunks through the durable workflow (resumable; docs in the README "Streamed")' },
  stream_options: { ...both('honoured'), neutral: never, note: '`include_usage` only (any other key is a 400 naming it); only with `stream: true`' },
  response_format: { ...both('honoured'), neutral: (v) => isTextFormat(v), note: '`json_object`, `json_schema` (`strict` or not): llama.cpp enforces it with a JSON-schema grammar (a keyword the grammar cannot enforce is refused naming it); upstream: passed on' },
  presence_penalty: { ...both('honoured'), neutral: (v) => v === 0, note: "-2 to 2; llama.cpp: the sampler's presence penalty over the tokens generated so far" },
  frequency_penalty: { ...both('honoured'), neutral: (v) => v === 0, note: "-2 to 2; llama.cpp: the sampler's frequency penalty over the tokens generated so far" },
  logit_bias: { ...both('honoured'), neutral: (v) => isEmptyObject(v), note: "up to 300 token IDs of the deployment's vocabulary, -100 to 100 added to the logit (an ID outside the GGUF's vocabulary is a 400)" },
  logprobs: { ...both('honoured'), neutral: isFalse, note: "llama.cpp: the model's probability of each content token; upstream: passed on, the upstream's values returned" },
  top_logprobs: { ...both('honoured'), neutral: never, note: '0 to 20 alternatives per token, with `logprobs: true`' },
  reasoning_effort: { ...upstreamOnly, neutral: never, note: 'upstream: passed on; llama.cpp: no reasoning models, refused' },
  verbosity: { ...upstreamOnly, neutral: never, note: 'upstream: passed on; llama.cpp: refused' },
  prompt_cache_key: { ...upstreamOnly, neutral: never, note: "upstream: passed on (the upstream's prompt cache); llama.cpp: refused" },
  tools: { ...both('honoured'), neutral: never, note: "function tools (1 to 128, unique names, `parameters` a JSON Schema of an object); llama.cpp: described to the model through node-llama-cpp's chat wrapper, a call's `arguments` forced by a JSON-schema grammar (a keyword the grammar cannot enforce is refused naming `tools[i].function.parameters.<path>`); upstream: passed on" },
  tool_choice: { ...both('honoured'), neutral: never, note: '`auto`, `none`, `required` or `{"type":"function","function":{"name"}}`, only with `tools` (`none` alone is accepted); llama.cpp: `required` and a named function force one call with a grammar, `auto` answers text and switches to a call grammar where the template\'s call prefix appears (text before it = `content`; a call cut by `max_tokens` is dropped, `finish_reason: "length"`), `none` text; upstream: passed on' },
  parallel_tool_calls: { ...both('honoured'), neutral: never, note: 'only with `tools`; llama.cpp makes at most one call per answer either way; upstream: passed on' },
  functions: { ...both('refused'), neutral: never, note: 'deprecated tools form: refused' },
  function_call: { ...both('refused'), neutral: (v) => v === 'none', note: 'only `"none"`' },
  store: { ...both('refused'), neutral: isFalse, note: 'only `false`: Sluice keeps its own results under its retention rules and never asks an upstream to store them' },
  metadata: { ...both('honoured'), neutral: (v) => isEmptyObject(v), note: 'up to 16 string pairs (64-character keys, 512-character values): matched by experiment targeting (`targeting.metadata`); not sent upstream, not stored' },
  service_tier: { ...both('refused'), neutral: (v) => v === 'auto' || v === 'default', note: "`auto` or `default`: one tier; a dearer upstream tier would change the operator's cost, not the tenant's bill" },
  modalities: { ...both('refused'), neutral: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text', note: 'only `["text"]`' },
  audio: { ...both('refused'), neutral: never, note: 'audio output: refused' },
  prediction: { ...both('refused'), neutral: never, note: 'predicted outputs: refused' },
  web_search_options: { ...both('refused'), neutral: never, note: 'built-in web search: refused' },
  moderation: { ...both('refused'), neutral: never, note: 'moderated completions: refused' },
  prompt_cache_options: { ...both('refused'), neutral: never, note: 'explicit cache breakpoints: refused' },
  prompt_cache_retention: { ...both('refused'), neutral: never, note: "refused: how long an upstream keeps a tenant's prompts is the operator's contract, not a request's" },
} as const satisfies Record<string, ChatField>;

export type ChatFieldName = keyof typeof CHAT_FIELDS;

function isTextFormat(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && (v as { type?: unknown }).type === 'text';
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
}

function isField(name: string): name is ChatFieldName {
  return Object.prototype.hasOwnProperty.call(CHAT_FIELDS, name);
}

/** Whether `value` of `name` asks for something (absent, `null` and the field's neutral values do not). */
export function isRequested(name: ChatFieldName, value: unknown): boolean {
  return value !== undefined && value !== null && !CHAT_FIELDS[name].neutral(value);
}

/** The 400 for a field a backend (or every backend) does not honour. */
export function unsupportedField(name: string, where: string | null = null): InvalidRequestError {
  const note = isField(name) ? ` (${CHAT_FIELDS[name].note})` : '';
  return new InvalidRequestError(`'${name}' is not supported${where ? ` ${where}` : ''}${note}`, name, 'unsupported_parameter');
}

/**
 * Checks a body's keys against the table: a key not in it is refused as OpenAI refuses it
 * (`Unrecognized request argument supplied`), a requested field refused on every backend is
 * `unsupported_parameter`. Throws {@link InvalidRequestError} naming the first such field.
 */
export function checkChatFields(body: Record<string, unknown>): void {
  for (const name of Object.keys(body)) {
    if (!isField(name)) throw new InvalidRequestError(`Unrecognized request argument supplied: ${name}`, name, 'unrecognized_request_argument');
  }
  for (const [name, field] of Object.entries(CHAT_FIELDS)) {
    if (field['llama-cpp'] === 'refused' && field['openai-compatible'] === 'refused' && isRequested(name as ChatFieldName, body[name])) {
      throw unsupportedField(name);
    }
  }
}

/** The backend whose column of {@link CHAT_FIELDS} applies to a provider (`instant`, the pipeline stand-in, takes llama.cpp's). */
export function fieldBackendOf(provider: string): FieldBackend {
  return provider === 'openai-compatible' ? 'openai-compatible' : 'llama-cpp';
}

/**
 * The first field of `extras` that `provider`'s backend refuses (by its column, or by a value it
 * cannot honour: a schema keyword llama.cpp's grammar cannot enforce, in `response_format` or a
 * tool's `parameters`), as the 400 to answer; null
 * when it honours them all.
 */
export function refusedOn(provider: string, extras: ChatExtras | undefined, where: string | null = null): InvalidRequestError | null {
  const backend = fieldBackendOf(provider);
  for (const name of Object.keys(extras ?? {})) {
    if (!isField(name) || CHAT_FIELDS[name][backend] === 'refused') return unsupportedField(name, where);
  }
  if (backend === 'llama-cpp' && extras?.response_format !== undefined) {
    try {
      llamaCppGrammarFor(extras.response_format);
    } catch (err) {
      if (err instanceof InvalidRequestError) return err;
      throw err;
    }
  }
  if (backend === 'llama-cpp' && extras?.tools !== undefined) return llamaCppToolsRefusal(extras.tools);
  return null;
}

/**
 * The refusal for a model whose active deployments are on `providers`: a field refused by any of
 * them is refused for the model, so the answer never depends on which deployment of the fallback
 * chain serves the request. Null when every deployment honours every field.
 */
export function refusedByModel(model: string, providers: readonly string[], extras: ChatExtras | undefined): InvalidRequestError | null {
  if (extras === undefined) return null;
  for (const provider of new Set(providers)) {
    const refused = refusedOn(provider, extras, `by model ${model}: it has a ${provider} deployment`);
    if (refused !== null) return refused;
  }
  return null;
}
