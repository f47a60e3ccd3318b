/**
 * `POST /v1/embeddings` on the real stack (Temporal, PostgreSQL, llama.cpp on the generated tiny
 * model, whose vectors are meaningless: shapes, equalities and counts are asserted), with the
 * official `openai` client; and through an openai-compatible deployment on the fake upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { fakeEmbedding, startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { DEMO_GGUF } from '../../scripts/lib/bootstrap.js';

let stack: TestStack;
let upstream: FakeUpstream;

/** 1 USD per million input tokens: every billed token costs 1 micro-USD. */
const PRICE = { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 };
/** The tiny demo model's embedding size (workers/llama/tiny-gguf.ts). */
const TINY_DIMS = 64;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  stack = await startTestStack();
  await addModel(stack, {
    id: 'tiny-embed', kind: 'embeddings', context_length: 1024, max_output_tokens: 1,
    deployments: [{ provider: 'llama-cpp', pool: 'local', gguf_path: DEMO_GGUF, price: PRICE }],
  });
  await addModel(stack, {
    id: 'tiny-embed-dims', kind: 'embeddings', accepts_dimensions: true, context_length: 1024, max_output_tokens: 1,
    deployments: [{ provider: 'llama-cpp', pool: 'local', gguf_path: DEMO_GGUF, price: PRICE }],
  });
  await addModel(stack, {
    id: 'remote-embed', kind: 'embeddings', accepts_dimensions: true, context_length: 8192, max_output_tokens: 1,
    deployments: [{ provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'up-embed-3', price: PRICE }],
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

async function tenantClient(limits?: Record<string, unknown>) {
  const { tenantId, key } = await stack.createTenantKey(limits ? { limits } : {});
  return { tenantId, key, client: new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 }) };
}

async function usageRows(tenantId: string) {
  return stack.db.selectFrom('usage').selectAll().where('tenant_id', '=', tenantId).execute();
}

