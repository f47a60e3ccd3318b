/**
 * Tools, pure parts: the grammar a forced call follows and how its text is read back, the call
 * syntax of node-llama-cpp's wrapper read for `auto`, deterministic call IDs, the backend
 * boundary's check of messages, and an upstream's calls read as a hostile upstream sends them.
 */
import { describe, expect, it } from 'vitest';
import { GeneralChatWrapper } from 'node-llama-cpp';
import type { ToolDefinition } from '../../contracts/chat.js';
import { checkMessageTools, forcedCallGrammar, llamaCppToolsRefusal, readForcedCall, toolCallId, validateToolFields } from '../../domain/tools.js';
import { estimatePromptTokens } from '../../domain/chat-validation.js';
import { checkGenerateInput } from '../../domain/sampling-params.js';
import { createArgumentsValidator, readTemplateCall } from '../../activities/backends/llama-cpp/tool-calls.js';
import { createToolCallAssembler, readUpstreamToolCalls } from '../../activities/backends/openai-compatible/tool-calls.js';
import { BackendError } from '../../activities/backends/types.js';

const item = { type: 'object', properties: { name: { type: 'string', maxLength: 4 } }, required: ['name'] };
const tools: ToolDefinition[] = [
  { type: 'function', function: { name: 'a', parameters: { type: 'object', properties: { x: { type: 'boolean' } }, required: ['x'] } } },
  { type: 'function', function: { name: 'b', parameters: { type: 'object', properties: { items: { type: 'array', items: { $ref: '#/$defs/item' } } }, $defs: { item } } } },
  { type: 'function', function: { name: 'c' } },
];

describe('forced calls (llama.cpp)', () => {
  it('one callable function: its arguments alone; several: one of {name, arguments} with $defs kept apart', () => {
    const named = forcedCallGrammar(tools, { type: 'function', function: { name: 'a' } });
    expect(named.envelope).toBe(false);
    expect(named.schema).toMatchObject({ type: 'object', properties: { x: { type: 'boolean' } } });
    const any = forcedCallGrammar(tools, 'required');
    expect(any.envelope).toBe(true);
    const branches = any.schema.oneOf as Array<{ properties: { name: unknown; arguments: any } }>;
    expect(branches.map((b) => b.properties.name)).toEqual([{ const: 'a' }, { const: 'b' }, { const: 'c' }]);
    expect(branches[1]?.properties.arguments.properties.items.items).toEqual({ $ref: '#/$defs/t1_item' });
    expect(Object.keys(any.schema.$defs as object)).toEqual(['t1_item']);
    // A function without parameters takes an empty object.
    expect(branches[2]?.properties.arguments).toMatchObject({ type: 'object', properties: {}, additionalProperties: false });
  });

  it('reads the forced text back into a name and canonical arguments; incomplete JSON is no call', () => {
    expect(readForcedCall('{"x": true}', tools, { type: 'function', function: { name: 'a' } }, false)).toEqual({ name: 'a', arguments: '{"x":true}' });
    expect(readForcedCall('{"name":"b","arguments":{"items":[]}}', tools, 'required', true)).toEqual({ name: 'b', arguments: '{"items":[]}' });
    expect(readForcedCall('{"name":"b","argu', tools, 'required', true)).toBeNull();
    expect(readForcedCall('{"name":"zzz","arguments":{}}', tools, 'required', true)).toBeNull();
  });

  it('a parameters keyword the grammar cannot enforce is refused naming its path', () => {
    const bad: ToolDefinition[] = [tools[0]!, { type: 'function', function: { name: 'p', parameters: { type: 'object', properties: { n: { type: 'number', minimum: 1 } } } } }];
    expect(llamaCppToolsRefusal(bad)).toMatchObject({ param: 'tools[1].function.parameters.properties.n.minimum', code: 'unsupported_parameter' });
    expect(llamaCppToolsRefusal(tools)).toBeNull();
  });
});

describe('auto calls in the chat wrapper\'s syntax (llama.cpp)', () => {
  const wrapper = new GeneralChatWrapper();
  const valid = createArgumentsValidator();
  const call = (text: string) => readTemplateCall(text, wrapper, tools, 'auto', valid);

  it('reads one call whose arguments validate; anything else is text', () => {
    expect(call(' ||call: a({"x": false})')).toEqual({ name: 'a', arguments: '{"x":false}' });
    expect(call('||call: a({"x": false}) and then more')).toEqual({ name: 'a', arguments: '{"x":false}' });
    expect(call('||call: a({"x": "no"})')).toBeNull(); // does not validate
    expect(call('||call: zzz({})')).toBeNull(); // no such tool
    expect(call('Sunny, 20 degrees')).toBeNull();
    expect(readTemplateCall('||call: a({"x": true})', wrapper, tools, { type: 'function', function: { name: 'b' } }, valid)).toBeNull();
  });
});

