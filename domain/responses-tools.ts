/**
 * Function tools on `/v1/responses`, pure: a Responses function tool (`{type: 'function', name,
 * description, parameters, strict}`) and `tool_choice` (`{type: 'function', name}`) mapped onto the
 * chat shapes and checked by the chat path's own rules (`domain/tools.ts`: names, schemas, sizes,
 * a named choice among the tools), with the errors renamed to the Responses paths; the
 * `function_call` and `function_call_output` input items, checked like an assistant message's
 * `tool_calls` and a `tool` message's `tool_call_id` (every output answers an earlier call, once).
 * Built-in tools (web search, file search, …) are refused naming `tools[i].type`.
 */
import type { ChatExtras, ChatMessageInput, ToolChoice, ToolDefinition } from '../contracts/chat.js';
import type { ResponseFunctionTool, ResponseToolChoice } from '../contracts/responses.js';
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';
import { MAX_TOOL_ARGUMENTS_BYTES, MAX_TOOL_CALL_ID, TOOL_NAME_PATTERN, validateToolFields } from './tools.js';

/** Built-in tool types OpenAI runs itself; Sluice runs none of them. */
const BUILT_IN_TOOLS: readonly string[] = ['file_search', 'code_interpreter', 'image_generation', 'mcp', 'local_shell', 'shell', 'apply_patch'];
const BUILT_IN_PREFIXES: readonly string[] = ['web_search', 'computer_use'];

/** Longest item `id` accepted on an input item. */
const MAX_ITEM_ID = 128;
/** Largest `function_call_output.output`, in bytes (as a tool message's content). */
export const MAX_CALL_OUTPUT_BYTES = 1024 * 1024;

const given = (v: unknown): boolean => v !== undefined && v !== null;

function invalid(message: string, param: string | null, code = 'invalid_value'): InvalidRequestError {
  return new InvalidRequestError(message, param, code);
}

/** The tools of a request: what the chat pipeline runs (extras) and what the response echoes. */
export interface ResponseToolsOf {
  extras: Pick<ChatExtras, 'tools' | 'tool_choice' | 'parallel_tool_calls'>;
  tools: ResponseFunctionTool[];
  toolChoice: ResponseToolChoice;
  parallelToolCalls: boolean;
}

/** A chat-path tool error under the Responses names: `tools[i].function.x` → `tools[i].x`, `tool_choice.function.name` → `tool_choice.name`. */
export function responsesToolParam(s: string): string {
  return s.replace(/^tools\[(\d+)\]\.function\./, 'tools[$1].').replace(/^tools\[(\d+)\]\.function$/, 'tools[$1]').replace(/^tool_choice\.function(\.name)?$/, 'tool_choice.name');
}

function renamedTools<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (!(err instanceof InvalidRequestError)) throw err;
    const message = err.message.replace(/tools\[(\d+)\]\.function\./g, 'tools[$1].').replaceAll('tool_choice.function.name', 'tool_choice.name');
    throw new InvalidRequestError(message, err.param === null ? null : responsesToolParam(err.param), err.code);
  }
}

/** One `tools[i]`: a function tool in the chat shape; a built-in or custom tool is refused naming its type. */
function chatToolOf(tool: unknown, i: number): ToolDefinition {
  const at = `tools[${i}]`;
  if (!isObject(tool) || typeof tool.type !== 'string') throw invalid(`'${at}' must be an object with a 'type'`, at, 'invalid_type');
  const type = tool.type;
  if (BUILT_IN_TOOLS.includes(type) || BUILT_IN_PREFIXES.some((p) => type.startsWith(p))) {
    throw invalid(`Built-in tool '${type.slice(0, 64)}' is not supported: Sluice runs no hosted tools (web search, file search, code interpreter, computer use, image generation, MCP, shell); declare a function tool and run it yourself`, `${at}.type`, 'unsupported_tool');
  }
  if (type === 'custom') throw invalid(`'${at}': custom (free-form) tools are not supported; use a function tool`, `${at}.type`, 'unsupported_tool');
  if (type !== 'function') throw invalid(`'${at}.type' is not a known tool type`, `${at}.type`);
  const extra = Object.keys(tool).find((k) => !['type', 'name', 'description', 'parameters', 'strict'].includes(k));
  if (extra !== undefined) throw invalid(`Unrecognized argument '${at}.${extra}'`, `${at}.${extra}`, 'unrecognized_request_argument');
  const fn: Record<string, unknown> = { name: tool.name };
  if (given(tool.description)) fn.description = tool.description;
  if (given(tool.parameters)) fn.parameters = tool.parameters;
  // Responses' default is strict (OpenAI): an upstream is asked for strict calls unless the client said false.
  fn.strict = given(tool.strict) ? tool.strict : true;
  return { type: 'function', function: fn as ToolDefinition['function'] };
}

