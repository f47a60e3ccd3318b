/**
 * A request's `metadata` (chat completions, responses, their batch lines): string pairs within
 * OpenAI's bounds, checked where the body enters. Pure: no I/O.
 */
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';

/** Most metadata pairs, longest key and value (OpenAI's bounds). */
export const METADATA_LIMITS = { pairs: 16, key: 64, value: 512 } as const;

/**
 * `value` as a request's metadata, or null when absent (`undefined`/`null`); throws
 * {@link InvalidRequestError} naming `metadata` or `metadata.<key>` otherwise.
 */
export function requestMetadata(value: unknown): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw new InvalidRequestError("'metadata' must be an object of strings", 'metadata', 'invalid_type');
  const entries = Object.entries(value);
  if (entries.length > METADATA_LIMITS.pairs) throw new InvalidRequestError(`'metadata' may hold at most ${METADATA_LIMITS.pairs} pairs`, 'metadata', 'invalid_value');
  for (const [key, v] of entries) {
    if (key === '' || key.length > METADATA_LIMITS.key) throw new InvalidRequestError(`'metadata' keys must be 1 to ${METADATA_LIMITS.key} characters`, 'metadata', 'invalid_value');
    if (typeof v !== 'string' || v.length > METADATA_LIMITS.value) {
      throw new InvalidRequestError(`'metadata.${key}' must be a string of at most ${METADATA_LIMITS.value} characters`, `metadata.${key}`, 'invalid_type');
    }
  }
  // Own data properties only: a key such as `__proto__` is kept as a key, never a prototype.
  return Object.fromEntries(entries) as Record<string, string>;
}
