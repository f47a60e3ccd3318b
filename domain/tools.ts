/**
 * Tools of a chat request: `tools`, `tool_choice` and `parallel_tool_calls` (validated where the
 * body enters and again at the backend boundary, by the same functions), the tool fields of
 * messages (an assistant's `tool_calls`, a `tool` message's `tool_call_id`), what a llama.cpp
 * grammar can force (a function's `parameters` through the JSON-schema subset of
 * `domain/response-format.ts`), and the IDs Sluice gives the calls it generates. Pure.
 */
import { createHash } from 'node:crypto';
import { MAX_TOOL_CALLS, type ChatExtras, type ToolCall, type ToolChoice, type ToolDefinition } from '../contracts/chat.js';
import { canonicalJson } from './canonical-json.js';
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';
import { MAX_SCHEMA_BYTES, toGrammarSchema } from './response-format.js';

/** OpenAI's function-name rule. */
export const TOOL_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
/** Most tools in one request (OpenAI's bound). */
export const MAX_TOOLS = 128;
/** Longest tool `description`, in characters. */
export const MAX_TOOL_DESCRIPTION = 4096;
/** Largest `tools` array, in bytes of canonical JSON (each `parameters` also within `MAX_SCHEMA_BYTES`). */
export const MAX_TOOLS_BYTES = 256 * 1024;
/** Longest tool-call ID accepted in a message (and from an upstream). */
export const MAX_TOOL_CALL_ID = 256;
/** Largest `arguments` of one call, in bytes. */
export const MAX_TOOL_ARGUMENTS_BYTES = 64 * 1024;

export { MAX_TOOL_CALLS };

function bad(message: string, param: string, code = 'invalid_value'): InvalidRequestError {
  return new InvalidRequestError(message, param, code);
}

/** Refuses any key of `obj` outside `allowed`, naming `<at>.<key>`. */
function closed(obj: Record<string, unknown>, allowed: readonly string[], at: string): void {
  const extra = Object.keys(obj).find((k) => !allowed.includes(k));
  if (extra !== undefined) throw bad(`Unrecognized argument '${at}.${extra}'`, `${at}.${extra}`, 'unrecognized_request_argument');
}

/** One `tools[i]`: a function tool with a valid name, description, parameters and strict. */
function validateTool(raw: unknown, i: number): ToolDefinition {
  const at = `tools[${i}]`;
  if (!isObject(raw)) throw bad(`'${at}' must be an object`, at, 'invalid_type');
  if (raw.type !== 'function') throw bad(`'${at}.type' must be 'function' (other tool types are not supported)`, `${at}.type`, 'unsupported_parameter');
  closed(raw, ['type', 'function'], at);
  const fn = raw.function;
  const fat = `${at}.function`;
  if (!isObject(fn)) throw bad(`'${fat}' is required and must be an object`, fat, 'missing_required_parameter');
  closed(fn, ['name', 'description', 'parameters', 'strict'], fat);
  if (typeof fn.name !== 'string' || !TOOL_NAME_PATTERN.test(fn.name)) throw bad(`'${fat}.name' must be 1 to 64 letters, digits, '_' or '-'`, `${fat}.name`);
  if (fn.description !== undefined && fn.description !== null) {
    if (typeof fn.description !== 'string') throw bad(`'${fat}.description' must be a string`, `${fat}.description`, 'invalid_type');
    if (fn.description.length > MAX_TOOL_DESCRIPTION) throw bad(`'${fat}.description' is longer than ${MAX_TOOL_DESCRIPTION} characters`, `${fat}.description`);
  }
  if (fn.strict !== undefined && fn.strict !== null && typeof fn.strict !== 'boolean') throw bad(`'${fat}.strict' must be a boolean`, `${fat}.strict`, 'invalid_type');
  const params = fn.parameters;
  const pat = `${fat}.parameters`;
  if (params !== undefined && params !== null) {
    if (!isObject(params)) throw bad(`'${pat}' must be a JSON Schema object`, pat, 'invalid_type');
    // Arguments are a JSON object: OpenAI refuses a schema of anything else, and so do we.
    if (params.type !== 'object' && !(params.type === undefined && Object.keys(params).length === 0)) throw bad(`'${pat}' must be a JSON Schema of type 'object'`, `${pat}.type`);
    if (Buffer.byteLength(canonicalJson(params)) > MAX_SCHEMA_BYTES) throw bad(`'${pat}' is larger than ${MAX_SCHEMA_BYTES} bytes`, pat);
  }
  return {
    type: 'function',
    function: {
      name: fn.name,
      ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
      ...(isObject(params) ? { parameters: params } : {}),
      ...(typeof fn.strict === 'boolean' ? { strict: fn.strict } : {}),
    },
  };
}

