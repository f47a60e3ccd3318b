/** A point in time given by a client (a query or body field): pure. */
import { InvalidRequestError } from './invalid-request.js';

/**
 * Reads a time field: unix seconds (a number or a string of digits, as a query string carries
 * it) or an ISO 8601 text; `fallback` when the field is absent (undefined or null). Anything else
 * is refused with a 400 naming the field (`invalid_value`).
 */
export function timeParam(v: unknown, name: string, fallback: Date): Date {
  if (v === undefined || v === null) return fallback;
  const text = String(v);
  const d = typeof v === 'number' ? new Date(v * 1000) : /^\d+$/.test(text) ? new Date(Number(text) * 1000) : new Date(text);
  if (Number.isNaN(d.getTime())) throw new InvalidRequestError(`'${name}' must be unix seconds or ISO 8601`, name, 'invalid_value');
  return d;
}
