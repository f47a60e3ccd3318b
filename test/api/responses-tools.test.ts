/**
 * Function tools on `/v1/responses` with the official `openai` client on the real stack: the
 * llama.cpp demo model (random weights: calls are checked by shape and schema validity, never by
 * text) and an OpenAI-compatible upstream (the fake). A named function or `required` gives
 * `function_call` items whose arguments validate against the schema (ajv); a call round-trips
 * (function_call → function_call_output → the next turn, chained with `previous_response_id` or
 * carried in the input); an upstream receives the chat tools and its calls come back as items;
 * streamed calls arrive as Responses events the SDK assembles; usage equals the ledger row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import type { FunctionTool, Response, ResponseFunctionToolCall } from 'openai/resources/responses/responses';
import { Ajv } from 'ajv';
import { startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { toolCallId } from '../../domain/tools.js';
import { addToolTestModels, lookupSchema, schemaOf, weatherSchema } from '../support/tool-schemas.js';

let stack: TestStack;
let upstream: FakeUpstream;
let key: string;
let client: OpenAI;

const tools: FunctionTool[] = [
  { type: 'function', name: 'get_weather', description: 'Current weather of a city', parameters: weatherSchema, strict: true },
  { type: 'function', name: 'lookup', description: 'Search the notes', parameters: lookupSchema, strict: false },
];
const ajv = new Ajv({ strict: false });

beforeAll(async () => {
  upstream = await startFakeUpstream();
  stack = await startTestStack();
  await addToolTestModels(stack, upstream.url);
  ({ key } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

async function post(body: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}/v1/responses`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const usageRows = (id: string) => stack.db.selectFrom('usage').select(['step', 'input_tokens', 'output_tokens', 'billable']).where('request_id', '=', id).execute();

/**
 * The function_call items of a response, each checked: Sluice's call ID of this request (`requestId`:
 * the request the calls were generated for; a sync response's own ID, a batch line's request ID),
 * arguments valid against the function's schema.
 */
function checkedCalls(response: Response, requestId: string = response.id): ResponseFunctionToolCall[] {
  expect(response.status).toBe('completed');
  const calls = response.output.filter((i): i is ResponseFunctionToolCall => i.type === 'function_call');
  expect(calls.length).toBeGreaterThan(0);
  calls.forEach((call, i) => {
    expect(call).toMatchObject({ id: `fc_${response.id.replace(/^resp_/, '')}_${i}`, status: 'completed' });
    expect(call.call_id).toBe(toolCallId(requestId, i));
    const validate = ajv.compile(schemaOf[call.name] ?? {});
    expect(validate(JSON.parse(call.arguments)), `${call.name}: ${JSON.stringify(validate.errors)}`).toBe(true);
  });
  return calls;
}

