/**
 * Sampling parameters: the one pure validator for every value that can reach a backend's sampler.
 * Used where values enter (the chat route and batch lines through `domain/chat-validation.ts`, experiment
 * variants at creation) and again at the backend boundary (`checkGenerateInput`, by the inference
 * activity and the llama.cpp backend), because a value stored earlier (an experiment variant, a
 * history started before a rule existed) may never have passed the entry check. node-llama-cpp
 * throws inside its decode loop, outside any caller's `try`, on a value that is not a number: no
 * such value may get that far.
 *
 * No I/O; imports only pure contracts.
 */
import { InvalidRequestError } from './invalid-request.js';
import { isMessageRole } from '../contracts/chat.js';
import { isObject } from './is-object.js';
import { checkChatExtras } from './chat-extras.js';
import { checkMessageTools } from './tools.js';
import { checkPromptOverride } from './experiment-prompt.js';
/** What a variant may change about a request (the prompt overrides: `domain/experiment-prompt.ts`). */
export interface VariantOverrides {
  model?: string;
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  system_prompt?: string;
  system_template?: string;
}

/** Bounds of each numeric parameter, OpenAI's (seed: a signed 32-bit integer). */
export const SAMPLING_BOUNDS = {
  temperature: { min: 0, max: 2, integer: false },
  top_p: { min: 0, max: 1, integer: false },
  seed: { min: -(2 ** 31), max: 2 ** 31 - 1, integer: true },
  max_tokens: { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
} as const;

export type NumericSamplingParam = keyof typeof SAMPLING_BOUNDS;

/** OpenAI's own bound on `stop`. */
export const MAX_STOP = 4;

/** The longest model ID a variant may name (as for a request's `model`). */
const MAX_MODEL_LENGTH = 256;

/** The keys a variant may override, closed. */
export const OVERRIDABLE = ['model', 'temperature', 'top_p', 'max_tokens', 'system_prompt', 'system_template'] as const;

/** A refused value: `param` names the field as the client wrote it (e.g. `variants[1].overrides.temperature`). */
export class SamplingParamError extends InvalidRequestError {
  override readonly name = 'SamplingParamError';
  constructor(
    override readonly param: string,
    message: string,
    override readonly code: 'invalid_type' | 'invalid_value',
  ) {
    super(message, param, code);
  }
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : 'a non-finite number';
  return `a ${typeof v}`;
}

/**
 * Checks one optional numeric parameter against its bounds. `undefined` and `null` are "not
 * given" (null). Throws {@link SamplingParamError} naming `param` (default: the parameter's name).
 */
export function samplingNumber(name: NumericSamplingParam, value: unknown, param: string = name): number | null {
  if (value === undefined || value === null) return null;
  const { min, max, integer } = SAMPLING_BOUNDS[name];
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    const got = typeof value === 'number' && Number.isFinite(value) ? 'a fraction' : typeName(value);
    throw new SamplingParamError(param, `'${param}' must be ${integer ? 'an integer' : 'a number'}, got ${got}`, 'invalid_type');
  }
  if (value < min || value > max) {
    // An unbounded parameter (at most the largest safe integer) names the bound it broke.
    const range = max !== Number.MAX_SAFE_INTEGER ? `between ${min} and ${max}` : value < min ? `>= ${min}` : `at most ${max}`;
    throw new SamplingParamError(param, `'${param}' must be ${range}, got ${value}`, 'invalid_value');
  }
  return value;
}

/** Checks `stop`: a non-empty string, or up to {@link MAX_STOP} of them; null when not given. */
export function samplingStop(value: unknown, param = 'stop'): string[] | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') {
    if (value === '') throw new SamplingParamError(param, `'${param}' must not be empty`, 'invalid_value');
    return [value];
  }
  if (!Array.isArray(value)) throw new SamplingParamError(param, `'${param}' must be a string or an array of strings`, 'invalid_type');
  if (value.length > MAX_STOP || !value.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new SamplingParamError(param, `'${param}' must be a string or up to ${MAX_STOP} non-empty strings`, 'invalid_value');
  }
  return value as string[];
}

