/**
 * Request-body validation for the legacy `POST /v1/completions`, pure: a closed list of its fields
 * (OpenAI's completions reference), each honoured or refused with a 400 naming it, and the body
 * turned into the chat pipeline's input (the prompt as one raw user message) so a text completion
 * is authorized, reserved, billed and audited as a chat completion is. Also the text completion
 * object built from the pipeline's result.
 */
import type { ChatCompletion, ChatMessageInput, ChatParams } from '../contracts/chat.js';
import { validateChatExtras } from './chat-extras.js';
import { InvalidRequestError } from './invalid-request.js';
import { samplingNumber, samplingStop } from './sampling-params.js';
import { MAX_COMPLETION_PROMPTS } from '../contracts/completions.js';
import { requestModel } from './request-model.js';

/** OpenAI's default `max_tokens` for a text completion. */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

/** Every field of the completions request, with what Sluice does with it (README). */
export const COMPLETION_FIELDS = {
  model: 'honoured',
  prompt: `honoured: a string, or an array of 1 to ${MAX_COMPLETION_PROMPTS} strings (one choice per prompt; token arrays are refused)`,
  suffix: 'refused (insertion is not offered)',
  echo: 'honoured: the prompt is prepended to the text',
  max_tokens: 'honoured (default 16, as OpenAI)',
  temperature: 'honoured',
  top_p: 'honoured',
  stop: 'honoured',
  seed: 'honoured',
  user: 'honoured: the sticky subject of experiment assignment',
  presence_penalty: 'honoured (as chat)',
  frequency_penalty: 'honoured (as chat)',
  logit_bias: 'honoured (as chat)',
  n: 'only 1',
  best_of: 'only 1',
  logprobs: 'refused',
  stream: 'only false (streaming: issue 13)',
  stream_options: 'refused (streaming: issue 13)',
} as const;

export type CompletionFieldName = keyof typeof COMPLETION_FIELDS;

