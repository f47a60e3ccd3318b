/** The one check that a value parsed from JSON is an object (not null, not an array). Pure. */

/** True when `v` is a JSON object: its fields may be read by name. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