/** `tool_choice` against the request's tools. */
function validateToolChoice(raw: unknown, names: ReadonlySet<string>): ToolChoice {
  if (raw === 'auto' || raw === 'none' || raw === 'required') return raw;
  if (typeof raw === 'string') throw bad("'tool_choice' must be one of none, auto, required, or a named function", 'tool_choice');
  if (!isObject(raw)) throw bad("'tool_choice' must be a string or an object", 'tool_choice', 'invalid_type');
  if (raw.type !== 'function') throw bad("'tool_choice.type' must be 'function' (allowed_tools and custom tools are not supported)", 'tool_choice.type', 'unsupported_parameter');
  closed(raw, ['type', 'function'], 'tool_choice');
  const fn = raw.function;
  if (!isObject(fn)) throw bad("'tool_choice.function' is required", 'tool_choice.function', 'missing_required_parameter');
  closed(fn, ['name'], 'tool_choice.function');
  if (typeof fn.name !== 'string' || !names.has(fn.name)) throw bad("'tool_choice.function.name' must name one of the request's tools", 'tool_choice.function.name');
  return { type: 'function', function: { name: fn.name } };
}

/**
 * The tool fields of `raw` (a request body, or an `extras` object from a history), checked: `tools`
 * (1 to {@link MAX_TOOLS} function tools, unique names, within {@link MAX_TOOLS_BYTES}),
 * `tool_choice` (a named function must be one of them) and `parallel_tool_calls` (a boolean).
 * Without tools, `tool_choice: "none"` asks for nothing and is dropped; any other tool field is a
 * 400 naming it, as OpenAI answers. Throws {@link InvalidRequestError}.
 */
export function validateToolFields(raw: Record<string, unknown>): Pick<ChatExtras, 'tools' | 'tool_choice' | 'parallel_tool_calls'> {
  const given = (v: unknown) => v !== undefined && v !== null;
  if (!given(raw.tools)) {
    if (given(raw.tool_choice) && raw.tool_choice !== 'none') throw bad("'tool_choice' is only allowed when 'tools' are specified", 'tool_choice');
    if (given(raw.parallel_tool_calls)) throw bad("'parallel_tool_calls' is only allowed when 'tools' are specified", 'parallel_tool_calls');
    return {};
  }
  if (!Array.isArray(raw.tools)) throw bad("'tools' must be an array", 'tools', 'invalid_type');
  if (raw.tools.length === 0) throw bad("'tools' must contain at least one tool", 'tools');
  if (raw.tools.length > MAX_TOOLS) throw bad(`'tools' may hold at most ${MAX_TOOLS} tools`, 'tools');
  const tools = raw.tools.map(validateTool);
  if (Buffer.byteLength(canonicalJson(tools)) > MAX_TOOLS_BYTES) throw bad(`'tools' is larger than ${MAX_TOOLS_BYTES} bytes`, 'tools');
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw bad(`'tools[${i}].function.name': '${t.function.name}' is declared twice`, `tools[${i}].function.name`);
    names.add(t.function.name);
  });
  const out: Pick<ChatExtras, 'tools' | 'tool_choice' | 'parallel_tool_calls'> = { tools };
  if (given(raw.tool_choice)) out.tool_choice = validateToolChoice(raw.tool_choice, names);
  if (given(raw.parallel_tool_calls)) {
    if (typeof raw.parallel_tool_calls !== 'boolean') throw bad("'parallel_tool_calls' must be a boolean", 'parallel_tool_calls', 'invalid_type');
    out.parallel_tool_calls = raw.parallel_tool_calls;
  }
  return out;
}

/**
 * One call of an assistant message (`messages[i].tool_calls[j]`): an ID, type `function`, a
 * function name and its `arguments` as a string. Throws naming the field.
 */