/** `tool_choice` in the chat shape (a named function `{type, name}` → `{type, function: {name}}`). */
function chatChoiceOf(raw: unknown): unknown {
  if (!isObject(raw)) return raw;
  if (raw.type !== 'function') {
    const type = typeof raw.type === 'string' ? raw.type.slice(0, 64) : typeof raw.type;
    throw invalid(`'tool_choice' of type '${type}' is not supported: only none, auto, required or a function ({type: 'function', name})`, 'tool_choice.type', 'unsupported_parameter');
  }
  const extra = Object.keys(raw).find((k) => k !== 'type' && k !== 'name');
  if (extra !== undefined) throw invalid(`Unrecognized argument 'tool_choice.${extra}'`, `tool_choice.${extra}`, 'unrecognized_request_argument');
  return { type: 'function', function: { name: raw.name } };
}

/**
 * `tools`, `tool_choice` and `parallel_tool_calls` of a Responses body. Without tools (absent or
 * `[]`), `tool_choice` may be `none` or `auto` and `parallel_tool_calls` a boolean (they ask for
 * nothing); with tools, the chat path's rules apply. Throws {@link InvalidRequestError} naming the
 * Responses path.
 */
export function responseToolsOf(raw: Record<string, unknown>): ResponseToolsOf {
  const { tools, tool_choice: choice, parallel_tool_calls: parallel } = raw;
  if (given(parallel) && typeof parallel !== 'boolean') throw invalid("'parallel_tool_calls' must be a boolean", 'parallel_tool_calls', 'invalid_type');
  if (given(tools) && !Array.isArray(tools)) throw invalid("'tools' must be an array", 'tools', 'invalid_type');
  const list = Array.isArray(tools) ? tools.map(chatToolOf) : [];
  if (list.length === 0) {
    if (given(choice) && choice !== 'none' && choice !== 'auto') throw invalid("'tool_choice' other than none or auto needs 'tools'", 'tool_choice');
    return { extras: {}, tools: [], toolChoice: 'none', parallelToolCalls: false };
  }
  const extras = renamedTools(() => validateToolFields({ tools: list, ...(given(choice) ? { tool_choice: chatChoiceOf(choice) } : {}), ...(given(parallel) ? { parallel_tool_calls: parallel } : {}) }));
  const echoTools = (extras.tools ?? []).map((t): ResponseFunctionTool => ({
    type: 'function', name: t.function.name, description: t.function.description ?? null, parameters: t.function.parameters ?? null, strict: t.function.strict !== false,
  }));
  return { extras, tools: echoTools, toolChoice: echoChoice(extras.tool_choice), parallelToolCalls: extras.parallel_tool_calls ?? true };
}

function echoChoice(choice: ToolChoice | undefined): ResponseToolChoice {
  if (choice === undefined) return 'auto';
  return typeof choice === 'string' ? choice : { type: 'function', name: choice.function.name };
}

/** A `function_call` input item, checked. */
export interface FunctionCallTurn {
  type: 'function_call';
  id: string | null;
  callId: string;
  name: string;
  arguments: string;
}

/** A `function_call_output` input item, checked. */
export interface FunctionCallOutputTurn {
  type: 'function_call_output';
  id: string | null;
  callId: string;
  output: string;
}

function itemIdOf(item: Record<string, unknown>, at: string): string | null {
  if (!given(item.id)) return null;
  if (typeof item.id !== 'string' || item.id === '' || item.id.length > MAX_ITEM_ID) throw invalid(`'${at}.id' must be a string of 1 to ${MAX_ITEM_ID} characters`, `${at}.id`, 'invalid_type');
  return item.id;
}

function callIdOf(item: Record<string, unknown>, at: string): string {
  const id = item.call_id;
  if (typeof id !== 'string' || id === '' || id.length > MAX_TOOL_CALL_ID) {
    throw invalid(`'${at}.call_id' must be a string of 1 to ${MAX_TOOL_CALL_ID} characters`, `${at}.call_id`, id === undefined ? 'missing_required_parameter' : 'invalid_value');
  }
  return id;
}