async function post(key: string, body: unknown) {
  const res = await fetch(`${stack.url}/v1/embeddings`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

function decode(b64: string): number[] {
  const bytes = Buffer.from(b64, 'base64');
  return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
}

describe('POST /v1/embeddings on llama.cpp', () => {
  it('answers OpenAI\'s shape, one vector per input, usage equal to the ledger row', async () => {
    const { tenantId, client } = await tenantClient();
    const res = await client.embeddings.create({ model: 'tiny-embed', input: ['hello world', 'the quick brown fox'], encoding_format: 'float' });
    expect(res.object).toBe('list');
    expect(res.model).toBe('tiny-embed');
    expect(res.data.map((d) => [d.object, d.index])).toEqual([['embedding', 0], ['embedding', 1]]);
    for (const d of res.data) {
      expect(d.embedding).toHaveLength(TINY_DIMS);
      expect(d.embedding.every((v) => Number.isFinite(v))).toBe(true);
    }
    expect(res.usage.prompt_tokens).toBeGreaterThan(2);
    expect(res.usage.total_tokens).toBe(res.usage.prompt_tokens);

    const rows = await usageRows(tenantId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ step: 'embed', model: 'tiny-embed', input_tokens: res.usage.prompt_tokens, output_tokens: 0, cost_micros: res.usage.prompt_tokens });
    const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', rows[0]!.request_id).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('settled');
    expect(rows[0]!.request_id).toMatch(/^embreq_/);
  });

  it('gives base64 that decodes to the float values, and the same vector for the same input', async () => {
    const { client, key } = await tenantClient();
    const input = ['determinism check', 'determinism check', 'another text'];
    const floats = await client.embeddings.create({ model: 'tiny-embed', input, encoding_format: 'float' });
    const raw = await post(key, { model: 'tiny-embed', input, encoding_format: 'base64' });
    expect(raw.status).toBe(200);
    const decoded = (raw.body.data as Array<{ embedding: string }>).map((d) => decode(d.embedding));
    expect(decoded).toEqual(floats.data.map((d) => d.embedding));
    expect(floats.data[0]!.embedding).toEqual(floats.data[1]!.embedding);
    expect(floats.data[0]!.embedding).not.toEqual(floats.data[2]!.embedding);
    // The SDK's default (base64 on the wire, decoded by the client) agrees too.
    const sdkDefault = await client.embeddings.create({ model: 'tiny-embed', input: 'determinism check' });
    expect(Array.from(sdkDefault.data[0]!.embedding)).toEqual(floats.data[0]!.embedding);
  });

  it('embeds token arrays, one or many, and refuses token IDs outside the vocabulary naming the input', async () => {
    const { key, client } = await tenantClient();
    const many = await client.embeddings.create({ model: 'tiny-embed', input: [[300, 301, 302], [303, 304]], encoding_format: 'float' });
    expect(many.data).toHaveLength(2);
    expect(many.data[0]!.embedding).toHaveLength(TINY_DIMS);
    // BOS and EOS are added as the model's tokenizer does.
    expect(many.usage.prompt_tokens).toBeGreaterThanOrEqual(5);
    const one = await client.embeddings.create({ model: 'tiny-embed', input: [300, 301, 302], encoding_format: 'float' });
    expect(one.data[0]!.embedding).toEqual(many.data[0]!.embedding);

    const bad = await post(key, { model: 'tiny-embed', input: [[1, 2], [99_999]] });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'input[1]', code: 'invalid_value' });
    // Longer than the embedding context (SLUICE_CONTEXT_SIZE 1024 in tests): refused before any evaluation.
    const long = await post(key, { model: 'tiny-embed', input: [[301], Array.from({ length: 1100 }, () => 300)] });
    expect(long.status).toBe(400);
    expect(long.body.error).toMatchObject({ param: 'input[1]', code: 'input_too_long' });
  });

  it('shortens to `dimensions` on a model that allows it, as unit vectors; refuses it elsewhere naming it', async () => {
    const { key, client } = await tenantClient();
    const res = await client.embeddings.create({ model: 'tiny-embed-dims', input: 'short vector', dimensions: 16, encoding_format: 'float' });
    const v = res.data[0]!.embedding;
    expect(v).toHaveLength(16);
    expect(Math.hypot(...v)).toBeCloseTo(1, 5);

    const refused = await post(key, { model: 'tiny-embed', input: 'x', dimensions: 16 });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ param: 'dimensions', code: 'unsupported_parameter' });
    const tooMany = await post(key, { model: 'tiny-embed-dims', input: 'x', dimensions: TINY_DIMS + 1 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error).toMatchObject({ param: 'dimensions' });
  });

  it('refuses every field it does not know, and bad inputs, with a 400 naming the field', async () => {
    const { key } = await tenantClient();
    for (const [body, param] of [
      [{ model: 'tiny-embed', input: 'x', stream: true }, 'stream'],
      [{ model: 'tiny-embed', input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      [{ model: 'tiny-embed', input: '' }, 'input'],
      [{ model: 'tiny-embed', input: [] }, 'input'],
      [{ model: 'tiny-embed', input: ['a', [1, 2]] }, 'input[1]'],
      [{ model: 'tiny-embed', input: [1.5] }, 'input'],
      [{ model: 'tiny-embed' }, 'input'],
      [{ model: 'tiny-embed', input: 'x', user: 7 }, 'user'],
    ] as const) {
      const r = await post(key, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.param, JSON.stringify(body)).toBe(param);
    }
  });

  it('refuses a chat model for embeddings and an embeddings model for chat', async () => {
    const { key } = await tenantClient();
    const chatModel = await post(key, { model: 'sluice-tiny', input: 'x' });
    expect(chatModel.status).toBe(400);
    expect(chatModel.body.error).toMatchObject({ param: 'model', code: 'model_not_supported' });
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-embed', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatchObject({ param: 'model', code: 'model_not_supported' });
  });

  it('answers a repeated Idempotency-Key with the same result, billed once; a different body refused', async () => {
    const { tenantId, key } = await tenantClient();
    const send = (body: unknown) => fetch(`${stack.url}/v1/embeddings`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', 'Idempotency-Key': 'emb-1' }, body: JSON.stringify(body),
    });
    const first = await send({ model: 'tiny-embed', input: 'once only' });
    const again = await send({ model: 'tiny-embed', input: 'once only' });
    expect([first.status, again.status]).toEqual([200, 200]);
    expect(await again.json()).toEqual(await first.json());
    expect(await usageRows(tenantId)).toHaveLength(1);
    const other = await send({ model: 'tiny-embed', input: 'another body' });
    expect(other.status).toBe(422);
    expect(((await other.json()) as any).error.code).toBe('idempotency_key_reused');
  });

  it('bills nothing for a request refused by quota', async () => {
    const { tenantId, client } = await tenantClient({ monthly_budget_micros: 1 });
    const err = await client.embeddings.create({ model: 'tiny-embed', input: 'this costs more than one micro-dollar' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
    expect(await usageRows(tenantId)).toHaveLength(0);
    const held = await stack.db.selectFrom('reservations').select('status').where('tenant_id', '=', tenantId).execute();
    expect(held.filter((r) => r.status === 'held')).toHaveLength(0);
  });
});

describe('POST /v1/embeddings on an openai-compatible deployment', () => {
  it('passes the request through and answers the upstream\'s vectors, billed at its usage', async () => {
    const { tenantId, client } = await tenantClient();
    const input = ['alpha beta', 'gamma delta epsilon'];
    const res = await client.embeddings.create({ model: 'remote-embed', input, dimensions: 4, encoding_format: 'float', user: 'u-1' });
    const sent = upstream.requests.filter((r) => r.path === '/v1/embeddings').at(-1);
    expect(sent?.body).toEqual({ model: 'up-embed-3', input, encoding_format: 'base64', dimensions: 4 });
    expect(res.data.map((d) => d.embedding)).toEqual(input.map((text) => fakeEmbedding(text, 4)));
    expect(res.usage).toEqual({ prompt_tokens: 5, total_tokens: 5 });
    const rows = await usageRows(tenantId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ step: 'embed', model: 'remote-embed', input_tokens: 5, output_tokens: 0, cost_micros: 5 });
  });

  it('passes token arrays through', async () => {
    const { client } = await tenantClient();
    const res = await client.embeddings.create({ model: 'remote-embed', input: [[1, 2, 3]], encoding_format: 'base64' });
    const sent = upstream.requests.filter((r) => r.path === '/v1/embeddings').at(-1);
    expect((sent?.body as any).input).toEqual([[1, 2, 3]]);
    expect(decode(res.data[0]!.embedding as unknown as string)).toEqual(fakeEmbedding([1, 2, 3]));
  });
});

