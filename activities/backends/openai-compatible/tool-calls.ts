/**
 * An upstream's tool calls, read as a hostile upstream might send them: every call rebuilt field
 * by field (an ID, type `function`, one of the request's functions, `arguments` a string), counts
 * and sizes bounded; anything else fails the attempt cleanly (`unavailable`, with the tokens the
 * upstream reported as spent), never a crash or an oversized history. The upstream's IDs and
 * arguments are relayed as they are (an upstream is not held to the schema; `strict` is its job).
 */
import type { ConsumedTokens, ToolCall, ToolDefinition } from '../../../contracts/chat.js';
import { isObject } from '../../../domain/is-object.js';
import { MAX_TOOL_ARGUMENTS_BYTES, MAX_TOOL_CALLS, MAX_TOOL_CALL_ID, TOOL_NAME_PATTERN } from '../../../domain/tools.js';
import { BackendError } from '../types.js';

/** The failure of an attempt whose upstream sent malformed calls. */
export function malformedToolCalls(why: string, consumed: ConsumedTokens | null): BackendError {
  return new BackendError('unavailable', `upstream returned malformed tool_calls: ${why}`, null, null, consumed);
}

/**
 * The calls of an upstream's message (`message.tool_calls`, or the calls assembled from stream
 * deltas); undefined when it made none. Throws {@link malformedToolCalls}.
 */
export function readUpstreamToolCalls(raw: unknown, tools: readonly ToolDefinition[] | undefined, consumed: ConsumedTokens | null): ToolCall[] | undefined {
  if (raw === undefined || raw === null || (Array.isArray(raw) && raw.length === 0)) return undefined;
  if (!Array.isArray(raw)) throw malformedToolCalls('not an array', consumed);
  if (tools === undefined) throw malformedToolCalls('calls to a request without tools', consumed);
  if (raw.length > MAX_TOOL_CALLS) throw malformedToolCalls(`more than ${MAX_TOOL_CALLS} calls`, consumed);
  const names = new Set(tools.map((t) => t.function.name));
  return raw.map((c, i): ToolCall => {
    const fn = isObject(c) ? c.function : undefined;
    if (!isObject(c) || !isObject(fn)) throw malformedToolCalls(`call ${i} is not an object with a function`, consumed);
    if (typeof c.id !== 'string' || c.id === '' || c.id.length > MAX_TOOL_CALL_ID) throw malformedToolCalls(`call ${i} has no valid id`, consumed);
    if (c.type !== undefined && c.type !== 'function') throw malformedToolCalls(`call ${i} is not of type function`, consumed);
    if (typeof fn.name !== 'string' || !TOOL_NAME_PATTERN.test(fn.name) || !names.has(fn.name)) throw malformedToolCalls(`call ${i} names no function of the request`, consumed);
    if (typeof fn.arguments !== 'string' || Buffer.byteLength(fn.arguments) > MAX_TOOL_ARGUMENTS_BYTES) throw malformedToolCalls(`call ${i} has no arguments string within ${MAX_TOOL_ARGUMENTS_BYTES} bytes`, consumed);
    return { id: c.id, type: 'function', function: { name: fn.name, arguments: fn.arguments } };
  });
}

/** Assembles streamed tool-call deltas (`delta.tool_calls[{index, id, function: {name, arguments}}]`) into calls, bounded. */
export function createToolCallAssembler() {
  const calls: Array<{ id?: unknown; type?: unknown; function: { name: string; arguments: string } }> = [];
  let broken: string | null = null;
  return {
    push(deltas: unknown): void {
      if (broken !== null || deltas === undefined || deltas === null) return;
      if (!Array.isArray(deltas)) {
        broken = 'tool_calls delta is not an array';
        return;
      }
      for (const d of deltas) {
        const index = isObject(d) ? d.index : undefined;
        if (!isObject(d) || typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= MAX_TOOL_CALLS || index > calls.length) {
          broken = 'a tool_calls delta has no valid index';
          return;
        }
        const call = (calls[index] ??= { function: { name: '', arguments: '' } });
        if (d.id !== undefined && d.id !== null) call.id = d.id;
        if (d.type !== undefined && d.type !== null) call.type = d.type;
        const fn = d.function;
        if (isObject(fn)) {
          if (typeof fn.name === 'string') call.function.name += fn.name;
          if (typeof fn.arguments === 'string') call.function.arguments += fn.arguments;
        }
        if (call.function.name.length > 64 || Buffer.byteLength(call.function.arguments) > MAX_TOOL_ARGUMENTS_BYTES) {
          broken = 'a streamed call is larger than allowed';
          return;
        }
      }
    },
    /** The assembled calls (as {@link readUpstreamToolCalls} reads them), or the reason they are malformed. */
    result(): { ok: true; calls: unknown[] } | { ok: false; why: string } {
      return broken !== null ? { ok: false, why: broken } : { ok: true, calls };
    },
  };
}
