/**
 * The `model` field of an inference request body, one rule for every endpoint that takes one
 * (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`, and their batch
 * lines). Pure: no I/O.
 */
import { InvalidRequestError } from './invalid-request.js';

/** Longest model name accepted (a `models.id` is at most this long). */
const MAX_MODEL_LENGTH = 256;

/**
 * `raw` as a model name, else an {@link InvalidRequestError} naming `model`: absent, null or blank
 * → `missing_required_parameter`; any other non-string (a number, an array, an object) →
 * `invalid_type` "must be a string"; over 256 characters → `invalid_value`.
 */
export function requestModel(raw: unknown): string {
  if (raw === undefined || raw === null) throw new InvalidRequestError("'model' is required", 'model', 'missing_required_parameter');
  if (typeof raw !== 'string') throw new InvalidRequestError("'model' must be a string", 'model', 'invalid_type');
  if (raw.trim() === '') throw new InvalidRequestError("'model' is required", 'model', 'missing_required_parameter');
  if (raw.length > MAX_MODEL_LENGTH) throw new InvalidRequestError("'model' is too long", 'model', 'invalid_value');
  return raw;
}