describe('a batch of embeddings lines', () => {
  async function runBatch(client: OpenAI, lines: unknown[]) {
    const text = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
    const file = await client.files.create({ file: await toFile(Buffer.from(text), 'embed.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const b = await client.batches.retrieve(created.id);
      if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) return b;
      if (Date.now() > deadline) throw new Error(`batch ${created.id} timed out: ${JSON.stringify(b)}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  const line = (customId: string, body: Record<string, unknown>) => ({ custom_id: customId, method: 'POST', url: '/v1/embeddings', body });

  it('runs each line as an embeddings request: the same vectors as a sync call, billed once each as batch usage', async () => {
    const { tenantId, client } = await tenantClient();
    const done = await runBatch(client, [
      line('a', { model: 'tiny-embed', input: ['batch one', 'batch two'] }),
      line('b', { model: 'tiny-embed', input: 'batch three', encoding_format: 'base64' }),
      line('c', { model: 'remote-embed', input: ['gamma delta'], dimensions: 4 }),
    ]);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 3, completed: 3, failed: 0 });
    const text = await (await client.files.content(done.output_file_id!)).text();
    const out = new Map(text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).map((o: any) => [o.custom_id, o]));
    const a = out.get('a').response;
    expect(a.status_code).toBe(200);
    expect(a.body.object).toBe('list');
    expect(a.body.data).toHaveLength(2);
    const sync = await client.embeddings.create({ model: 'tiny-embed', input: ['batch one', 'batch two'], encoding_format: 'float' });
    expect(a.body.data.map((d: any) => d.embedding)).toEqual(sync.data.map((d) => d.embedding));
    const b = out.get('b').response.body;
    expect(typeof b.data[0].embedding).toBe('string');
    expect(decode(b.data[0].embedding)).toHaveLength(TINY_DIMS);
    expect(out.get('c').response.body.data[0].embedding).toEqual(fakeEmbedding('gamma delta', 4));

    const prefix = `${done.id.replace(/^batch_/, 'batch_req_')}_`;
    const rows = (await usageRows(tenantId)).filter((r) => r.request_id.startsWith(prefix));
    expect(rows).toHaveLength(3);
    expect(rows.every((r) => r.step === 'embed' && r.kind === 'batch' && r.output_tokens === 0)).toBe(true);
    const byLine = Object.fromEntries(['a', 'b', 'c'].map((id) => [id, out.get(id).response.body.usage.prompt_tokens]));
    expect(rows.map((r) => r.input_tokens).sort()).toEqual(Object.values(byLine).sort());
  });

  it('fails validation for a chat model, a chat line or a refused field, naming each', async () => {
    const { client } = await tenantClient();
    const done = await runBatch(client, [
      line('a', { model: 'sluice-tiny', input: 'x' }),
      { custom_id: 'b', method: 'POST', url: '/v1/chat/completions', body: { model: 'tiny-embed', messages: [] } },
      line('c', { model: 'tiny-embed', input: 'x', dimensions: 8 }),
      line('d', { model: 'tiny-embed', input: 'x', stream: true }),
    ]);
    expect(done.status).toBe('failed');
    expect(done.errors?.data?.map((e) => [e.line, e.code, e.param])).toEqual([
      [1, 'model_not_supported', 'body.model'],
      [2, 'invalid_url', 'url'],
      [3, 'unsupported_parameter', 'body.dimensions'],
      [4, 'unsupported_parameter', 'body.stream'],
    ]);
  });
});