export function validateToolCall(raw: unknown, at: string): ToolCall {
  if (!isObject(raw)) throw bad(`'${at}' must be an object`, at, 'invalid_type');
  closed(raw, ['id', 'type', 'function'], at);
  if (typeof raw.id !== 'string' || raw.id === '' || raw.id.length > MAX_TOOL_CALL_ID) throw bad(`'${at}.id' must be a string of 1 to ${MAX_TOOL_CALL_ID} characters`, `${at}.id`);
  if (raw.type !== 'function') throw bad(`'${at}.type' must be 'function'`, `${at}.type`);
  const fn = raw.function;
  if (!isObject(fn)) throw bad(`'${at}.function' is required`, `${at}.function`, 'missing_required_parameter');
  closed(fn, ['name', 'arguments'], `${at}.function`);
  if (typeof fn.name !== 'string' || !TOOL_NAME_PATTERN.test(fn.name)) throw bad(`'${at}.function.name' must be 1 to 64 letters, digits, '_' or '-'`, `${at}.function.name`);
  if (typeof fn.arguments !== 'string') throw bad(`'${at}.function.arguments' must be a string (JSON text)`, `${at}.function.arguments`, 'invalid_type');
  if (Buffer.byteLength(fn.arguments) > MAX_TOOL_ARGUMENTS_BYTES) throw bad(`'${at}.function.arguments' is larger than ${MAX_TOOL_ARGUMENTS_BYTES} bytes`, `${at}.function.arguments`);
  return { id: raw.id, type: 'function', function: { name: fn.name, arguments: fn.arguments } };
}

/**
 * An assistant message's `tool_calls`: 1 to {@link MAX_TOOL_CALLS} calls, IDs unique within the
 * conversation (`seen` collects them, so a later `tool` message can be checked against them).
 */
export function validateToolCalls(raw: unknown, at: string, seen: Set<string>): ToolCall[] {
  if (!Array.isArray(raw)) throw bad(`'${at}' must be an array`, at, 'invalid_type');
  if (raw.length === 0 || raw.length > MAX_TOOL_CALLS) throw bad(`'${at}' must hold 1 to ${MAX_TOOL_CALLS} calls`, at);
  return raw.map((c, j) => {
    const call = validateToolCall(c, `${at}[${j}]`);
    if (seen.has(call.id)) throw bad(`'${at}[${j}].id': '${call.id.slice(0, 64)}' is used by an earlier call`, `${at}[${j}].id`);
    seen.add(call.id);
    return call;
  });
}

/**
 * The backend boundary's check of the tool fields of resolved messages (from a history): calls only
 * on assistant messages and well formed, `tool_call_id` a string on tool messages only. Returns
 * the problem, or null. (A `tool` message without an ID predates tools and is served as before.)
 */
export function checkMessageTools(messages: readonly unknown[]): InvalidRequestError | null {
  const seen = new Set<string>();
  try {
    messages.forEach((m, i) => {
      if (!isObject(m)) return;
      if (m.tool_calls !== undefined) {
        if (m.role !== 'assistant') throw bad(`'messages[${i}].tool_calls' is only allowed on assistant messages`, `messages[${i}].tool_calls`);
        validateToolCalls(m.tool_calls, `messages[${i}].tool_calls`, seen);
      }
      if (m.tool_call_id !== undefined && (m.role !== 'tool' || typeof m.tool_call_id !== 'string' || m.tool_call_id.length > MAX_TOOL_CALL_ID)) {
        throw bad(`'messages[${i}].tool_call_id' must be a string on a tool message`, `messages[${i}].tool_call_id`);
      }
    });
    return null;
  } catch (err) {
    if (err instanceof InvalidRequestError) return err;
    throw err;
  }
}

/** The schema a function's arguments follow (absent `parameters`: an object with no properties). */
export function argumentsSchema(tool: ToolDefinition): Record<string, unknown> {
  const params = tool.function.parameters;
  return params === undefined || Object.keys(params).length === 0 ? { type: 'object', properties: {}, additionalProperties: false } : params;
}

/**
 * The first function whose `parameters` llama.cpp's JSON-schema grammar cannot enforce, as the 400
 * naming the keyword's path (`tools[i].function.parameters.<path>`); null when all can be forced.
 */
export function llamaCppToolsRefusal(tools: readonly ToolDefinition[]): InvalidRequestError | null {
  try {
    tools.forEach((t, i) => toGrammarSchema(argumentsSchema(t), `tools[${i}].function.parameters`));
    return null;
  } catch (err) {
    if (err instanceof InvalidRequestError) return err;
    throw err;
  }
}

/** The tools a call may be made to under `choice`: all for `auto`/`required`, the named one, none for `none`. */
export function callableTools(tools: readonly ToolDefinition[], choice: ToolChoice | undefined): ToolDefinition[] {
  if (choice === 'none') return [];
  if (typeof choice === 'object') return tools.filter((t) => t.function.name === choice.function.name);
  return [...tools];
}

