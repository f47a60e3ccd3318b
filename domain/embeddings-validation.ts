/**
 * Request-body validation for `POST /v1/embeddings`, pure: everything decided before a workflow
 * exists, and again at the backend boundary (`checkEmbedInputs`). Every field of OpenAI's
 * embeddings reference is honoured or refused with a 400 naming it.
 */
import { MAX_EMBEDDING_INPUTS, type EmbeddingInputItem } from '../contracts/embeddings.js';
import { InvalidRequestError } from './invalid-request.js';
import { requestModel } from './request-model.js';

export interface ValidEmbeddingsBody {
  model: string;
  inputs: EmbeddingInputItem[];
  encodingFormat: 'float' | 'base64';
  dimensions: number | null;
  user: string | null;
}

/** The request fields Sluice knows; any other is refused (never silently ignored). */
const KNOWN_FIELDS: ReadonlySet<string> = new Set(['model', 'input', 'encoding_format', 'dimensions', 'user']);

/** Largest token ID accepted before the backend checks it against the model's own vocabulary. */
const MAX_TOKEN_ID = 2 ** 31 - 1;

/** Most tokens of one token-array input (the backend also checks the model's context). */
const MAX_TOKENS_PER_INPUT = 1_000_000;

/** Most `dimensions` asked for (no model has more). */
export const MAX_DIMENSIONS = 65_536;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(message: string, param: string | null, code: string): InvalidRequestError {
  return new InvalidRequestError(message, param, code);
}

/** A token array: non-empty, integers in 0..2^31-1 (the model's vocabulary is checked by the backend). */
function tokenArray(v: readonly unknown[], param: string): number[] {
  if (v.length === 0) throw invalid(`'${param}' must not be an empty token array`, param, 'invalid_value');
  if (v.length > MAX_TOKENS_PER_INPUT) throw invalid(`'${param}' has too many tokens`, param, 'invalid_value');
  for (const t of v) {
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0 || t > MAX_TOKEN_ID) {
      throw invalid(`'${param}' must contain only non-negative integer token IDs`, param, 'invalid_value');
    }
  }
  return v as number[];
}

/**
 * The inputs of a body's `input`: a string, an array of strings, an array of token IDs, or an
 * array of token arrays (OpenAI's four forms; one request's inputs are all text or all tokens, as
 * OpenAI's are). Empty strings and arrays are refused, as OpenAI does.
 */
export function embeddingInputs(raw: unknown): EmbeddingInputItem[] {
  if (typeof raw === 'string') {
    if (raw === '') throw invalid("'input' must not be an empty string", 'input', 'invalid_value');
    return [raw];
  }
  if (!Array.isArray(raw)) throw invalid("'input' is required: a string, an array of strings, or token arrays", 'input', 'missing_required_parameter');
  if (raw.length === 0) throw invalid("'input' must not be empty", 'input', 'invalid_value');
  if (raw.every((t) => typeof t === 'number')) return [tokenArray(raw, 'input')];
  if (raw.length > MAX_EMBEDDING_INPUTS) throw invalid(`'input' may hold at most ${MAX_EMBEDDING_INPUTS} inputs`, 'input', 'invalid_value');
  const inputs = raw.map((item, i): EmbeddingInputItem => {
    const param = `input[${i}]`;
    if (typeof item === 'string') {
      if (item === '') throw invalid(`'${param}' must not be an empty string`, param, 'invalid_value');
      return item;
    }
    if (Array.isArray(item)) return tokenArray(item, param);
    throw invalid(`'${param}' must be a string or an array of token IDs`, param, 'invalid_type');
  });
  const mixed = inputs.findIndex((item) => typeof item !== typeof inputs[0]);
  if (mixed !== -1) throw invalid(`'input[${mixed}]': inputs must be all strings or all token arrays`, `input[${mixed}]`, 'invalid_type');
  return inputs;
}

export function validateEmbeddingsBody(raw: unknown): ValidEmbeddingsBody {
  if (!isObject(raw)) throw invalid('The request body must be a JSON object', null, 'invalid_type');
  for (const field of Object.keys(raw)) {
    if (!KNOWN_FIELDS.has(field)) throw invalid(`'${field}' is not supported by /v1/embeddings`, field, 'unsupported_parameter');
  }
  const model = requestModel(raw.model);
  const inputs = embeddingInputs(raw.input);
  const format = raw.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') throw invalid("'encoding_format' must be 'float' or 'base64'", 'encoding_format', 'invalid_value');
  const dimensions = raw.dimensions ?? null;
  if (dimensions !== null && (typeof dimensions !== 'number' || !Number.isSafeInteger(dimensions) || dimensions < 1 || dimensions > MAX_DIMENSIONS)) {
    throw invalid(`'dimensions' must be an integer from 1 to ${MAX_DIMENSIONS}`, 'dimensions', 'invalid_value');
  }
  const user = raw.user ?? null;
  if (user !== null && (typeof user !== 'string' || user.length > 256)) throw invalid("'user' must be a string of at most 256 characters", 'user', 'invalid_value');
  return { model, inputs, encodingFormat: format, dimensions: dimensions as number | null, user: user as string | null };
}

/**
 * Upper bound of the prompt tokens of `inputs` under any tokenizer, for the reservation: one token
 * per UTF-8 byte of a text (plus a BOS and an EOS), the length of a token array (plus the same two).
 */
export function estimateEmbeddingTokens(inputs: readonly EmbeddingInputItem[]): number {
  return inputs.reduce((n, item) => n + 2 + (typeof item === 'string' ? Buffer.byteLength(item, 'utf8') : item.length), 0);
}

/**
 * The boundary check before a backend sees an activity's inputs (a history may carry anything):
 * the message of the first problem, else null.
 */
export function checkEmbedInputs(inputs: unknown, dimensions: unknown): { message: string; param: string } | null {
  try {
    embeddingInputs(inputs);
  } catch (err) {
    if (err instanceof InvalidRequestError) return { message: err.message, param: err.param ?? 'input' };
    throw err;
  }
  if (Array.isArray(inputs) && inputs.length > MAX_EMBEDDING_INPUTS) return { message: `at most ${MAX_EMBEDDING_INPUTS} inputs`, param: 'input' };
  if (dimensions !== null && (typeof dimensions !== 'number' || !Number.isSafeInteger(dimensions) || dimensions < 1 || dimensions > MAX_DIMENSIONS)) {
    return { message: 'dimensions must be a positive integer', param: 'dimensions' };
  }
  return null;
}

/** The refusal of a model asked for what it does not serve (chat vs embeddings). */
export function wrongModelKind(model: string, kind: 'chat' | 'embeddings'): string {
  return kind === 'embeddings'
    ? `The model '${model}' is an embeddings model: use /v1/embeddings`
    : `The model '${model}' does not serve embeddings: use an embeddings model`;
}