describe('call IDs, the prompt estimate and the boundary', () => {
  it('a call ID is call_ and 24 hex digits, the same for a request and index every time', () => {
    expect(toolCallId('req_1', 0)).toMatch(/^call_[0-9a-f]{24}$/);
    expect(toolCallId('req_1', 0)).toBe(toolCallId('req_1', 0));
    expect(new Set([toolCallId('req_1', 0), toolCallId('req_1', 1), toolCallId('req_2', 0)]).size).toBe(3);
  });

  it('the prompt estimate counts the tool definitions and the calls of the conversation', () => {
    const messages = [{ role: 'user' as const, content: 'hi' }];
    expect(estimatePromptTokens(messages, tools)).toBeGreaterThan(estimatePromptTokens(messages) + JSON.stringify(tools).length);
    const withCall = [...messages, { role: 'assistant' as const, content: '', tool_calls: [{ id: 'c', type: 'function' as const, function: { name: 'a', arguments: '{"x":true}' } }] }];
    expect(estimatePromptTokens(withCall)).toBeGreaterThan(estimatePromptTokens(messages) + 10);
  });

  it('the backend boundary re-checks tool fields from a history', () => {
    const params = { maxTokens: 4, temperature: 0, topP: null, seed: null, stop: null };
    const call = { id: 'c', type: 'function', function: { name: 'a', arguments: '{}' } };
    expect(checkMessageTools([{ role: 'assistant', content: '', tool_calls: [call] }, { role: 'tool', content: 'r', tool_call_id: 'c' }])).toBeNull();
    expect(checkMessageTools([{ role: 'user', content: '', tool_calls: [call] }])?.param).toBe('messages[0].tool_calls');
    expect(checkMessageTools([{ role: 'assistant', content: '', tool_calls: [{ ...call, function: { name: 'a b', arguments: '{}' } }] }])?.param).toBe('messages[0].tool_calls[0].function.name');
    expect(checkGenerateInput({ messages: [{ role: 'user', content: 'x' }], params: { ...params, extras: { tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: 'sometimes' } } })?.param).toBe('tool_choice');
    expect(checkGenerateInput({ messages: [{ role: 'user', content: 'x' }], params: { ...params, extras: { tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: 'required' } } })).toBeNull();
  });

  it('keeps tools as given (what an upstream receives), drops a lone tool_choice "none"', () => {
    const raw = { tools: [{ type: 'function', function: { name: 'a', description: 'd', parameters: { type: 'object', properties: {} }, strict: true } }], tool_choice: 'required', parallel_tool_calls: false };
    expect(validateToolFields(raw)).toEqual(raw);
    expect(validateToolFields({ tool_choice: 'none' })).toEqual({});
  });
});

describe("an upstream's calls (openai-compatible)", () => {
  const consumed = { promptTokens: 3, completionTokens: 2 };
  const ok = { id: 'call_1', type: 'function', function: { name: 'a', arguments: '{"x":true}' } };

  it('relays well-formed calls, field by field', () => {
    expect(readUpstreamToolCalls([{ ...ok, extra: 'dropped' }], tools, consumed)).toEqual([ok]);
    expect(readUpstreamToolCalls(undefined, tools, consumed)).toBeUndefined();
    expect(readUpstreamToolCalls([], tools, consumed)).toBeUndefined();
  });

  it.each<[string, unknown, readonly ToolDefinition[] | undefined]>([
    ['not an array', { ...ok }, tools],
    ['calls without tools in the request', [ok], undefined],
    ['an unknown function', [{ ...ok, function: { name: 'zzz', arguments: '{}' } }], tools],
    ['arguments not a string', [{ ...ok, function: { name: 'a', arguments: { x: true } } }], tools],
    ['no id', [{ ...ok, id: undefined }], tools],
    ['too many calls', Array.from({ length: 129 }, (_, i) => ({ ...ok, id: `c${i}` })), tools],
    ['huge arguments', [{ ...ok, function: { name: 'a', arguments: 'x'.repeat(70_000) } }], tools],
  ])('refuses %s as a failed attempt that reports what was spent', (_, raw, requestTools) => {
    let error: unknown;
    try {
      readUpstreamToolCalls(raw, requestTools, consumed);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(BackendError);
    expect(error).toMatchObject({ kind: 'unavailable', consumed });
  });

  it('assembles streamed deltas by index; a broken delta is malformed', () => {
    const a = createToolCallAssembler();
    a.push([{ index: 0, id: 'call_1', type: 'function', function: { name: 'a', arguments: '{"x"' } }]);
    a.push([{ index: 0, function: { arguments: ':true}' } }]);
    const result = a.result();
    expect(result.ok && readUpstreamToolCalls(result.calls, tools, consumed)).toEqual([ok]);
    const b = createToolCallAssembler();
    b.push([{ index: 5, id: 'x' }]);
    expect(b.result().ok).toBe(false);
  });
});
