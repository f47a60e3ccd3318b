/**
 * Validation of the generation options beyond sampling (`ChatExtras`): where the body enters
 * (`validateChatBody`, for the chat route and batch lines) and again at the backend boundary
 * (`checkGenerateInput`), with the same function, so a value in a workflow history is held to the
 * rule a request is. Only requested fields are kept (neutral values of `domain/chat-fields.ts`
 * are dropped), so the keys of the result are what a backend must honour. Pure.
 */
import type { ChatExtras } from '../contracts/chat.js';
import { isRequested, type ChatFieldName } from './chat-fields.js';
import { InvalidRequestError } from './invalid-request.js';
import { validateResponseFormat } from './response-format.js';
import { validateToolFields } from './tools.js';

/** OpenAI's `reasoning_effort` values. */
export const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high'] as const;
/** OpenAI's `verbosity` values. */
export const VERBOSITIES = ['low', 'medium', 'high'] as const;
/** Most entries of `logit_bias` (OpenAI's bound). */
export const MAX_LOGIT_BIAS = 300;

/** A penalty: a number from -2 to 2. */
function penalty(name: 'presence_penalty' | 'frequency_penalty', value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidRequestError(`'${name}' must be a number`, name, 'invalid_type');
  if (value < -2 || value > 2) throw new InvalidRequestError(`'${name}' must be between -2 and 2, got ${value}`, name, 'invalid_value');
  return value;
}

/** `logit_bias`: token IDs (decimal integer strings) to biases from -100 to 100. */
function logitBias(value: unknown): Record<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidRequestError("'logit_bias' must be an object of token IDs to numbers", 'logit_bias', 'invalid_type');
  const entries = Object.entries(value);
  if (entries.length > MAX_LOGIT_BIAS) throw new InvalidRequestError(`'logit_bias' may hold at most ${MAX_LOGIT_BIAS} tokens`, 'logit_bias', 'invalid_value');
  const out: Record<string, number> = {};
  for (const [key, bias] of entries) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(key) || Number(key) > 2 ** 31 - 1) throw new InvalidRequestError(`'logit_bias' keys must be token IDs, got '${key.slice(0, 32)}'`, 'logit_bias', 'invalid_value');
    if (typeof bias !== 'number' || !Number.isFinite(bias) || bias < -100 || bias > 100) throw new InvalidRequestError(`'logit_bias' values must be numbers from -100 to 100 (token ${key})`, 'logit_bias', 'invalid_value');
    out[key] = bias;
  }
  return out;
}

/** Most alternatives per token (`top_logprobs`), OpenAI's bound. */
export const MAX_TOP_LOGPROBS = 20;

/** Longest `prompt_cache_key` accepted. */
export const MAX_PROMPT_CACHE_KEY = 256;

/** The fields `ChatExtras` carries, in table order. */
export const EXTRA_FIELDS = ['response_format', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'logprobs', 'top_logprobs', 'reasoning_effort', 'verbosity', 'prompt_cache_key', 'tools', 'tool_choice', 'parallel_tool_calls'] as const satisfies readonly (keyof ChatExtras & ChatFieldName)[];

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidRequestError(`'${name}' must be one of ${allowed.join(', ')}`, name, typeof value === 'string' ? 'invalid_value' : 'invalid_type');
  }
  return value as T;
}

/**
 * The requested extras of `raw` (a request body, or an `extras` object from a history), each
 * checked; throws {@link InvalidRequestError} naming the field. Returns null when none is requested.
 */
export function validateChatExtras(raw: Record<string, unknown>): ChatExtras | null {
  const out: ChatExtras = {};
  if (isRequested('response_format', raw.response_format)) out.response_format = validateResponseFormat(raw.response_format);
  if (isRequested('presence_penalty', raw.presence_penalty)) out.presence_penalty = penalty('presence_penalty', raw.presence_penalty);
  if (isRequested('frequency_penalty', raw.frequency_penalty)) out.frequency_penalty = penalty('frequency_penalty', raw.frequency_penalty);
  if (isRequested('logit_bias', raw.logit_bias)) out.logit_bias = logitBias(raw.logit_bias);
  if (isRequested('logprobs', raw.logprobs)) {
    if (raw.logprobs !== true) throw new InvalidRequestError("'logprobs' must be a boolean", 'logprobs', 'invalid_type');
    out.logprobs = true;
  }
  if (isRequested('top_logprobs', raw.top_logprobs)) {
    const n = raw.top_logprobs;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_TOP_LOGPROBS) throw new InvalidRequestError(`'top_logprobs' must be an integer from 0 to ${MAX_TOP_LOGPROBS}`, 'top_logprobs', 'invalid_value');
    if (out.logprobs !== true) throw new InvalidRequestError("'top_logprobs' needs 'logprobs': true", 'top_logprobs', 'invalid_value');
    out.top_logprobs = n;
  }
  if (isRequested('reasoning_effort', raw.reasoning_effort)) out.reasoning_effort = oneOf('reasoning_effort', raw.reasoning_effort, REASONING_EFFORTS);
  if (isRequested('verbosity', raw.verbosity)) out.verbosity = oneOf('verbosity', raw.verbosity, VERBOSITIES);
  if (isRequested('prompt_cache_key', raw.prompt_cache_key)) {
    const key = raw.prompt_cache_key;
    if (typeof key !== 'string') throw new InvalidRequestError("'prompt_cache_key' must be a string", 'prompt_cache_key', 'invalid_type');
    if (key === '' || key.length > MAX_PROMPT_CACHE_KEY) throw new InvalidRequestError(`'prompt_cache_key' must be 1 to ${MAX_PROMPT_CACHE_KEY} characters`, 'prompt_cache_key', 'invalid_value');
    out.prompt_cache_key = key;
  }
  Object.assign(out, validateToolFields(raw));
  return Object.keys(out).length > 0 ? out : null;
}

/**
 * The backend boundary's check of an `extras` object from a history: only known keys, each valid.
 * Returns the problem, or null.
 */
export function checkChatExtras(extras: unknown): InvalidRequestError | null {
  if (extras === undefined) return null;
  if (typeof extras !== 'object' || extras === null || Array.isArray(extras)) return new InvalidRequestError('the generation options must be an object', 'extras', 'invalid_type');
  const unknown = Object.keys(extras).find((k) => !(EXTRA_FIELDS as readonly string[]).includes(k));
  if (unknown !== undefined) return new InvalidRequestError(`'${unknown}' is not a generation option`, unknown, 'invalid_value');
  try {
    validateChatExtras(extras as Record<string, unknown>);
    return null;
  } catch (err) {
    if (err instanceof InvalidRequestError) return err;
    throw err;
  }
}