export interface ValidCompletionBody {
  model: string;
  /** The prompts, in order: one choice each (1 to {@link MAX_COMPLETION_PROMPTS}). */
  prompts: string[];
  echo: boolean;
  /** The pipeline's input: the first prompt as one user message, continued raw. */
  messages: ChatMessageInput[];
  params: ChatParams & { maxTokens: number; rawPrompt: true };
  user: string | null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const given = (v: unknown): boolean => v !== undefined && v !== null;

function unsupported(name: string, why: string): InvalidRequestError {
  return new InvalidRequestError(`'${name}' is not supported: ${why}`, name, 'unsupported_parameter');
}

/** Checks a `/v1/completions` body; throws {@link InvalidRequestError} naming the first bad field. */
export function validateCompletionBody(raw: unknown): ValidCompletionBody {
  if (!isObject(raw)) throw new InvalidRequestError('The request body must be a JSON object', null, 'invalid_type');
  for (const name of Object.keys(raw)) {
    if (!Object.prototype.hasOwnProperty.call(COMPLETION_FIELDS, name)) throw new InvalidRequestError(`Unrecognized request argument supplied: ${name}`, name, 'unrecognized_request_argument');
  }
  const model = requestModel(raw.model);
  const prompts = promptsOf(raw.prompt);
  const first = prompts[0] as string;
  if (given(raw.suffix) && raw.suffix !== '') throw unsupported('suffix', 'insertion (a suffix) is not offered');
  if (given(raw.echo) && typeof raw.echo !== 'boolean') throw new InvalidRequestError("'echo' must be a boolean", 'echo', 'invalid_type');
  if (given(raw.n) && raw.n !== 1) throw unsupported('n', "only 'n': 1");
  if (given(raw.best_of) && raw.best_of !== 1) throw unsupported('best_of', "only 'best_of': 1");
  if (given(raw.logprobs)) throw unsupported('logprobs', 'log probabilities are not returned');
  if (given(raw.stream) && raw.stream !== false) throw unsupported('stream', 'streaming (issue 13)');
  if (given(raw.stream_options)) throw unsupported('stream_options', 'streaming (issue 13)');
  if (given(raw.user) && typeof raw.user !== 'string') throw new InvalidRequestError("'user' must be a string", 'user', 'invalid_type');
  const extras = validateChatExtras({ presence_penalty: raw.presence_penalty, frequency_penalty: raw.frequency_penalty, logit_bias: raw.logit_bias });
  return {
    model,
    prompts,
    echo: raw.echo === true,
    messages: [{ role: 'user', content: first }],
    params: {
      maxTokens: samplingNumber('max_tokens', raw.max_tokens) ?? DEFAULT_COMPLETION_MAX_TOKENS,
      temperature: samplingNumber('temperature', raw.temperature),
      topP: samplingNumber('top_p', raw.top_p),
      seed: samplingNumber('seed', raw.seed),
      stop: samplingStop(raw.stop),
      ...(extras !== null ? { extras } : {}),
      rawPrompt: true,
    },
    user: typeof raw.user === 'string' && raw.user !== '' ? raw.user : null,
  };
}

/** How a JSON value that is not a prompt's text is named in a refusal. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty array' : 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

const isTokenId = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isTokenArray = (v: unknown): boolean => Array.isArray(v) && v.length > 0 && v.every(isTokenId);

/** Token arrays are refused by choice (README "Legacy completions": IDs belong to one deployment's vocabulary). */
const NO_TOKEN_ARRAYS = 'token arrays are not accepted, send each prompt as text';

/** One prompt: a non-empty string; `index` is its place in an array `prompt`. */
function promptText(value: unknown, index?: number): string {
  const name = index === undefined ? 'prompt' : `prompt[${index}]`;
  if (typeof value !== 'string') {
    const element = index === undefined ? '' : ": each element of an array 'prompt' is one prompt's text";
    throw new InvalidRequestError(`'${name}' must be a string, not ${kindOf(value)}${element} (${NO_TOKEN_ARRAYS})`, 'prompt', 'invalid_type');
  }
  if (value === '') throw new InvalidRequestError(`'${name}' must not be empty`, 'prompt', 'invalid_value');
  return value;
}

/**
 * `prompt`: a string, or an array of 1 to {@link MAX_COMPLETION_PROMPTS} strings. A token array
 * (non-negative integers) or an array of them is refused as such; any other array with an element
 * that is not a string is refused naming the first such element.
 */
function promptsOf(value: unknown): string[] {
  if (typeof value === 'string') return [promptText(value)];
  if (Array.isArray(value)) {
    if (value.length === 0) throw new InvalidRequestError("'prompt' must not be an empty array", 'prompt', 'invalid_value');
    // A token array (or an array of them) is refused as one, whatever its length.
    const tokens = isTokenArray(value) ? 'a token array (token IDs)' : value.every(isTokenArray) ? 'an array of token arrays' : null;
    if (tokens !== null) throw new InvalidRequestError(`'prompt' is ${tokens}: ${NO_TOKEN_ARRAYS}`, 'prompt', 'unsupported_parameter');
    if (value.length > MAX_COMPLETION_PROMPTS) {
      throw new InvalidRequestError(`'prompt' holds ${value.length} prompts; at most ${MAX_COMPLETION_PROMPTS} are accepted in one request (send several requests)`, 'prompt', 'invalid_value');
    }
    return value.map((p: unknown, i) => promptText(p, i));
  }
  if (value === undefined || value === null) throw new InvalidRequestError("'prompt' is required", 'prompt', 'missing_required_parameter');
  throw new InvalidRequestError(`'prompt' must be a string or an array of 1 to ${MAX_COMPLETION_PROMPTS} strings, not ${kindOf(value)}`, 'prompt', 'invalid_type');
}

/** An OpenAI text completion object. */
export interface TextCompletion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: Array<{ text: string; index: number; logprobs: null; finish_reason: 'stop' | 'length' }>;
  usage: ChatCompletion['usage'];
}

/**
 * The text completion of a workflow's result: choice i's text is `echo[i]` (its prompt, when the
 * request asked for `echo`), then the generated text.
 */
export function toTextCompletion(chat: ChatCompletion, echo: readonly string[] | null): TextCompletion {
  return {
    id: chat.id.replace(/^chatcmpl-/, 'cmpl-'),
    object: 'text_completion',
    created: chat.created,
    model: chat.model,
    system_fingerprint: chat.system_fingerprint,
    choices: chat.choices.map((c) => ({ text: (echo?.[c.index] ?? '') + (c.message.content ?? ''), index: c.index, logprobs: null, finish_reason: c.finish_reason === 'length' ? 'length' : 'stop' })),
    usage: chat.usage,
  };
}
