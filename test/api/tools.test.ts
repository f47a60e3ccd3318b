/**
 * Tools on the real stack: the llama.cpp demo model (random weights: calls are checked by shape,
 * schema validity and determinism, never by text) and an OpenAI-compatible upstream (the fake).
 * `required` and a named function force a call whose arguments parse and validate against the
 * function's schema (ajv); a call round-trips (assistant tool_calls → tool message → next turn,
 * each request billed once); `none` answers text; streamed calls reach the official SDK as deltas
 * that `finalChatCompletion()` reassembles; an upstream gets the fields unchanged and its calls come
 * back; malformed upstream calls fail the attempt cleanly; batch lines take the same fields.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionTool } from 'openai/resources/chat/completions';
import { Ajv } from 'ajv';
import { settled, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { toolCallId } from '../../domain/tools.js';
import { addToolTestModels, lookupSchema, schemaOf, weatherSchema } from '../support/tool-schemas.js';
import { CALLS_GGUF, callPrefixToken } from '../support/calls-gguf.js';
import { readEvents } from '../support/sse.js';

let stack: TestStack;
let upstream: FakeUpstream;
let key: string;
let client: OpenAI;

const tools: ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Current weather of a city', parameters: weatherSchema, strict: true } },
  { type: 'function', function: { name: 'lookup', description: 'Search the notes', parameters: lookupSchema } },
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

const ask = (body: Partial<ChatCompletionCreateParamsNonStreaming>) => client.chat.completions.create({
  model: 'local', messages: [{ role: 'user', content: 'What is the weather in Oslo?' }], max_tokens: 96, temperature: 1, seed: 1, tools, ...body,
});

async function post(body: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const usageRows = (completionId: string) => stack.db.selectFrom('usage').selectAll().where('request_id', '=', completionId.replace('chatcmpl-', '')).execute();

/** The calls of a completion, each checked: a Sluice ID of this request, arguments that parse and validate. */
function checkedCalls(completion: OpenAI.Chat.Completions.ChatCompletion) {
  const choice = completion.choices[0];
  expect(choice?.finish_reason).toBe('tool_calls');
  expect(choice?.message.content).toBeNull();
  const calls = choice?.message.tool_calls ?? [];
  expect(calls.length).toBeGreaterThan(0);
  return calls.map((call, i) => {
    if (call.type !== 'function') throw new Error(`unexpected call type ${call.type}`);
    expect(call.id).toBe(toolCallId(completion.id.replace('chatcmpl-', ''), i));
    const args: unknown = JSON.parse(call.function.arguments);
    const validate = ajv.compile(schemaOf[call.function.name] ?? {});
    expect(validate(args), `${call.function.name}: ${JSON.stringify(validate.errors)}`).toBe(true);
    return { id: call.id, name: call.function.name, args };
  });
}