describe('llama.cpp', () => {
  it('a named function: a function_call of it, arguments valid against its schema; echoed tools; billed once (usage = the ledger row)', async () => {
    const response = await client.responses.create({
      model: 'local', input: 'What is the weather in Oslo?', tools, tool_choice: { type: 'function', name: 'get_weather' }, max_output_tokens: 96, temperature: 1,
    });
    const calls = checkedCalls(response);
    expect(calls.map((c) => c.name)).toEqual(['get_weather']);
    expect(response.output_text).toBe('');
    expect(response.tool_choice).toEqual({ type: 'function', name: 'get_weather' });
    expect(response.tools).toEqual([
      { type: 'function', name: 'get_weather', description: 'Current weather of a city', parameters: weatherSchema, strict: true },
      { type: 'function', name: 'lookup', description: 'Search the notes', parameters: lookupSchema, strict: false },
    ]);
    expect(response.parallel_tool_calls).toBe(true);
    const rows = await usageRows(response.id);
    expect(rows).toEqual([{ step: 'infer', input_tokens: response.usage?.input_tokens, output_tokens: response.usage?.output_tokens, billable: true }]);
  });

  it('tool_choice "required": one call to one of the tools, valid, whatever the temperature', async () => {
    for (const temperature of [0, 1]) {
      const calls = checkedCalls(await client.responses.create({ model: 'local', input: 'Weather or notes?', tools, tool_choice: 'required', max_output_tokens: 96, temperature }));
      expect(calls).toHaveLength(1);
      expect(['get_weather', 'lookup']).toContain(calls[0]?.name);
    }
  });

  it('round trip: the call, then its output chained with previous_response_id, then the next turn; and the same carried in the input', async () => {
    const first = await client.responses.create({ model: 'local', input: 'Weather in Oslo?', tools, tool_choice: 'required', max_output_tokens: 96, temperature: 1 });
    const [call] = checkedCalls(first);
    if (call === undefined) throw new Error('no call');
    const second = await client.responses.create({
      model: 'local', previous_response_id: first.id, tools, tool_choice: 'none', max_output_tokens: 8,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '12 degrees' }],
    });
    expect(['completed', 'incomplete']).toContain(second.status);
    expect(second.output.map((i) => i.type)).toEqual(['message']);
    // The chain's turns reached the model: the prompt holds the first turn, its call and the output.
    expect(second.usage!.input_tokens).toBeGreaterThan(first.usage!.input_tokens);
    const items = await client.responses.inputItems.list(second.id, { order: 'asc' });
    expect(items.data).toEqual([{ id: expect.stringMatching(/^fco_/), type: 'function_call_output', call_id: call.call_id, output: '12 degrees', status: 'completed' }]);
    // The stored conversation the chain continues: the call on the assistant turn, the output as a tool message.
    const stored = await stack.db.selectFrom('responses').select('conversation').where('id', '=', second.id).executeTakeFirstOrThrow();
    expect((stored.conversation as unknown[]).slice(1, 3)).toEqual([
      { role: 'assistant', content: '', tool_calls: [{ id: call.call_id, type: 'function', function: { name: call.name, arguments: call.arguments } }] },
      { role: 'tool', content: '12 degrees', tool_call_id: call.call_id },
    ]);
    // Unchained: the client carries the call item (as it got it) and its output.
    const carried = await client.responses.create({
      model: 'local', tools, max_output_tokens: 8, tool_choice: 'none', store: false,
      input: [{ role: 'user', content: 'Weather in Oslo?' }, call, { type: 'function_call_output', call_id: call.call_id, output: '12 degrees' }],
    });
    expect(carried.output.map((i) => i.type)).toEqual(['message']);
    // An output for a call that the chain never made is refused, naming it.
    const orphan = await post({ model: 'local', previous_response_id: first.id, tools, input: [{ type: 'function_call_output', call_id: 'call_nope', output: 'x' }] });
    expect(orphan.status).toBe(400);
    expect(orphan.body.error).toMatchObject({ type: 'invalid_request_error', param: 'input[0].call_id', code: 'invalid_value' });
  });

  it('streamed: output_item.added, function_call_arguments.delta/.done, output_item.done; the SDK assembles the call', async () => {
    const stream = client.responses.stream({ model: 'local', input: 'Weather in Oslo?', tools, tool_choice: 'required', max_output_tokens: 96, temperature: 1 });
    const events: Array<{ type: string; [k: string]: unknown }> = [];
    stream.on('event', (e) => events.push(e as unknown as { type: string }));
    const final = await stream.finalResponse();
    const [call] = checkedCalls(final);
    const types = events.map((e) => e.type);
    expect(types).toEqual([
      'response.created', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.delta',
      'response.function_call_arguments.done', 'response.output_item.done', 'response.completed',
    ]);
    expect(events[2]).toMatchObject({ output_index: 0, item: { type: 'function_call', id: call?.id, call_id: call?.call_id, name: call?.name, arguments: '', status: 'in_progress' } });
    expect(events[4]).toMatchObject({ item_id: call?.id, output_index: 0, name: call?.name, arguments: call?.arguments });
    const fields = (c: ResponseFunctionToolCall | undefined) => ({ id: c?.id, type: c?.type, call_id: c?.call_id, name: c?.name, arguments: c?.arguments, status: c?.status });
    expect(events[5]).toMatchObject({ output_index: 0, item: fields(call) });
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_e, i) => i));
    // What the SDK assembled from the deltas is the stored response (the SDK adds `parsed_arguments` for strict tools).
    const stored = await client.responses.retrieve(final.id);
    expect(stored.output).toEqual([fields(call)]);
    expect(stored.usage).toEqual(final.usage);
  });

  it('batch lines with function tools: each output line a response whose function_call validates, billed as batch usage; a line with a built-in tool fails the batch\'s validation, nothing run', async () => {
    const t = await stack.createTenantKey();
    const c = new OpenAI({ apiKey: t.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const body = (input: string, toolChoice: unknown, lineTools: unknown = tools) => ({ model: 'local', input, tools: lineTools, tool_choice: toolChoice, max_output_tokens: 96, temperature: 0 });
    const line = (customId: string, b: Record<string, unknown>) => JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/responses', body: b });
    const finished = async (b: OpenAI.Batches.Batch) => {
      const deadline = Date.now() + 120_000;
      while (!['completed', 'failed', 'cancelled', 'expired'].includes(b.status) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 150));
        b = await c.batches.retrieve(b.id);
      }
      return b;
    };
    // A line with a built-in tool fails the batch's validation, naming the line and the field: nothing runs.
    const badFile = await c.files.create({ file: await toFile(Buffer.from(line('bad', body('x', 'auto', [{ type: 'web_search' }])) + '\n'), 'bad.jsonl'), purpose: 'batch' });
    const refused = await finished(await c.batches.create({ input_file_id: badFile.id, endpoint: '/v1/responses', completion_window: '24h' }));
    expect(refused.status).toBe('failed');
    expect(JSON.stringify(refused.errors)).toMatch(/tools\[0\]\.type/);
    expect(await stack.db.selectFrom('usage').select('request_id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);

    const text = [line('named', body('Weather in Oslo?', { type: 'function', name: 'get_weather' })), line('required', body('Weather or notes?', 'required'))].join('\n') + '\n';
    const file = await c.files.create({ file: await toFile(Buffer.from(text), 'tools.jsonl'), purpose: 'batch' });
    const done = await finished(await c.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' }));
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const out = (await (await c.files.content(done.output_file_id ?? '')).text()).split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number; request_id: string; body: Response } });
    expect(out.map((o) => o.custom_id).sort()).toEqual(['named', 'required']);
    for (const o of out) {
      expect(o.response.status_code, o.custom_id).toBe(200);
      const calls = checkedCalls(o.response.body, o.response.request_id);
      expect(calls).toHaveLength(1);
      if (o.custom_id === 'named') expect(calls[0]?.name).toBe('get_weather');
      const rows = await stack.db.selectFrom('usage').select(['kind', 'input_tokens', 'output_tokens']).where('request_id', '=', o.response.request_id).execute();
      expect(rows).toEqual([{ kind: 'batch', input_tokens: o.response.body.usage?.input_tokens, output_tokens: o.response.body.usage?.output_tokens }]);
    }
  });

  it('refuses what the grammar cannot force, built-in tools and custom tools, naming the Responses path', async () => {
    const pattern = [{ type: 'function', name: 'code', parameters: { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}$' } } } }];
    const r = await post({ model: 'local', input: 'x', tools: pattern, tool_choice: 'required' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param: 'tools[0].parameters.properties.code.pattern', code: 'unsupported_parameter' });
    const builtIn = await post({ model: 'local', input: 'x', tools: [{ type: 'web_search' }] });
    expect(builtIn.status).toBe(400);
    expect(builtIn.body.error).toMatchObject({ param: 'tools[0].type', code: 'unsupported_tool' });
    expect(builtIn.body.error.message).toContain('web_search');
    const custom = await post({ model: 'local', input: 'x', tools: [{ type: 'custom', name: 'c' }] });
    expect(custom.body.error).toMatchObject({ param: 'tools[0].type', code: 'unsupported_tool' });
  });
});

