/**
 * `response_format`: its validation (every backend), and the JSON Schema subset that llama.cpp can
 * enforce with node-llama-cpp's JSON-schema grammar (`llama.createGrammarForJsonSchema`). A schema
 * with a keyword outside that subset is refused for a llama.cpp deployment, naming the keyword's
 * path, rather than answered with output the grammar did not constrain. Upstreams get the format
 * unchanged and decide for themselves. Pure.
 */
import type { ResponseFormat } from '../contracts/chat.js';
import { canonicalJson } from './canonical-json.js';
import { InvalidRequestError } from './invalid-request.js';

/** Largest schema accepted, in bytes of canonical JSON: a grammar is built from it per request. */
export const MAX_SCHEMA_BYTES = 64 * 1024;
/** Deepest nesting of schema nodes the grammar check walks. */
export const MAX_SCHEMA_DEPTH = 24;
/** Most schema nodes (objects) in one schema. */
export const MAX_SCHEMA_NODES = 2000;

const PARAM = 'response_format';
const SCHEMA_PARAM = 'response_format.json_schema.schema';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(message: string, param: string, code = 'invalid_value'): InvalidRequestError {
  return new InvalidRequestError(message, param, code);
}

/**
 * Checks a requested `response_format` (`json_object` or `json_schema`; `text` is neutral and
 * never reaches here) and returns it as it will be passed on. Throws naming the field.
 */
export function validateResponseFormat(raw: unknown): ResponseFormat {
  if (!isObject(raw)) throw bad(`'${PARAM}' must be an object`, PARAM, 'invalid_type');
  if (raw.type === 'json_object') {
    if (Object.keys(raw).length !== 1) throw bad(`'${PARAM}' of type json_object takes no other field`, PARAM);
    return { type: 'json_object' };
  }
  if (raw.type !== 'json_schema') throw bad(`'${PARAM}.type' must be one of text, json_object, json_schema`, `${PARAM}.type`);
  const extra = Object.keys(raw).find((k) => k !== 'type' && k !== 'json_schema');
  if (extra !== undefined) throw bad(`Unrecognized argument '${PARAM}.${extra}'`, `${PARAM}.${extra}`);
  const js = raw.json_schema;
  if (!isObject(js)) throw bad(`'${PARAM}.json_schema' is required for type json_schema`, `${PARAM}.json_schema`, 'missing_required_parameter');
  const unknown = Object.keys(js).find((k) => !['name', 'description', 'schema', 'strict'].includes(k));
  if (unknown !== undefined) throw bad(`Unrecognized argument '${PARAM}.json_schema.${unknown}'`, `${PARAM}.json_schema.${unknown}`);
  if (typeof js.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name)) {
    throw bad(`'${PARAM}.json_schema.name' must be 1 to 64 letters, digits, '_' or '-'`, `${PARAM}.json_schema.name`);
  }
  if (js.description !== undefined && typeof js.description !== 'string') throw bad(`'${PARAM}.json_schema.description' must be a string`, `${PARAM}.json_schema.description`, 'invalid_type');
  if (js.strict !== undefined && js.strict !== null && typeof js.strict !== 'boolean') throw bad(`'${PARAM}.json_schema.strict' must be a boolean`, `${PARAM}.json_schema.strict`, 'invalid_type');
  if (js.schema !== undefined && !isObject(js.schema)) throw bad(`'${SCHEMA_PARAM}' must be an object`, SCHEMA_PARAM, 'invalid_type');
  if (js.schema !== undefined && Buffer.byteLength(canonicalJson(js.schema)) > MAX_SCHEMA_BYTES) {
    throw bad(`'${SCHEMA_PARAM}' is larger than ${MAX_SCHEMA_BYTES} bytes`, SCHEMA_PARAM);
  }
  return {
    type: 'json_schema',
    json_schema: {
      name: js.name,
      ...(typeof js.description === 'string' ? { description: js.description } : {}),
      ...(js.schema !== undefined ? { schema: js.schema as Record<string, unknown> } : {}),
      ...(typeof js.strict === 'boolean' ? { strict: js.strict } : {}),
    },
  };
}