describe('llama.cpp', () => {
  it('tool_choice "required": one call to one of the tools, arguments valid against its schema, whatever the seed', async () => {
    for (const seed of [1, 2, 3]) {
      const calls = checkedCalls(await ask({ tool_choice: 'required', seed }));
      expect(calls).toHaveLength(1);
      expect(['get_weather', 'lookup']).toContain(calls[0]?.name);
    }
  });

  it('a named function: a call of that function, arguments valid; the same seed gives the same call', async () => {
    const named = { type: 'function' as const, function: { name: 'lookup' } };
    const first = checkedCalls(await ask({ tool_choice: named, seed: 4, temperature: 0.8 }));
    expect(first.map((c) => c.name)).toEqual(['lookup']);
    const again = checkedCalls(await ask({ tool_choice: named, seed: 4, temperature: 0.8 }));
    expect(again.map((c) => c.args)).toEqual(first.map((c) => c.args));
  });

  it('the tool definitions are prompt tokens: billed with the request', async () => {
    const withTools = await ask({ tool_choice: 'none', max_tokens: 4 });
    const without = await client.chat.completions.create({ model: 'local', messages: [{ role: 'user', content: 'What is the weather in Oslo?' }], max_tokens: 4, temperature: 1, seed: 1 });
    expect(withTools.usage!.prompt_tokens).toBeGreaterThan(without.usage!.prompt_tokens);
    // A longer description alone makes a longer prompt: the definitions are rendered and counted.
    const longer = tools.map((t) => (t.type === 'function' ? { ...t, function: { ...t.function, description: `${t.function.description ?? ''} (in the city the user names)` } } : t));
    const withLonger = await ask({ tool_choice: 'none', max_tokens: 4, tools: longer });
    expect(withLonger.usage!.prompt_tokens).toBeGreaterThan(withTools.usage!.prompt_tokens);
    await settled(stack, withTools);
    const [row] = await usageRows(withTools.id);
    expect(row?.input_tokens).toBe(withTools.usage!.prompt_tokens);
  });

  it('tool_choice "none": text, no calls', async () => {
    const completion = await ask({ tool_choice: 'none', max_tokens: 8 });
    const choice = completion.choices[0];
    expect(choice?.message.tool_calls).toBeUndefined();
    expect(typeof choice?.message.content).toBe('string');
    expect(['stop', 'length']).toContain(choice?.finish_reason);
  });

  it('parallel_tool_calls: false gives at most one call', async () => {
    const calls = checkedCalls(await ask({ tool_choice: 'required', parallel_tool_calls: false, seed: 5 }));
    expect(calls).toHaveLength(1);
  });

  it('round trip: the assistant\'s tool_calls, then a tool message, then the next turn; each request billed once', async () => {
    const first = await ask({ tool_choice: { type: 'function', function: { name: 'get_weather' } }, seed: 6 });
    const [call] = checkedCalls(first);
    const message = first.choices[0]!.message;
    const next = await ask({
      tool_choice: 'auto', max_tokens: 8,
      messages: [
        { role: 'user', content: 'What is the weather in Oslo?' },
        { role: 'assistant', content: message.content, tool_calls: message.tool_calls! },
        { role: 'tool', tool_call_id: call!.id, content: JSON.stringify({ temperature: 12, unit: 'celsius' }) },
      ],
    });
    expect(next.choices).toHaveLength(1);
    expect(next.usage!.prompt_tokens).toBeGreaterThan(first.usage!.prompt_tokens);
    for (const c of [first, next]) {
      await settled(stack, c);
      const rows = await usageRows(c.id);
      expect(rows.filter((r) => r.billable).map((r) => [r.step, r.input_tokens, r.output_tokens])).toEqual([['infer', c.usage!.prompt_tokens, c.usage!.completion_tokens]]);
    }
  });

  it('a tool message must answer an earlier call; parameters the grammar cannot force are a 400 naming the keyword', async () => {
    const orphan = await post({ model: 'local', tools, messages: [{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'call_nope', content: 'r' }] });
    expect(orphan.status).toBe(400);
    expect(orphan.body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages[1].tool_call_id' });
    const pattern = [{ type: 'function', function: { name: 'code', parameters: { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}$' } } } } }];
    const r = await post({ model: 'local', tools: pattern, tool_choice: 'required', messages: [{ role: 'user', content: 'x' }] });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param: 'tools[0].function.parameters.properties.code.pattern', code: 'unsupported_parameter' });
  });

  it('streamed: tool-call deltas in OpenAI\'s chunk format, reassembled by the SDK\'s finalChatCompletion()', async () => {
    const stream = client.chat.completions.stream({
      model: 'local', messages: [{ role: 'user', content: 'Weather in Oslo?' }], max_tokens: 96, temperature: 1, seed: 7, tools, tool_choice: 'required', stream: true,
    });
    const deltas: unknown[] = [];
    stream.on('chunk', (chunk) => {
      const calls = chunk.choices[0]?.delta.tool_calls;
      if (calls) deltas.push(...calls);
    });
    const final = await stream.finalChatCompletion();
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas[0]).toMatchObject({ index: 0, type: 'function' });
    const choice = final.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    const call = choice?.message.tool_calls?.[0];
    if (call?.type !== 'function') throw new Error('expected a function call');
    expect(call.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(ajv.validate(schemaOf[call.function.name] ?? {}, JSON.parse(call.function.arguments))).toBe(true);
  });
});

describe('llama.cpp, tool_choice auto', () => {
  // The demo model with the call prefix as one token, favoured: calls start part way through the text.
  const favoured = async () => ({ [String(await callPrefixToken(join(inject('sharedDataDir'), 'models', CALLS_GGUF)))]: 4 });
  const body = async (seed: number) => ({
    model: 'local-calls', messages: [{ role: 'user' as const, content: 'What is the weather in Oslo?' }], max_tokens: 96, temperature: 1, seed, tools, logit_bias: await favoured(),
  });
  const noStore = { headers: { 'Cache-Control': 'no-store' } };

  it('a call that starts part way: the text before it is the content, the call is valid; streamed, the text comes in chunks as generated and the SDK reassembles the same answer', async () => {
    const answers = [];
    for (let seed = 1; seed <= 4; seed++) answers.push({ seed, completion: await client.chat.completions.create(await body(seed), noStore) });
    for (const { completion } of answers) {
      const choice = completion.choices[0];
      expect(choice?.message.content ?? '').not.toContain('||call:');
      if (choice?.finish_reason !== 'tool_calls') continue;
      const call = choice.message.tool_calls?.[0];
      expect(choice.message.tool_calls).toHaveLength(1);
      if (call?.type !== 'function') throw new Error('expected a function call');
      expect(call.id).toBe(toolCallId(completion.id.replace('chatcmpl-', ''), 0));
      expect(ajv.validate(schemaOf[call.function.name] ?? false, JSON.parse(call.function.arguments))).toBe(true);
    }
    // Several seeds, so no one seed is relied on: at least one answer has text and then a call.
    const mixed = answers.find(({ completion }) => completion.choices[0]?.finish_reason === 'tool_calls' && (completion.choices[0]?.message.content ?? '') !== '');
    if (mixed === undefined) throw new Error('no answer had text before its call');
    const sync = mixed.completion.choices[0];

    // The same request streamed (same seed: the same answer), read by the SDK.
    const stream = client.chat.completions.stream({ ...(await body(mixed.seed)), stream: true }, noStore);
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]?.message.content).toBe(sync?.message.content);
    const fn = (c: { type: string; function?: { name: string; arguments: string } }) => ({ name: c.function?.name, arguments: c.function?.arguments });
    expect(final.choices[0]?.message.tool_calls?.map(fn)).toEqual(sync?.message.tool_calls?.map(fn));
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');

    // And raw: the text arrives in the channel's chunks (event IDs of chunk rows), none of it in
    // the end's remainder (`<id>-c`, what a backend that held the text back sends); then the call.
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify({ ...(await body(mixed.seed)), stream: true }),
    });
    const events = (await readEvents(res)).filter((e) => e.data !== '[DONE]').map((e) => ({ id: e.id, chunk: JSON.parse(e.data) }));
    const text = events.filter((e) => typeof e.chunk.choices?.[0]?.delta?.content === 'string' && e.chunk.choices[0].delta.content !== '');
    expect(text.length).toBeGreaterThan(0);
    expect(text.every((e) => /^\d+$/.test(e.id ?? '') && e.id !== '0')).toBe(true);
    expect(text.map((e) => e.chunk.choices[0].delta.content).join('')).toBe(sync?.message.content);
    const callAt = events.findIndex((e) => e.chunk.choices?.[0]?.delta?.tool_calls !== undefined);
    expect(callAt).toBeGreaterThan(events.indexOf(text.at(-1) as (typeof events)[number]));
  });
});