/**
 * The functions a call may be made to under `choice`, each with its arguments' schema as the
 * llama.cpp grammar enforces it. Throws naming what the grammar cannot enforce.
 */
export function callableGrammarSchemas(tools: readonly ToolDefinition[], choice: ToolChoice | undefined): Array<{ name: string; schema: Record<string, unknown> }> {
  return callableTools(tools, choice).map((t) => ({ name: t.function.name, schema: toGrammarSchema(argumentsSchema(t), `tools[${tools.indexOf(t)}].function.parameters`) }));
}

/** Prefixes every `$ref` into `$defs` of a grammar schema (so several tools' `$defs` can share one root). */
function prefixRefs(node: unknown, prefix: string): unknown {
  if (Array.isArray(node)) return node.map((n) => prefixRefs(n, prefix));
  if (!isObject(node)) return node;
  return Object.fromEntries(Object.entries(node).map(([k, v]) => {
    if (k === '$ref' && typeof v === 'string' && v.startsWith('#/$defs/')) return [k, `#/$defs/${prefix}${v.slice('#/$defs/'.length)}`];
    if (k === 'properties' && isObject(v)) return [k, Object.fromEntries(Object.entries(v).map(([p, s]) => [p, prefixRefs(s, prefix)]))];
    return [k, prefixRefs(v, prefix)];
  }));
}

/**
 * The grammar schema of a forced call (`tool_choice: "required"` or a named function) on llama.cpp:
 * with one callable tool, its arguments alone (`envelope: false`); with several, one of
 * `{"name": <const>, "arguments": <its schema>}` (`envelope: true`), so the model picks the function
 * and its arguments follow that function's schema. Throws naming what the grammar cannot enforce.
 */
export function forcedCallGrammar(tools: readonly ToolDefinition[], choice: ToolChoice | undefined): { schema: Record<string, unknown>; envelope: boolean } {
  const callable = callableGrammarSchemas(tools, choice);
  const [only] = callable;
  if (callable.length === 1 && only !== undefined) return { schema: only.schema, envelope: false };
  const defs: Record<string, unknown> = {};
  const branches = callable.map((t, i) => {
    const { $defs, ...schema } = t.schema;
    if (isObject($defs)) for (const [k, v] of Object.entries($defs)) defs[`t${i}_${k}`] = prefixRefs(v, `t${i}_`);
    return {
      type: 'object',
      properties: { name: { const: t.name }, arguments: prefixRefs(schema, `t${i}_`) },
      required: ['name', 'arguments'],
      additionalProperties: false,
    };
  });
  return { schema: { oneOf: branches, ...(Object.keys(defs).length > 0 ? { $defs: defs } : {}) }, envelope: true };
}

/**
 * Reads a forced call's text (what {@link forcedCallGrammar}'s grammar produced) into the function's
 * name and its arguments as canonical JSON text; null when it is not complete JSON (the generation
 * was cut at `max_tokens`).
 */
export function readForcedCall(text: string, tools: readonly ToolDefinition[], choice: ToolChoice | undefined, envelope: boolean): { name: string; arguments: string } | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!envelope) {
    const [only] = callableTools(tools, choice);
    return only === undefined ? null : { name: only.function.name, arguments: JSON.stringify(value) };
  }
  if (!isObject(value) || typeof value.name !== 'string' || !callableTools(tools, choice).some((t) => t.function.name === value.name)) return null;
  return { name: value.name, arguments: JSON.stringify(value.arguments ?? {}) };
}

/** The ID Sluice gives the `index`-th call of a request's answer: the same on every retry and replay. */
export function toolCallId(requestId: string, index: number): string {
  return `call_${createHash('sha256').update(`${requestId}:tool_call:${index}`).digest('hex').slice(0, 24)}`;
}

/**
 * Bytes a chat template's tool preamble may add besides the definitions themselves (node-llama-cpp's
 * wrappers write a few hundred bytes of instructions and call syntax).
 */
export const TOOLS_PROMPT_OVERHEAD_BYTES = 1024;

/** Bytes the tool definitions add to a prompt, at most (for the token estimate and the reservation). */
export function toolsBytes(tools: readonly ToolDefinition[] | undefined): number {
  return tools === undefined || tools.length === 0 ? 0 : Buffer.byteLength(canonicalJson(tools)) + TOOLS_PROMPT_OVERHEAD_BYTES;
}
