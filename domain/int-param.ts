/** A whole number given by a client (a body field): pure. */
import { InvalidRequestError } from './invalid-request.js';

/**
 * Reads an integer field from `min` to `max` (a JSON number, safe integer); anything else is
 * refused with a 400 naming the field (`invalid_value`). Absent fields are the caller's to default.
 */
export function intParam(v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new InvalidRequestError(`'${name}' must be an integer ${range}`, name, 'invalid_value');
  }
  return v;
}