describe('openai-compatible', () => {
  const upstreamCalls = [
    { id: 'call_up_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"celsius"}' } },
    { id: 'call_up_2', type: 'function', function: { name: 'lookup', arguments: '{"query":"oslo","exact":false}' } },
  ];
  const history = [
    { role: 'user' as const, content: 'What is the weather in Oslo?' },
    { role: 'assistant' as const, content: null, tool_calls: [{ id: 'call_a', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"celsius"}' } }] },
    { role: 'tool' as const, tool_call_id: 'call_a', content: '12 degrees' },
  ];

  it('tools, tool_choice, parallel_tool_calls and tool messages reach the upstream unchanged; its calls and finish_reason come back', async () => {
    upstream.setBehaviour({ kind: 'succeed', toolCalls: upstreamCalls });
    const callsBefore = upstream.calls;
    const completion = await client.chat.completions.create({
      model: 'remote', messages: history, tools, tool_choice: { type: 'function', function: { name: 'lookup' } }, parallel_tool_calls: false, max_tokens: 16,
    });
    expect(upstream.calls).toBe(callsBefore + 1);
    const sent = upstream.requests.at(-1)?.body as Record<string, unknown>;
    expect(sent.tools).toEqual(tools);
    expect(sent.tool_choice).toEqual({ type: 'function', function: { name: 'lookup' } });
    expect(sent.parallel_tool_calls).toBe(false);
    expect(sent.messages).toEqual(history);
    expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
    expect(completion.choices[0]?.message.content).toBeNull();
    expect(completion.choices[0]?.message.tool_calls).toEqual(upstreamCalls);
  });

  it('streamed: the upstream\'s tool-call deltas are assembled and reach the SDK, which reassembles them', async () => {
    upstream.setBehaviour({ kind: 'succeed', toolCalls: upstreamCalls });
    const stream = client.chat.completions.stream({ model: 'remote', messages: history, tools, max_tokens: 16, stream: true });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');
    // The SDK adds `parsed_arguments` for strict tools; the calls are the upstream's.
    expect(final.choices[0]?.message.tool_calls?.map((c) => (c.type === 'function' ? { id: c.id, type: c.type, function: { name: c.function.name, arguments: c.function.arguments } } : c))).toEqual(upstreamCalls);
  });

  it('malformed tool_calls from the upstream fail the attempts cleanly: an error, nothing billed', async () => {
    const requestsBefore = await stack.db.selectFrom('requests').select('id').execute();
    for (const bad of [
      [{ id: 'call_x', type: 'function', function: { name: 'not_a_tool', arguments: '{}' } }],
      [{ id: 'call_x', type: 'function', function: { name: 'lookup', arguments: { query: 'x' } } }],
      'call everything',
    ]) {
      upstream.setBehaviour({ kind: 'succeed', toolCalls: bad });
      const callsBefore = upstream.calls;
      const r = await post({ model: 'remote', messages: [{ role: 'user', content: 'hi' }], tools, max_tokens: 8 });
      expect(r.status, JSON.stringify(bad)).toBeGreaterThanOrEqual(500);
      expect(r.body.error.type).toBe('service_unavailable');
      // A message for the client: nothing the upstream sent is echoed.
      expect(r.body.error.message).not.toMatch(/not_a_tool|call everything|query/);
      expect(upstream.calls).toBeGreaterThan(callsBefore); // it was called, and its answer refused
    }
    const added = (await stack.db.selectFrom('requests').select('id').execute()).filter((r) => !requestsBefore.some((b) => b.id === r.id)).map((r) => r.id);
    expect(added).toHaveLength(3);
    const billed = await stack.db.selectFrom('usage').select('request_id').where('request_id', 'in', added).where('billable', '=', true).execute();
    expect(billed).toEqual([]);
    upstream.setBehaviour({ kind: 'succeed' });
  });
});

describe('batch lines', () => {
  it('a /v1/chat/completions line with tools runs as a request does', async () => {
    upstream.setBehaviour({ kind: 'succeed', toolCalls: [{ id: 'call_b', type: 'function', function: { name: 'lookup', arguments: '{"query":"b","exact":true}' } }] });
    const line = (id: string, body: Record<string, unknown>) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body });
    const messages = [{ role: 'user', content: 'Weather in Oslo?' }];
    const file = await client.files.create({
      file: await toFile(Buffer.from([
        line('forced', { model: 'local', messages, tools, tool_choice: 'required', max_tokens: 96, temperature: 1, seed: 9 }),
        line('upstream', { model: 'remote', messages, tools, tool_choice: 'auto', max_tokens: 8 }),
      ].join('\n') + '\n'), 'in.jsonl'),
      purpose: 'batch',
    });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 120_000;
    let batch = created;
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(batch.status)) {
      if (Date.now() > deadline) throw new Error(`batch ${batch.id} timed out: ${batch.status}`);
      await new Promise((r) => setTimeout(r, 200));
      batch = await client.batches.retrieve(created.id);
    }
    expect(batch.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const out = (await (await client.files.content(batch.output_file_id as string)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const forced = out.find((l) => l.custom_id === 'forced').response.body;
    checkedCalls(forced);
    const relayed = out.find((l) => l.custom_id === 'upstream').response.body;
    expect(relayed.choices[0].message.tool_calls).toEqual([{ id: 'call_b', type: 'function', function: { name: 'lookup', arguments: '{"query":"b","exact":true}' } }]);
    expect((upstream.requests.at(-1)?.body as Record<string, unknown>).tools).toEqual(tools);
    upstream.setBehaviour({ kind: 'succeed' });
  });
});