function closedItem(item: Record<string, unknown>, allowed: readonly string[], at: string): void {
  const extra = Object.keys(item).find((k) => !allowed.includes(k));
  if (extra !== undefined) throw invalid(`Unrecognized argument '${at}.${extra}'`, `${at}.${extra}`, 'unrecognized_request_argument');
}

/** `input[i]` of type `function_call`: `call_id`, a function `name`, `arguments` as JSON text. */
export function functionCallTurnOf(item: Record<string, unknown>, at: string): FunctionCallTurn {
  closedItem(item, ['type', 'id', 'call_id', 'name', 'arguments', 'status'], at);
  const id = itemIdOf(item, at);
  const callId = callIdOf(item, at);
  if (typeof item.name !== 'string' || !TOOL_NAME_PATTERN.test(item.name)) throw invalid(`'${at}.name' must be 1 to 64 letters, digits, '_' or '-'`, `${at}.name`);
  if (typeof item.arguments !== 'string') throw invalid(`'${at}.arguments' must be a string (JSON text)`, `${at}.arguments`, 'invalid_type');
  if (Buffer.byteLength(item.arguments) > MAX_TOOL_ARGUMENTS_BYTES) throw invalid(`'${at}.arguments' is larger than ${MAX_TOOL_ARGUMENTS_BYTES} bytes`, `${at}.arguments`);
  return { type: 'function_call', id, callId, name: item.name, arguments: item.arguments };
}

/** `input[i]` of type `function_call_output`: the `call_id` it answers and its `output` (a string, or `input_text` parts). */
export function functionCallOutputTurnOf(item: Record<string, unknown>, at: string): FunctionCallOutputTurn {
  closedItem(item, ['type', 'id', 'call_id', 'output', 'status'], at);
  const id = itemIdOf(item, at);
  const callId = callIdOf(item, at);
  let output: string;
  if (typeof item.output === 'string') {
    output = item.output;
  } else if (Array.isArray(item.output)) {
    output = item.output.map((part, j) => {
      const pat = `${at}.output[${j}]`;
      if (!isObject(part) || part.type !== 'input_text') throw invalid(`'${pat}': only input_text parts are supported in a function call output`, `${pat}.type`, 'unsupported_parameter');
      closedItem(part, ['type', 'text'], pat);
      if (typeof part.text !== 'string') throw invalid(`'${pat}.text' must be a string`, `${pat}.text`, 'invalid_type');
      return part.text;
    }).join('');
  } else {
    throw invalid(`'${at}.output' must be a string or an array of input_text parts`, `${at}.output`, item.output === undefined ? 'missing_required_parameter' : 'invalid_type');
  }
  if (Buffer.byteLength(output) > MAX_CALL_OUTPUT_BYTES) throw invalid(`'${at}.output' is larger than ${MAX_CALL_OUTPUT_BYTES} bytes`, `${at}.output`);
  return { type: 'function_call_output', id, callId, output };
}

/**
 * Checks the calls and outputs of an input against the chain before it (`earlier`, the stored
 * conversation of `previous_response_id`): a call's `call_id` is used once, and every
 * `function_call_output` answers a call made before it (in the chain or the input) that no earlier
 * output answered, as a chat `tool` message must. Throws naming `input[i].call_id`.
 */
export function checkCallOutputs(earlier: readonly ChatMessageInput[], input: ReadonlyArray<{ type: string; callId?: string }>): void {
  const calls = new Set<string>();
  const answered = new Set<string>();
  for (const m of earlier) {
    for (const c of m.tool_calls ?? []) calls.add(c.id);
    if (m.tool_call_id !== undefined) answered.add(m.tool_call_id);
  }
  input.forEach((turn, i) => {
    const id = turn.callId;
    if (id === undefined) return;
    if (turn.type === 'function_call') {
      if (calls.has(id)) throw invalid(`'input[${i}].call_id': '${id.slice(0, 64)}' is used by an earlier function call`, `input[${i}].call_id`);
      calls.add(id);
      return;
    }
    if (!calls.has(id)) throw invalid(`No function call found for the function call output with call_id '${id.slice(0, 64)}'`, `input[${i}].call_id`);
    if (answered.has(id)) throw invalid(`'input[${i}].call_id': that call is already answered by an earlier function call output`, `input[${i}].call_id`);
    answered.add(id);
  });
}