/** Keywords that only annotate: dropped before the grammar is built. */
const ANNOTATIONS: ReadonlySet<string> = new Set(['title', '$comment', 'examples', 'default', '$schema', '$id', 'deprecated', 'readOnly', 'writeOnly']);
const PRIMITIVES: ReadonlySet<string> = new Set(['string', 'number', 'integer', 'boolean', 'null']);
/** The keywords node-llama-cpp's JSON-schema grammar enforces, by schema kind (`description` everywhere). */
const KEYWORDS = {
  any: ['description'],
  string: ['type', 'minLength', 'maxLength', 'format'],
  object: ['type', 'properties', 'additionalProperties', 'required', 'minProperties', 'maxProperties'],
  array: ['type', 'items', 'prefixItems', 'minItems', 'maxItems'],
  primitive: ['type'],
  const: ['const', 'type'],
  enum: ['enum', 'type'],
  oneOf: ['oneOf'],
  anyOf: ['anyOf'],
  ref: ['$ref'],
} as const;
const FORMATS: ReadonlySet<string> = new Set(['date-time', 'time', 'date']);

const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isPrimitiveValue = (v: unknown): boolean => v === null || ['string', 'number', 'boolean'].includes(typeof v);

/**
 * Rewrites `schema` into what node-llama-cpp's grammar builder takes (annotations dropped,
 * `anyOf` as `oneOf`: an alternation, so every output matches at least one branch), or throws
 * {@link InvalidRequestError} naming the first keyword the grammar cannot enforce. `$ref` must
 * point into the root's `$defs` (`#/$defs/<name>`).
 *
 * @param param - the schema's path in the request, for error `param`s (a tool's parameters use
 *   `tools[i].function.parameters`). @default 'response_format.json_schema.schema'
 */
export function toGrammarSchema(schema: Record<string, unknown>, param: string = SCHEMA_PARAM): Record<string, unknown> {
  let nodes = 0;
  const rootDefs = isObject(schema.$defs) ? schema.$defs : {};

  function walk(node: unknown, path: string, depth: number, root: boolean): Record<string, unknown> {
    if (!isObject(node)) throw bad(`'${path}' must be a schema object`, path, 'invalid_type');
    if (++nodes > MAX_SCHEMA_NODES) throw bad(`'${param}' has more than ${MAX_SCHEMA_NODES} schemas`, param);
    if (depth > MAX_SCHEMA_DEPTH) throw bad(`'${path}' is nested deeper than ${MAX_SCHEMA_DEPTH}`, path);
    const keys = Object.keys(node).filter((k) => !ANNOTATIONS.has(k) && !(root && k === '$defs'));
    const kind = kindOf(node, path);
    const allowed: readonly string[] = [...KEYWORDS.any, ...KEYWORDS[kind]];
    const unsupported = keys.find((k) => !allowed.includes(k));
    if (unsupported !== undefined) {
      throw new InvalidRequestError(
        `'${path}.${unsupported}' cannot be enforced on llama.cpp deployments (their JSON-schema grammar supports type, properties, required, additionalProperties, items, prefixItems, enum, const, anyOf/oneOf, $ref to $defs, string length and date formats, and item or property counts)`,
        `${path}.${unsupported}`,
        'unsupported_parameter',
      );
    }
    const out: Record<string, unknown> = {};
    if (typeof node.description === 'string') out.description = node.description;
    switch (kind) {
      case 'const':
        if (!isPrimitiveValue(node.const)) throw unsupportedValue(`${path}.const`, 'a string, number, boolean or null');
        out.const = node.const;
        break;
      case 'enum':
        if (!Array.isArray(node.enum) || node.enum.length === 0 || !node.enum.every(isPrimitiveValue)) throw unsupportedValue(`${path}.enum`, 'a non-empty array of strings, numbers, booleans or null');
        out.enum = node.enum;
        break;
      case 'oneOf':
      case 'anyOf': {
        const list = node[kind];
        if (!Array.isArray(list) || list.length === 0) throw unsupportedValue(`${path}.${kind}`, 'a non-empty array of schemas');
        out.oneOf = list.map((s, i) => walk(s, `${path}.${kind}[${i}]`, depth + 1, false));
        break;
      }
      case 'ref': {
        const ref = node.$ref;
        const name = typeof ref === 'string' && ref.startsWith('#/$defs/') ? ref.slice('#/$defs/'.length) : null;
        if (name === null || !Object.prototype.hasOwnProperty.call(rootDefs, name)) throw unsupportedValue(`${path}.$ref`, "'#/$defs/<name>' naming a schema of the root's $defs");
        out.$ref = ref;
        break;
      }
      case 'primitive':
        out.type = node.type;
        break;
      case 'string':
        out.type = 'string';
        for (const k of ['minLength', 'maxLength'] as const) {
          if (node[k] === undefined) continue;
          if (!isCount(node[k])) throw unsupportedValue(`${path}.${k}`, 'a non-negative integer');
          out[k] = node[k];
        }
        if (node.format !== undefined) {
          if (typeof node.format !== 'string' || !FORMATS.has(node.format)) throw unsupportedValue(`${path}.format`, 'one of date-time, time, date');
          if (out.minLength !== undefined || out.maxLength !== undefined) throw unsupportedValue(`${path}.format`, 'not combined with minLength or maxLength');
          out.format = node.format;
        }
        break;
      case 'object': {
        out.type = 'object';
        const props = node.properties ?? {};
        if (!isObject(props)) throw unsupportedValue(`${path}.properties`, 'an object of schemas');
        out.properties = Object.fromEntries(Object.entries(props).map(([k, s]) => [k, walk(s, `${path}.properties.${k}`, depth + 1, false)]));
        if (node.required !== undefined) {
          // The grammar always writes every declared property: `required` holds if it names only those.
          if (!Array.isArray(node.required) || !node.required.every((r) => typeof r === 'string' && Object.prototype.hasOwnProperty.call(props, r))) {
            throw unsupportedValue(`${path}.required`, 'names of declared properties');
          }
        }
        const additional = node.additionalProperties;
        if (additional !== undefined) out.additionalProperties = typeof additional === 'boolean' ? additional : walk(additional, `${path}.additionalProperties`, depth + 1, false);
        for (const k of ['minProperties', 'maxProperties'] as const) {
          if (node[k] === undefined) continue;
          if (!isCount(node[k])) throw unsupportedValue(`${path}.${k}`, 'a non-negative integer');
          out[k] = node[k];
        }
        break;
      }
      case 'array':
        out.type = 'array';
        if (node.items !== undefined) out.items = walk(node.items, `${path}.items`, depth + 1, false);
        if (node.prefixItems !== undefined) {
          if (!Array.isArray(node.prefixItems)) throw unsupportedValue(`${path}.prefixItems`, 'an array of schemas');
          out.prefixItems = node.prefixItems.map((s, i) => walk(s, `${path}.prefixItems[${i}]`, depth + 1, false));
        }
        for (const k of ['minItems', 'maxItems'] as const) {
          if (node[k] === undefined) continue;
          if (!isCount(node[k])) throw unsupportedValue(`${path}.${k}`, 'a non-negative integer');
          out[k] = node[k];
        }
        break;
    }
    return out;
  }

  const out = walk(schema, param, 0, true);
  if (schema.$defs !== undefined) {
    if (!isObject(schema.$defs)) throw unsupportedValue(`${param}.$defs`, 'an object of schemas');
    out.$defs = Object.fromEntries(Object.entries(schema.$defs).map(([k, s]) => [k, walk(s, `${param}.$defs.${k}`, 1, false)]));
  }
  return out;
}