describe('openai-compatible', () => {
  const upstreamCalls = [
    { id: 'call_up_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"celsius"}' } },
    { id: 'call_up_2', type: 'function', function: { name: 'lookup', arguments: '{"query":"oslo","exact":false}' } },
  ];
  const chatTools = tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters, strict: t.strict } }));

  it('the upstream receives chat tools, tool_choice and parallel_tool_calls; its calls come back as function_call items, and their outputs go back as tool messages', async () => {
    upstream.setBehaviour({ kind: 'succeed', toolCalls: upstreamCalls });
    const first = await client.responses.create({
      model: 'remote', input: 'Weather in Oslo?', instructions: 'Be brief', tools, tool_choice: { type: 'function', name: 'lookup' }, parallel_tool_calls: false, max_output_tokens: 16,
    });
    const sent = upstream.requests.at(-1)?.body as Record<string, unknown>;
    expect(sent.tools).toEqual(chatTools);
    expect(sent.tool_choice).toEqual({ type: 'function', function: { name: 'lookup' } });
    expect(sent.parallel_tool_calls).toBe(false);
    expect(first.output).toEqual([
      { id: `fc_${first.id.replace(/^resp_/, '')}_0`, type: 'function_call', call_id: 'call_up_1', name: 'get_weather', arguments: '{"city":"Oslo","unit":"celsius"}', status: 'completed' },
      { id: `fc_${first.id.replace(/^resp_/, '')}_1`, type: 'function_call', call_id: 'call_up_2', name: 'lookup', arguments: '{"query":"oslo","exact":false}', status: 'completed' },
    ]);
    expect(first.parallel_tool_calls).toBe(false);

    upstream.setBehaviour({ kind: 'succeed' });
    const second = await client.responses.create({
      model: 'remote', previous_response_id: first.id, tools, max_output_tokens: 16,
      input: [{ type: 'function_call_output', call_id: 'call_up_2', output: 'nothing' }, { type: 'function_call_output', call_id: 'call_up_1', output: '12 degrees' }],
    });
    expect(second.output.map((i) => i.type)).toEqual(['message']);
    // `instructions` are not carried to a response chained after them (as OpenAI).
    expect((upstream.requests.at(-1)?.body as Record<string, unknown>).messages).toEqual([
      { role: 'user', content: 'Weather in Oslo?' },
      { role: 'assistant', content: null, tool_calls: upstreamCalls },
      { role: 'tool', tool_call_id: 'call_up_2', content: 'nothing' },
      { role: 'tool', tool_call_id: 'call_up_1', content: '12 degrees' },
    ]);
    const [row] = await usageRows(second.id);
    expect(row).toMatchObject({ input_tokens: second.usage?.input_tokens, output_tokens: second.usage?.output_tokens, billable: true });
  });

  it('streamed: the upstream\'s calls arrive as function_call events after the text, and the SDK assembles them', async () => {
    upstream.setBehaviour({ kind: 'succeed', toolCalls: upstreamCalls });
    const stream = client.responses.stream({ model: 'remote', input: 'Weather in Oslo?', tools, max_output_tokens: 16 });
    const done: string[] = [];
    stream.on('response.function_call_arguments.done', (e) => done.push(`${e.output_index}:${e.arguments}`));
    const final = await stream.finalResponse();
    const calls = final.output.filter((i) => i.type === 'function_call');
    expect(calls.map((c) => ({ call_id: c.call_id, name: c.name, arguments: c.arguments }))).toEqual(upstreamCalls.map((c) => ({ call_id: c.id, name: c.function.name, arguments: c.function.arguments })));
    const offset = final.output.length - calls.length;
    expect(done).toEqual(upstreamCalls.map((c, i) => `${offset + i}:${c.function.arguments}`));
    upstream.setBehaviour({ kind: 'succeed' });
  });
});
