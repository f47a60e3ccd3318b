/**
 * Targeting by request `metadata` (`targeting.metadata` of an experiment): a rule names up to 16
 * keys, each with one accepted value or a list of them; a request matches when, for every key of
 * the rule, its own `metadata` has that key with an accepted value (a request without metadata
 * matches no rule). Keys and values are bounded as a request's metadata is (OpenAI's bounds:
 * 16 keys, 64-character keys, 512-character values), so any rule can be met by some request.
 * Pure: no I/O.
 */
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';
import { METADATA_LIMITS } from './request-metadata.js';

/** A rule: key → the accepted value, or the accepted values (any one of them). */
export type MetadataRule = Readonly<Record<string, string | readonly string[]>>;

/** Most accepted values listed for one key. */
export const MAX_RULE_VALUES = 64;

/**
 * `raw` as a metadata rule; throws {@link InvalidRequestError} naming the field under `param`
 * (e.g. `targeting.metadata.region[2]`). An empty rule is refused: it would match everything,
 * which is what leaving the rule out says.
 */
export function validateMetadataRule(raw: unknown, param = 'targeting.metadata'): Record<string, string | string[]> {
  if (!isObject(raw)) throw new InvalidRequestError(`'${param}' must be an object of metadata keys to a value or a list of values`, param, 'invalid_type');
  const entries = Object.entries(raw);
  if (entries.length === 0 || entries.length > METADATA_LIMITS.pairs) {
    throw new InvalidRequestError(`'${param}' must name 1 to ${METADATA_LIMITS.pairs} keys`, param, 'invalid_value');
  }
  const out: Array<[string, string | string[]]> = [];
  for (const [key, v] of entries) {
    if (key === '' || key.length > METADATA_LIMITS.key) throw new InvalidRequestError(`'${param}' keys must be 1 to ${METADATA_LIMITS.key} characters`, param, 'invalid_value');
    const at = `${param}.${key}`;
    if (typeof v === 'string') {
      if (v.length > METADATA_LIMITS.value) throw new InvalidRequestError(`'${at}' must be at most ${METADATA_LIMITS.value} characters`, at, 'invalid_value');
      out.push([key, v]);
      continue;
    }
    if (!Array.isArray(v)) throw new InvalidRequestError(`'${at}' must be a string or a list of strings`, at, 'invalid_type');
    if (v.length === 0 || v.length > MAX_RULE_VALUES) throw new InvalidRequestError(`'${at}' must list 1 to ${MAX_RULE_VALUES} values`, at, 'invalid_value');
    for (const [i, item] of v.entries()) {
      if (typeof item !== 'string') throw new InvalidRequestError(`'${at}[${i}]' must be a string`, `${at}[${i}]`, 'invalid_type');
      if (item.length > METADATA_LIMITS.value) throw new InvalidRequestError(`'${at}[${i}]' must be at most ${METADATA_LIMITS.value} characters`, `${at}[${i}]`, 'invalid_value');
    }
    out.push([key, [...new Set(v as string[])]]);
  }
  // Own data properties only: a key such as `__proto__` stays a key.
  return Object.fromEntries(out);
}

/** Whether a request's metadata meets every key of the rule (see the top of this file). */
export function metadataMatches(rule: MetadataRule, metadata: Readonly<Record<string, string>> | null): boolean {
  for (const [key, accepted] of Object.entries(rule)) {
    if (metadata === null || !Object.hasOwn(metadata, key)) return false;
    const value = metadata[key];
    if (typeof value !== 'string') return false;
    // A stored rule is read as it is (a row written past the API): anything but a string or a list matches nothing.
    if (!(Array.isArray(accepted) ? accepted.includes(value) : accepted === value)) return false;
  }
  return true;
}