function unsupportedValue(param: string, expected: string): InvalidRequestError {
  return new InvalidRequestError(`'${param}' must be ${expected} on llama.cpp deployments`, param, 'unsupported_parameter');
}

/** Which kind of schema `node` is, by its defining keyword. */
function kindOf(node: Record<string, unknown>, path: string): Exclude<keyof typeof KEYWORDS, 'any'> {
  if ('const' in node) return 'const';
  if ('enum' in node) return 'enum';
  if ('oneOf' in node) return 'oneOf';
  if ('anyOf' in node) return 'anyOf';
  if ('$ref' in node) return 'ref';
  const type = node.type;
  if (type === 'string') return 'string';
  if (type === 'object') return 'object';
  if (type === 'array') return 'array';
  if (typeof type === 'string' && PRIMITIVES.has(type)) return 'primitive';
  if (Array.isArray(type) && type.length > 0 && type.every((t) => typeof t === 'string' && PRIMITIVES.has(t))) return 'primitive';
  if (type === undefined) {
    throw new InvalidRequestError(`'${path}' must constrain its value (type, enum, const, anyOf, oneOf or $ref) on llama.cpp deployments`, path, 'unsupported_parameter');
  }
  throw unsupportedValue(`${path}.type`, 'one type name, or a list of string, number, integer, boolean, null');
}

/**
 * The grammar llama.cpp enforces for `format`: `json` (any JSON value) for `json_object`, the
 * rewritten schema for `json_schema` (a `json_schema` without a schema is any JSON). Throws naming
 * what it cannot enforce.
 */
export function llamaCppGrammarFor(format: ResponseFormat): { kind: 'json' } | { kind: 'schema'; schema: Record<string, unknown> } {
  if (format.type === 'json_object' || format.json_schema.schema === undefined) return { kind: 'json' };
  return { kind: 'schema', schema: toGrammarSchema(format.json_schema.schema) };
}