/**
 * Checks an experiment variant's overrides: only {@link OVERRIDABLE} keys, each of the type and
 * range a request's own field has (`model` a non-empty ID). `param` is the object's path, e.g.
 * `variants[1].overrides`; errors name the field inside it. Returns the overrides with only the
 * given keys (null values dropped).
 */
export function validateVariantOverrides(raw: unknown, param: string): VariantOverrides {
  if (raw === undefined || raw === null) return {};
  if (!isObject(raw)) throw new SamplingParamError(param, `'${param}' must be an object`, 'invalid_type');
  const out: VariantOverrides = {};
  for (const [key, value] of Object.entries(raw)) {
    const at = `${param}.${key}`;
    if (!(OVERRIDABLE as readonly string[]).includes(key)) {
      throw new SamplingParamError(at, `'${at}' is not overridable (only ${OVERRIDABLE.join(', ')})`, 'invalid_value');
    }
    if (value === null || value === undefined) continue;
    if (key === 'model') {
      if (typeof value !== 'string') throw new SamplingParamError(at, `'${at}' must be a string, got ${typeName(value)}`, 'invalid_type');
      if (value.trim() === '' || value.length > MAX_MODEL_LENGTH) throw new SamplingParamError(at, `'${at}' must be a model ID of 1 to ${MAX_MODEL_LENGTH} characters`, 'invalid_value');
      out.model = value;
    } else if (key === 'system_prompt' || key === 'system_template') {
      out[key] = checkPromptOverride(value, at, key);
    } else {
      const n = samplingNumber(key as 'temperature' | 'top_p' | 'max_tokens', value, at);
      if (n !== null) out[key as 'temperature' | 'top_p' | 'max_tokens'] = n;
    }
  }
  if (out.system_prompt !== undefined && out.system_template !== undefined) {
    throw new SamplingParamError(`${param}.system_template`, `'${param}' may set system_prompt or system_template, not both`, 'invalid_value');
  }
  return out;
}

/**
 * The backend boundary: checks resolved generation input (messages and `GenerateParams`, camelCase,
 * defaults applied) as it arrives from a workflow history, whatever path it took. Returns the
 * first problem, or null when a backend may run it.
 */
export function checkGenerateInput(input: { messages: unknown; params: unknown }): SamplingParamError | null {
  try {
    const { messages, params } = input;
    if (!Array.isArray(messages) || messages.length === 0) return new SamplingParamError('messages', "'messages' must be a non-empty array", 'invalid_type');
    for (const [i, m] of messages.entries()) {
      if (!isObject(m) || !isMessageRole(m.role) || typeof m.content !== 'string') {
        return new SamplingParamError(`messages[${i}]`, `'messages[${i}]' must have a known role and text content`, 'invalid_type');
      }
    }
    const tools = checkMessageTools(messages);
    if (tools !== null) return new SamplingParamError(tools.param ?? 'messages', tools.message, 'invalid_value');
    if (!isObject(params)) return new SamplingParamError('params', 'the sampling parameters must be an object', 'invalid_type');
    if (samplingNumber('max_tokens', params.maxTokens) === null) return new SamplingParamError('max_tokens', "'max_tokens' is required", 'invalid_type');
    if (samplingNumber('temperature', params.temperature) === null) return new SamplingParamError('temperature', "'temperature' is required", 'invalid_type');
    samplingNumber('top_p', params.topP);
    samplingNumber('seed', params.seed);
    samplingStop(params.stop);
    if (params.rawPrompt !== undefined && (params.rawPrompt !== true || messages.length !== 1 || (messages[0] as { role?: unknown }).role !== 'user')) {
      return new SamplingParamError('prompt', 'a raw prompt is one user message', 'invalid_value');
    }
    const extras = checkChatExtras(params.extras);
    if (extras !== null) return new SamplingParamError(extras.param ?? 'extras', extras.message, extras.code === 'invalid_type' ? 'invalid_type' : 'invalid_value');
    return null;
  } catch (err) {
    if (err instanceof SamplingParamError) return err;
    throw err;
  }
}
