/** `domain/responses-validation.ts` and `domain/responses-object.ts`: the closed field table, the translation to the chat pipeline, the response object. */
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { RESPONSE_FIELDS, inputItemsOf, messagesOf, responsesParam, validateResponsesBody } from '../../domain/responses-validation.js';
import { assistantTurnOf, responseOf } from '../../domain/responses-object.js';
import type { ChatCompletion } from '../../contracts/chat.js';

function refusal(body: Record<string, unknown>): { param: string | null; code: string } {
  try {
    validateResponsesBody({ model: 'm', input: 'x', ...body });
  } catch (err) {
    if (err instanceof InvalidRequestError) return { param: err.param, code: err.code };
    throw err;
  }
  throw new Error(`accepted: ${JSON.stringify(body)}`);
}

describe('validateResponsesBody', () => {
  it('a string input is one user message; defaults as OpenAI (store true, text format)', () => {
    const v = validateResponsesBody({ model: 'm', input: 'Hello' });
    expect(messagesOf(v.input)).toEqual([{ role: 'user', content: 'Hello' }]);
    expect(v).toMatchObject({ store: true, stream: false, instructions: null, previousResponseId: null, subject: null });
    expect(v.params).toEqual({ maxTokens: null, temperature: null, topP: null, seed: null, stop: null });
    expect(v.echo).toMatchObject({ store: true, format: { type: 'text' }, metadata: {}, verbosity: null });
  });

  it('message items keep their roles and part kinds; parts join into one chat message', () => {
    const v = validateResponsesBody({
      model: 'm',
      input: [
        { type: 'message', role: 'developer', content: 'Be brief' },
        { role: 'user', content: [{ type: 'input_text', text: 'a' }, { type: 'input_text', text: 'b' }] },
        { role: 'assistant', content: [{ type: 'output_text', text: 'c', annotations: [] }] },
      ],
      instructions: 'sys', max_output_tokens: 12, temperature: 0.5, top_p: 0.9, user: 'u1', store: false, metadata: { k: 'v' },
    });
    expect(messagesOf(v.input)).toEqual([{ role: 'developer', content: 'Be brief' }, { role: 'user', content: 'ab' }, { role: 'assistant', content: 'c' }]);
    expect(v).toMatchObject({ instructions: 'sys', store: false, subject: 'u1' });
    expect(v.params).toMatchObject({ maxTokens: 12, temperature: 0.5, topP: 0.9 });
    expect(v.echo).toMatchObject({ maxOutputTokens: 12, metadata: { k: 'v' }, user: 'u1', store: false });
    const items = inputItemsOf(v.input, 'resp_abc');
    expect(items.map((i) => i.id)).toEqual(['msg_abc_in0', 'msg_abc_in1', 'msg_abc_in2']);
    expect(items[2]).toMatchObject({ type: 'message', content: [{ type: 'output_text', text: 'c', annotations: [] }] });
    expect(items[1]).toMatchObject({ type: 'message', content: [{ type: 'input_text', text: 'a' }, { type: 'input_text', text: 'b' }] });
  });

  it('text.format json_schema becomes the chat path\'s response_format; json_object too', () => {
    const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] };
    const v = validateResponsesBody({ model: 'm', input: 'x', text: { format: { type: 'json_schema', name: 'n', strict: true, schema } } });
    expect(v.params.extras).toEqual({ response_format: { type: 'json_schema', json_schema: { name: 'n', strict: true, schema } } });
    expect(v.echo.format).toEqual({ type: 'json_schema', name: 'n', strict: true, schema });
    const o = validateResponsesBody({ model: 'm', input: 'x', text: { format: { type: 'json_object' } } });
    expect(o.params.extras).toEqual({ response_format: { type: 'json_object' } });
    const t = validateResponsesBody({ model: 'm', input: 'x', text: { format: { type: 'text' } } });
    expect(t.params.extras).toBeUndefined();
  });

  it('function tools become chat tools (strict by default, as OpenAI); tool_choice and parallel_tool_calls are carried and echoed', () => {
    const parameters = { type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false };
    const v = validateResponsesBody({
      model: 'm', input: 'x', tools: [{ type: 'function', name: 'f', description: 'd', parameters }, { type: 'function', name: 'g', parameters: null, strict: false }],
      tool_choice: { type: 'function', name: 'g' }, parallel_tool_calls: false,
    });
    expect(v.params.extras).toEqual({
      tools: [{ type: 'function', function: { name: 'f', description: 'd', parameters, strict: true } }, { type: 'function', function: { name: 'g', strict: false } }],
      tool_choice: { type: 'function', function: { name: 'g' } },
      parallel_tool_calls: false,
    });
    expect(v.echo).toMatchObject({
      tools: [{ type: 'function', name: 'f', description: 'd', parameters, strict: true }, { type: 'function', name: 'g', description: null, parameters: null, strict: false }],
      toolChoice: { type: 'function', name: 'g' },
      parallelToolCalls: false,
    });
    const auto = validateResponsesBody({ model: 'm', input: 'x', tools: [{ type: 'function', name: 'f' }] });
    expect(auto.echo).toMatchObject({ toolChoice: 'auto', parallelToolCalls: true });
    expect(auto.params.extras).toEqual({ tools: [{ type: 'function', function: { name: 'f', strict: true } }] });
  });

  it('function_call items join the assistant message before them; outputs are tool messages; input_items lists them', () => {
    const v = validateResponsesBody({
      model: 'm',
      input: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: 'Let me look.' },
        { type: 'function_call', id: 'fc_1', call_id: 'c1', name: 'f', arguments: '{"q":"a"}', status: 'completed' },
        { type: 'function_call', call_id: 'c2', name: 'f', arguments: '{"q":"b"}' },
        { type: 'function_call_output', call_id: 'c2', output: 'B' },
        { type: 'function_call_output', call_id: 'c1', output: [{ type: 'input_text', text: 'A' }] },
        { type: 'function_call', call_id: 'c3', name: 'f', arguments: '{}' },
      ],
    });
    const call = (id: string, args: string) => ({ id, type: 'function', function: { name: 'f', arguments: args } });
    expect(messagesOf(v.input)).toEqual([
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [call('c1', '{"q":"a"}'), call('c2', '{"q":"b"}')] },
      { role: 'tool', content: 'B', tool_call_id: 'c2' },
      { role: 'tool', content: 'A', tool_call_id: 'c1' },
      { role: 'assistant', content: '', tool_calls: [call('c3', '{}')] },
    ]);
    const items = inputItemsOf(v.input, 'resp_abc');
    expect(items[2]).toEqual({ id: 'fc_1', type: 'function_call', call_id: 'c1', name: 'f', arguments: '{"q":"a"}', status: 'completed' });
    expect(items[3]?.id).toBe('fc_abc_in3');
    expect(items[5]).toEqual({ id: 'fco_abc_in5', type: 'function_call_output', call_id: 'c1', output: 'A', status: 'completed' });
  });

  it('a chained request may answer a call of the chain (checked by the route against it)', () => {
    const v = validateResponsesBody({ model: 'm', previous_response_id: 'resp_1', input: [{ type: 'function_call_output', call_id: 'call_x', output: '42' }] });
    expect(messagesOf(v.input)).toEqual([{ role: 'tool', content: '42', tool_call_id: 'call_x' }]);
  });

  it('keeps a metadata key named __proto__ as a key', () => {
    const v = validateResponsesBody(JSON.parse('{"model":"m","input":"x","metadata":{"__proto__":"p","a":"b"}}'));
    expect(Object.keys(v.echo.metadata)).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(v.echo.metadata)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(v.echo.metadata))).toEqual(JSON.parse('{"__proto__":"p","a":"b"}'));
  });

  it('accepts the neutral values of refused fields', () => {
    const v = validateResponsesBody({
      model: 'm', input: 'x', tools: [], tool_choice: 'auto', parallel_tool_calls: true, include: [], top_logprobs: 0,
      truncation: 'disabled', background: false, service_tier: 'auto', reasoning: { effort: null }, stream: true, stream_options: { include_obfuscation: false },
    });
    expect(v.stream).toBe(true);
  });

  it.each<[string, Record<string, unknown>, string | null, string]>([
    ['an unknown field', { top_k: 1 }, 'top_k', 'unrecognized_request_argument'],
    ['no input', { input: undefined }, 'input', 'missing_required_parameter'],
    ['an empty input list', { input: [] }, 'input', 'invalid_value'],
    ['an item type', { input: [{ type: 'reasoning', summary: [] }] }, 'input[0].type', 'unsupported_parameter'],
    ['an item role', { input: [{ role: 'tool', content: 'x' }] }, 'input[0].role', 'invalid_value'],
    ['an image part', { input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }, 'input[0].content[0].type', 'unsupported_parameter'],
    ['output_text in a user message', { input: [{ role: 'user', content: [{ type: 'output_text', text: 'x' }] }] }, 'input[0].content[0].type', 'unsupported_parameter'],
    ['an unknown key of an item', { input: [{ role: 'user', content: 'x', name: 'bob' }] }, 'input[0].name', 'unrecognized_request_argument'],
    ['web search', { tools: [{ type: 'web_search_preview' }] }, 'tools[0].type', 'unsupported_tool'],
    ['computer use', { tools: [{ type: 'computer_use_preview' }] }, 'tools[0].type', 'unsupported_tool'],
    ['MCP', { tools: [{ type: 'mcp', server_label: 's' }] }, 'tools[0].type', 'unsupported_tool'],
    ['image generation', { tools: [{ type: 'image_generation' }] }, 'tools[0].type', 'unsupported_tool'],
    ['an unknown tool type', { tools: [{ type: 'teleport' }] }, 'tools[0].type', 'invalid_value'],
    ['a custom tool', { tools: [{ type: 'custom', name: 'f' }] }, 'tools[0].type', 'unsupported_tool'],
    ['tool_choice required without tools', { tool_choice: 'required' }, 'tool_choice', 'invalid_value'],
    ['a bad function name', { tools: [{ type: 'function', name: 'no spaces' }] }, 'tools[0].name', 'invalid_value'],
    ['a function key', { tools: [{ type: 'function', name: 'f', function: {} }] }, 'tools[0].function', 'unrecognized_request_argument'],
    ['a parameters schema of a string', { tools: [{ type: 'function', name: 'f', parameters: { type: 'string' } }] }, 'tools[0].parameters.type', 'invalid_value'],
    ['a function declared twice', { tools: [{ type: 'function', name: 'f' }, { type: 'function', name: 'f' }] }, 'tools[1].name', 'invalid_value'],
    ['a named choice of no tool', { tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'function', name: 'g' } }, 'tool_choice.name', 'invalid_value'],
    ['a built-in tool choice', { tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'file_search' } }, 'tool_choice.type', 'unsupported_parameter'],
    ['parallel_tool_calls as a string', { parallel_tool_calls: 'yes' }, 'parallel_tool_calls', 'invalid_type'],
    ['a call without arguments', { input: [{ type: 'function_call', call_id: 'c1', name: 'f' }] }, 'input[0].arguments', 'invalid_type'],
    ['a call with an unknown key', { input: [{ type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}', namespace: 'n' }] }, 'input[0].namespace', 'unrecognized_request_argument'],
    ['an output of no call', { input: [{ type: 'function_call_output', call_id: 'c9', output: 'x' }] }, 'input[0].call_id', 'invalid_value'],
    ['an output answered twice', { input: [{ type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' }, { type: 'function_call_output', call_id: 'c1', output: 'x' }, { type: 'function_call_output', call_id: 'c1', output: 'y' }] }, 'input[2].call_id', 'invalid_value'],
    ['a call_id used twice', { input: [{ type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' }, { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' }] }, 'input[1].call_id', 'invalid_value'],
    ['an output image', { input: [{ type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' }, { type: 'function_call_output', call_id: 'c1', output: [{ type: 'input_image', image_url: 'x' }] }] }, 'input[1].output[0].type', 'unsupported_parameter'],
    ['max_output_tokens 0', { max_output_tokens: 0 }, 'max_output_tokens', 'invalid_value'],
    ['a temperature of 3', { temperature: 3 }, 'temperature', 'invalid_value'],
    ['store as a string', { store: 'yes' }, 'store', 'invalid_type'],
    ['stream_options without stream', { stream_options: { include_obfuscation: false } }, 'stream_options', 'invalid_value'],
    ['obfuscation', { stream: true, stream_options: { include_obfuscation: true } }, 'stream_options.include_obfuscation', 'unsupported_parameter'],
    ['metadata with a number', { metadata: { a: 1 } }, 'metadata.a', 'invalid_type'],
    ['too much metadata', { metadata: Object.fromEntries(Array.from({ length: 17 }, (_v, i) => [`k${i}`, 'v'])) }, 'metadata', 'invalid_value'],
    ['a text field', { text: { colour: 'red' } }, 'text.colour', 'unrecognized_request_argument'],
    ['a format type', { text: { format: { type: 'yaml' } } }, 'text.format.type', 'invalid_value'],
    ['a json_schema without a schema', { text: { format: { type: 'json_schema', name: 'n' } } }, 'text.format.schema', 'missing_required_parameter'],
    ['a json_schema field', { text: { format: { type: 'json_schema', name: 'n', schema: {}, extra: 1 } } }, 'text.format.extra', 'invalid_value'],
    ['a verbosity value', { text: { verbosity: 'loud' } }, 'text.verbosity', 'invalid_value'],
    ['truncation auto', { truncation: 'auto' }, 'truncation', 'unsupported_parameter'],
    ['conversation', { conversation: 'conv_1' }, 'conversation', 'unsupported_parameter'],
    ['prompt', { prompt: { id: 'pmpt_1' } }, 'prompt', 'unsupported_parameter'],
    ['include', { include: ['message.output_text.logprobs'] }, 'include', 'unsupported_parameter'],
    ['top_logprobs', { top_logprobs: 2 }, 'top_logprobs', 'unsupported_parameter'],
    ['max_tool_calls', { max_tool_calls: 2 }, 'max_tool_calls', 'unsupported_parameter'],
    ['service_tier flex', { service_tier: 'flex' }, 'service_tier', 'unsupported_parameter'],
    ['a previous_response_id of another kind', { previous_response_id: 'req_1' }, 'previous_response_id', 'invalid_value'],
  ])('refuses %s naming it', (_name, body, param, code) => {
    expect(refusal(body)).toEqual({ param, code });
  });

  it('every field of the table is known (none is unrecognized)', () => {
    for (const name of Object.keys(RESPONSE_FIELDS)) {
      let code: string | null = null;
      try {
        validateResponsesBody({ model: 'm', input: 'x', [name]: name === 'model' ? 'm' : name === 'input' ? 'x' : null });
      } catch (err) {
        code = err instanceof InvalidRequestError ? err.code : 'thrown';
      }
      expect(code, name).toBeNull();
    }
  });
});

describe('responsesParam', () => {
  it('renames the chat path\'s fields to the Responses ones', () => {
    expect(responsesParam(new InvalidRequestError('x', 'response_format.json_schema.schema.properties.a.pattern', 'unsupported_parameter')).param).toBe('text.format.schema.properties.a.pattern');
    expect(responsesParam(new InvalidRequestError('x', 'max_tokens', 'invalid_value')).param).toBe('max_output_tokens');
    expect(responsesParam(new InvalidRequestError('x', 'messages', 'context_length_exceeded')).param).toBe('input');
    expect(responsesParam(new InvalidRequestError('x', 'verbosity', 'unsupported_parameter')).param).toBe('text.verbosity');
    expect(responsesParam(new InvalidRequestError('x', 'temperature', 'invalid_value')).param).toBe('temperature');
    expect(responsesParam(new InvalidRequestError('x', 'tools[1].function.parameters.properties.a.pattern', 'unsupported_parameter')).param).toBe('tools[1].parameters.properties.a.pattern');
  });
});

describe('responseOf', () => {
  const completion = (finish: 'stop' | 'length'): ChatCompletion => ({
    id: 'chatcmpl-resp_1', object: 'chat.completion', created: 100, model: 'm2', system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant', content: 'hi', refusal: null }, logprobs: null, finish_reason: finish }],
    usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
  });
  const echo = validateResponsesBody({ model: 'm', input: 'x', previous_response_id: 'resp_0', metadata: { a: 'b' } }).echo;

  it('a finished generation is completed, with the completion\'s usage and the effective model', () => {
    const r = responseOf('resp_1', echo, completion('stop'));
    expect(r).toMatchObject({
      id: 'resp_1', object: 'response', created_at: 100, status: 'completed', model: 'm2', output_text: 'hi', previous_response_id: 'resp_0', metadata: { a: 'b' },
      incomplete_details: null, usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 },
    });
    expect(r.output).toEqual([{ id: 'msg_1', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'hi', annotations: [], logprobs: [] }] }]);
  });

  it('a generation stopped at its token limit is incomplete (max_output_tokens)', () => {
    const r = responseOf('resp_1', echo, completion('length'));
    expect(r).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect(r.output[0]?.status).toBe('incomplete');
  });

  it('tool calls are function_call items after the message (none when there is no text), echoed tools; the turn keeps the calls', () => {
    const tools = validateResponsesBody({ model: 'm', input: 'x', tools: [{ type: 'function', name: 'f' }], tool_choice: 'required' }).echo;
    const calls = (content: string | null): ChatCompletion => ({
      id: 'chatcmpl-resp_1', object: 'chat.completion', created: 100, model: 'm', system_fingerprint: null,
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null, tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'f', arguments: '{}' } }] }, logprobs: null, finish_reason: 'tool_calls' }],
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
    });
    const only = responseOf('resp_1', tools, calls(null));
    expect(only).toMatchObject({ status: 'completed', output_text: '', tool_choice: 'required', parallel_tool_calls: true, tools: [{ type: 'function', name: 'f', strict: true }] });
    expect(only.output).toEqual([{ id: 'fc_1_0', type: 'function_call', call_id: 'call_a', name: 'f', arguments: '{}', status: 'completed' }]);
    expect(assistantTurnOf(only)).toEqual({ role: 'assistant', content: '', tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'f', arguments: '{}' } }] });
    const both = responseOf('resp_1', tools, calls('sure'));
    expect(both.output.map((i) => i.type)).toEqual(['message', 'function_call']);
    expect(assistantTurnOf(responseOf('resp_1', echo, completion('stop')))).toEqual({ role: 'assistant', content: 'hi' });
    expect(responseOf('resp_1', echo, completion('stop'))).toMatchObject({ tools: [], tool_choice: 'none', parallel_tool_calls: false });
  });
});
