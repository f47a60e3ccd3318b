/**
 * Every chat completions field honoured or refused, per backend, on the real stack: the llama.cpp
 * demo model and an OpenAI-compatible upstream (the fake). A refused field is a 400 naming it
 * before any workflow exists; a field passed to the upstream arrives unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { Ajv } from 'ajv';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { CHAT_FIELDS, type ChatFieldName } from '../../domain/chat-fields.js';
import { REQUESTED } from '../support/chat-field-samples.js';

let stack: TestStack;
let upstream: FakeUpstream;
let key: string;
let tenantId: string;
let client: OpenAI;

const upstreamDeployment = (id: string, url: string, priority = 0) => ({
  id, provider: 'openai-compatible', pool: 'local', base_url: url, upstream_model: 'gpt-fake', priority,
});
const localDeployment = (id: string, priority: number) => ({ id, provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf', priority });

beforeAll(async () => {
  upstream = await startFakeUpstream();
  stack = await startTestStack();
  await addModel(stack, { id: 'remote', context_length: 1024, max_output_tokens: 64, deployments: [upstreamDeployment('remote-up', upstream.url)] });
  await addModel(stack, { id: 'mixed', context_length: 1024, max_output_tokens: 64, deployments: [upstreamDeployment('mixed-up', upstream.url), localDeployment('mixed-local', 1)] });
  ({ key, tenantId } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

async function post(body: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const requestsOfTenant = async () => (await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenantId).execute()).length;

const base = (model: string) => ({ model, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 4, temperature: 0 });
const fields = Object.entries(CHAT_FIELDS) as [ChatFieldName, (typeof CHAT_FIELDS)[ChatFieldName]][];

describe('fields refused per backend', () => {
  for (const backend of ['llama-cpp', 'openai-compatible'] as const) {
    const model = backend === 'llama-cpp' ? 'sluice-tiny' : 'remote';
    const refused = fields.filter(([, f]) => f[backend] === 'refused').map(([name]) => name);
    it(`${backend}: each refused field is a 400 naming it, and starts nothing`, async () => {
      const before = await requestsOfTenant();
      const callsBefore = upstream.calls;
      for (const name of refused) {
        const r = await post({ ...base(model), [name]: REQUESTED[name] });
        expect(r.status, name).toBe(400);
        expect(r.body.error, name).toMatchObject({ type: 'invalid_request_error', param: name, code: 'unsupported_parameter' });
      }
      expect(await requestsOfTenant()).toBe(before);
      expect(upstream.calls).toBe(callsBefore);
    });
  }

  it('an unknown field is a 400 unrecognized_request_argument naming it', async () => {
    const r = await post({ ...base('sluice-tiny'), top_k: 40 });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param: 'top_k', code: 'unrecognized_request_argument' });
  });

  it('a model whose fallback chain includes a backend that refuses a field refuses it, whichever deployment would serve', async () => {
    const callsBefore = upstream.calls;
    const r = await post({ ...base('mixed'), reasoning_effort: 'low' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param: 'reasoning_effort', code: 'unsupported_parameter' });
    expect(upstream.calls).toBe(callsBefore);
  });
});

describe('fields honoured', () => {
  it('openai-compatible: upstream-only fields reach the upstream unchanged', async () => {
    const callsBefore = upstream.calls;
    const completion = await client.chat.completions.create({
      ...base('remote'), messages: [{ role: 'user', content: 'hello there' }],
      reasoning_effort: 'low', verbosity: 'high', prompt_cache_key: 'tenant-cache-1', seed: 11, stop: ['END'],
    });
    expect(completion.choices).toHaveLength(1);
    expect(upstream.calls).toBe(callsBefore + 1);
    const sent = upstream.requests.at(-1)?.body as Record<string, unknown>;
    expect(sent).toMatchObject({ model: 'gpt-fake', reasoning_effort: 'low', verbosity: 'high', prompt_cache_key: 'tenant-cache-1', seed: 11, stop: ['END'], max_tokens: 4 });
  });

  it('llama-cpp: neutral values of refused fields are accepted and answered', async () => {
    const completion = await client.chat.completions.create({
      ...base('sluice-tiny'), messages: [{ role: 'user', content: 'hello there' }],
      n: 1, stream: false, logprobs: false, store: false, service_tier: 'auto', modalities: ['text'], safety_identifier: 'end-user-1',
    });
    expect(completion.choices).toHaveLength(1);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
  });
});

describe('structured output (response_format)', () => {
  // No numbers: the JSON grammar lets a number run to any length (valid JSON, beyond a double).
  const schema = {
    type: 'object',
    properties: {
      ok: { type: 'boolean' },
      level: { type: 'string', enum: ['low', 'medium', 'high'] },
      tag: { type: 'string', maxLength: 8 },
      when: { anyOf: [{ type: 'null' }, { type: 'string', format: 'date' }] },
      items: { type: 'array', items: { $ref: '#/$defs/item' }, maxItems: 3 },
    },
    required: ['ok', 'level', 'tag', 'when', 'items'],
    additionalProperties: false,
    $defs: { item: { type: 'object', properties: { name: { type: 'string', maxLength: 6 }, done: { type: 'boolean' } }, required: ['name', 'done'], additionalProperties: false } },
  };
  const responseFormat = { type: 'json_schema' as const, json_schema: { name: 'answer', strict: true, schema } };

  it('llama.cpp: json_schema strict output parses and validates on the demo model, whatever the seed', async () => {
    const validate = new Ajv({ strict: false }).compile(schema);
    for (const seed of [1, 2, 3]) {
      const completion = await client.chat.completions.create({
        model: 'sluice-tiny', messages: [{ role: 'user', content: 'Describe the task as JSON' }], max_tokens: 256, temperature: 1, seed,
        response_format: responseFormat,
      });
      const choice = completion.choices[0];
      expect(choice?.finish_reason, `seed ${seed}`).toBe('stop');
      const parsed: unknown = JSON.parse(choice?.message.content ?? '');
      expect(validate(parsed), `seed ${seed}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });

  it('llama.cpp: json_object output is constrained to JSON', async () => {
    const completion = await client.chat.completions.create({
      model: 'sluice-tiny', messages: [{ role: 'user', content: 'JSON please' }], max_tokens: 32, temperature: 0,
      response_format: { type: 'json_object' },
    });
    const content = completion.choices[0]?.message.content ?? '';
    // The random model may not close its object within max_tokens; what it wrote is a JSON object's start.
    expect(content.trimStart()[0]).toBe('{');
    if (completion.choices[0]?.finish_reason === 'stop') expect(() => JSON.parse(content)).not.toThrow();
  });

  it('llama.cpp: a schema keyword the grammar cannot enforce is a 400 naming it; the upstream gets it unchanged', async () => {
    const withPattern = { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}$' } }, required: ['code'], additionalProperties: false };
    const rf = { type: 'json_schema', json_schema: { name: 'code', strict: true, schema: withPattern } };
    for (const model of ['sluice-tiny', 'mixed']) {
      const r = await post({ ...base(model), response_format: rf });
      expect(r.status, model).toBe(400);
      expect(r.body.error, model).toMatchObject({ param: 'response_format.json_schema.schema.properties.code.pattern', code: 'unsupported_parameter' });
    }
    const callsBefore = upstream.calls;
    const r = await post({ ...base('remote'), response_format: rf });
    expect(r.status).toBe(200);
    expect(upstream.calls).toBe(callsBefore + 1);
    expect((upstream.requests.at(-1)?.body as Record<string, unknown>).response_format).toEqual(rf);
  });

  it('openai-compatible: json_schema and json_object reach the upstream unchanged', async () => {
    for (const rf of [responseFormat, { type: 'json_object' as const }]) {
      await client.chat.completions.create({ ...base('remote'), messages: [{ role: 'user', content: 'x' }], response_format: rf });
      expect((upstream.requests.at(-1)?.body as Record<string, unknown>).response_format).toEqual(rf);
    }
  });
});

describe('penalties and logit_bias', () => {
  const ask = (extra: Record<string, unknown>) => client.chat.completions.create({
    model: 'sluice-tiny', messages: [{ role: 'user', content: 'Say hello to the world' }], max_tokens: 24, temperature: 0, seed: 1, ...extra,
  });

  it('llama.cpp: presence and frequency penalties change a greedy completion (the demo model repeats itself without them)', async () => {
    const plain = (await ask({})).choices[0]?.message.content;
    expect((await ask({})).choices[0]?.message.content).toBe(plain); // greedy: the baseline is stable
    expect((await ask({ frequency_penalty: 2 })).choices[0]?.message.content).not.toBe(plain);
    expect((await ask({ presence_penalty: 2 })).choices[0]?.message.content).not.toBe(plain);
  });

  it("llama.cpp: logit_bias +100 on one token makes it every token (token 68 is the demo vocabulary's byte 'A')", async () => {
    const completion = await ask({ logit_bias: { '68': 100 } });
    expect(completion.choices[0]?.message.content).toMatch(/^A+$/);
    expect(completion.usage?.completion_tokens).toBe(24);
  });

  it("llama.cpp: a logit_bias token outside the model's vocabulary is a 400", async () => {
    const r = await post({ ...base('sluice-tiny'), logit_bias: { '99999': 1 } });
    expect(r.status).toBe(400);
    expect(r.body.error.type).toBe('invalid_request_error');
  });

  it('openai-compatible: penalties and logit_bias reach the upstream unchanged', async () => {
    await client.chat.completions.create({
      ...base('remote'), messages: [{ role: 'user', content: 'x' }], presence_penalty: -0.5, frequency_penalty: 1.5, logit_bias: { '50256': -100, '11': 3 },
    });
    expect(upstream.requests.at(-1)?.body).toMatchObject({ presence_penalty: -0.5, frequency_penalty: 1.5, logit_bias: { '50256': -100, '11': 3 } });
  });
});

describe('batch lines take the same fields', () => {
  const line = (id: string, body: Record<string, unknown>) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body });
  async function runBatch(lines: string[]): Promise<OpenAI.Batches.Batch> {
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const b = await client.batches.retrieve(created.id);
      if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) return b;
      if (Date.now() > deadline) throw new Error(`batch ${b.id} timed out: ${b.status}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('honours response_format, penalties and upstream fields per line', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' }, tag: { type: 'string', maxLength: 6 } }, required: ['ok', 'tag'], additionalProperties: false };
    const callsBefore = upstream.calls;
    const done = await runBatch([
      line('json', { ...base('sluice-tiny'), max_tokens: 64, temperature: 1, seed: 5, response_format: { type: 'json_schema', json_schema: { name: 'b', strict: true, schema } } }),
      line('penalised', { ...base('sluice-tiny'), frequency_penalty: 1, presence_penalty: 1, logit_bias: { '68': 2 } }),
      line('upstream', { ...base('remote'), verbosity: 'low', response_format: { type: 'json_object' } }),
    ]);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 3, completed: 3, failed: 0 });
    const out = (await (await client.files.content(done.output_file_id as string)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const json = out.find((l) => l.custom_id === 'json');
    expect(new Ajv({ strict: false }).validate(schema, JSON.parse(json.response.body.choices[0].message.content))).toBe(true);
    expect(upstream.calls).toBe(callsBefore + 1);
    expect(upstream.requests.at(-1)?.body).toMatchObject({ verbosity: 'low', response_format: { type: 'json_object' } });
  });

  it('refuses a line with an unknown field, or a field its model\'s backend refuses, naming it', async () => {
    const done = await runBatch([
      line('unknown', { ...base('sluice-tiny'), top_k: 4 }),
      line('local-reasoning', { ...base('sluice-tiny'), reasoning_effort: 'low' }),
      line('pattern', { ...base('mixed'), response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'string', pattern: 'x' } } } }),
    ]);
    expect(done.status).toBe('failed');
    const errors = done.errors?.data ?? [];
    expect(errors.map((e) => [e.line, e.param, e.code])).toEqual([
      [1, 'body.top_k', 'unrecognized_request_argument'],
      [2, 'body.reasoning_effort', 'unsupported_parameter'],
      [3, 'body.response_format.json_schema.schema.pattern', 'unsupported_parameter'],
    ]);
  });
});

describe('logprobs', () => {
  it('llama.cpp: real log probabilities of each content token, with the most likely alternatives', async () => {
    const completion = await client.chat.completions.create({
      model: 'sluice-tiny', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3,
    });
    const choice = completion.choices[0];
    const content = choice?.logprobs?.content ?? [];
    const generated = completion.usage?.completion_tokens ?? 0;
    // One per content token: every generated token but an ending stop token.
    expect(content.length === generated || content.length === generated - 1).toBe(true);
    expect(content.length).toBeGreaterThan(0);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      const tops = t.top_logprobs.map((a) => a.logprob);
      expect([...tops].sort((a, b) => b - a)).toEqual(tops);
      // Greedy: the chosen token is the most likely one.
      expect(t.logprob).toBeCloseTo(tops[0] ?? Number.NaN, 6);
    }
    const plain = await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8, temperature: 0 });
    expect(plain.choices[0]?.logprobs).toBeNull();
  });

  it('openai-compatible: logprobs and top_logprobs reach the upstream unchanged', async () => {
    await client.chat.completions.create({ ...base('remote'), messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 2 });
    expect(upstream.requests.at(-1)?.body).toMatchObject({ logprobs: true, top_logprobs: 2 });
  });
});
