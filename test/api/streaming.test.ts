/**
 * `stream: true` through the durable workflow (issue 13), on real Temporal, PostgreSQL and
 * llama.cpp (the tiny model: shapes and counts, never text) with the official `openai` client;
 * the instant backend at a fixed pace where a stream must still be running when the test acts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { startSecondApi, type SecondApi } from '../support/second-api.js';
import { chatWorkflowId } from '../../contracts/ids.js';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDb } from '../../db/database.js';
import { publishChunk } from '../../db/repositories/streams.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { readEvents } from '../support/sse.js';

let stack: TestStack;
let client: OpenAI;
let key: string;
let second: SecondApi;
let good: FakeUpstream;
let goodFallback: FakeUpstream;
let broken: FakeUpstream;
let breaking: FakeUpstream;

const upstream = (id: string, url: string, priority = 0) => ({
  id, provider: 'openai-compatible', pool: 'local', base_url: url, upstream_model: 'gpt-fake', priority,
  price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 },
});

beforeAll(async () => {
  stack = await startTestStack();
  ({ key } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  // A streaming backend of known pace: one token every 50 ms, up to 1000.
  await addModel(stack, {
    id: 'paced', context_length: 4096, max_output_tokens: 1000,
    deployments: [{ id: 'paced-local', provider: 'instant', pool: 'local', upstream_model: 'stream-interval-ms:50', price: { input_micros_per_mtok: 100_000, output_micros_per_mtok: 200_000 } }],
  });
  second = await startSecondApi(stack);
  good = await startFakeUpstream();
  goodFallback = await startFakeUpstream();
  broken = await startFakeUpstream({ behaviour: { kind: 'fail', status: 500 } });
  breaking = await startFakeUpstream({ behaviour: { kind: 'break-stream', afterWords: 2 } });
  const model = (id: string, deployments: unknown[]) => addModel(stack, { id, context_length: 1024, max_output_tokens: 64, deployments });
  await model('relay', [upstream('relay-up', good.url)]);
  await model('relay-variant', [upstream('relay-variant-up', good.url)]);
  await model('fallback', [upstream('fallback-broken', broken.url, 0), upstream('fallback-good', goodFallback.url, 1)]);
  await model('dead', [upstream('dead-broken', broken.url)]);
  await model('midbreak', [upstream('midbreak-breaking', breaking.url, 0), upstream('midbreak-good', goodFallback.url, 1)]);
}, 120_000);
afterAll(async () => {
  await second?.close();
  await stack?.stop();
  for (const f of [good, goodFallback, broken, breaking]) await f?.close();
});

function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

async function usageRows(requestId: string) {
  return stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).orderBy('step').execute();
}

const tiny = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'sluice-tiny', messages: [{ role: 'user' as const, content }], max_tokens: 24, temperature: 0, seed: 7, ...extra,
});

describe('stream: true with the openai client', () => {
  it('streams role, content deltas, finish_reason and a usage chunk equal to the ledger row', async () => {
    const stream = await client.chat.completions.create({ ...tiny('Stream me a story'), stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.id).toBe(chunks[0]?.id);
    }
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    const finish = chunks.at(-2)!;
    expect(['stop', 'length']).toContain(finish.choices[0]?.finish_reason);
    for (const c of chunks.slice(0, -2)) expect(c.choices[0]?.finish_reason).toBeNull();
    const requestId = chunks[0]!.id.replace('chatcmpl-', '');
    const rows = await usageRows(requestId);
    expect(rows).toHaveLength(1);
    expect(usageChunk.usage).toEqual({
      prompt_tokens: rows[0]?.input_tokens, completion_tokens: rows[0]?.output_tokens, total_tokens: (rows[0]?.input_tokens ?? 0) + (rows[0]?.output_tokens ?? 0),
    });
    expect(usageChunk.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('equals the non-streamed completion at temperature 0 (finalChatCompletion and joined deltas)', async () => {
    const body = tiny('Determinism through the stream', { max_tokens: 32 });
    const plain = await client.chat.completions.create(body);
    const final = await client.chat.completions.stream(body).finalChatCompletion();
    expect(final.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
    expect(final.choices[0]?.finish_reason).toBe(plain.choices[0]?.finish_reason);
    let joined = '';
    const stream = await client.chat.completions.create({ ...body, stream: true });
    for await (const c of stream) joined += c.choices[0]?.delta.content ?? '';
    expect(joined).toBe(plain.choices[0]?.message.content);
  });
});

describe('the workflow stays the source of truth', () => {
  it("a streamed request's history has the events of the same request not streamed: no event per token", async () => {
    const body = tiny('History size', { max_tokens: 48 });
    const plain = await client.chat.completions.create(body);
    let id = '';
    let deltas = 0;
    for await (const c of await client.chat.completions.create({ ...body, stream: true })) {
      id = c.id;
      if (c.choices[0]?.delta.content) deltas += 1;
    }
    const types = async (completionId: string) => {
      await settled(stack, completionId);
      const history = await stack.client.workflow.getHandle(chatWorkflowId(completionId.replace('chatcmpl-', ''))).fetchHistory();
      return (history.events ?? []).map((e) => e.eventType);
    };
    expect(deltas).toBeGreaterThan(0);
    expect(await types(id)).toEqual(await types(plain.id));
  });
});

describe('stream: true on the wire', () => {
  it('gives every event an ID, the job ID in a header, and ends with [DONE]', async () => {
    const res = await post(stack.url, { ...tiny('Wire format'), stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const jobId = res.headers.get('x-sluice-job-id');
    expect(jobId).toMatch(/^req_/);
    const events = await readEvents(res);
    expect(events.at(-1)?.data).toBe('[DONE]');
    for (const e of events.slice(0, -1)) expect(e.id).not.toBeNull();
    expect(new Set(events.slice(0, -1).map((e) => e.id)).size).toBe(events.length - 1);
    const job = await (await fetch(`${stack.url}/v1/jobs/${jobId}`, { headers: { Authorization: `Bearer ${key}` } })).json() as any;
    const joined = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0]?.delta?.content ?? '').join('');
    expect(job.status).toBe('succeeded');
    expect(joined).toBe(job.result.choices[0].message.content);
  });

  it('refuses stream with Prefer: respond-async, before anything exists', async () => {
    const res = await post(stack.url, { ...tiny('async stream'), stream: true }, { Prefer: 'respond-async' });
    expect(res.status).toBe(400);
    const body: any = await res.json();
    expect(body.error).toMatchObject({ param: 'stream', code: 'unsupported_parameter', type: 'invalid_request_error' });
  });

  it('refuses a malformed X-Sluice-Stream-Detach before any request row or workflow exists', async () => {
    const before = await stack.db.selectFrom('requests').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const res = await post(stack.url, { ...tiny('detach maybe'), stream: true }, { 'X-Sluice-Stream-Detach': 'maybe' });
    expect(res.status).toBe(400);
    const body: any = await res.json();
    expect(body.error).toMatchObject({ param: 'x-sluice-stream-detach', code: 'invalid_value' });
    const after = await stack.db.selectFrom('requests').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  it('answers a workflow that fails before the first chunk with the HTTP error a non-streamed request gets', async () => {
    const body = { model: 'dead', messages: [{ role: 'user', content: 'nobody serves this' }], max_tokens: 4 };
    const res = await post(stack.url, { ...body, stream: true });
    const plain = await post(stack.url, body);
    expect(res.status).toBe(503);
    expect(res.status).toBe(plain.status);
    expect(res.headers.get('content-type')).toMatch(/json/);
    const [streamed, unstreamed] = [await res.json() as any, await plain.json() as any];
    expect(streamed.error).toEqual(unstreamed.error);
  });
});

describe('resume', () => {
  it('continues after Last-Event-ID on a second API process; the joined text equals the completion', async () => {
    const res = await post(stack.url, { model: 'paced', messages: [{ role: 'user', content: 'resume me' }], max_tokens: 20, stream: true, stream_options: { include_usage: true } }, { 'X-Sluice-Stream-Detach': 'true' });
    const jobId = res.headers.get('x-sluice-job-id') as string;
    // Leave after the first content event (its ID is where the client resumes).
    const first = await readEvents(res, (e) => e.id !== null && e.id !== '0');
    const lastId = first.at(-1)?.id as string;
    const resumed = await fetch(`${second.url}/v1/chat/completions/${jobId}/stream?include_usage=true`, { headers: { Authorization: `Bearer ${key}`, 'Last-Event-ID': lastId } });
    expect(resumed.status).toBe(200);
    const rest = await readEvents(resumed);
    expect(rest.at(-1)?.data).toBe('[DONE]');
    const all = [...first, ...rest.slice(0, -1)];
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    const parsed = all.map((e) => JSON.parse(e.data));
    const joined = parsed.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    const job = await (await fetch(`${stack.url}/v1/jobs/${jobId}`, { headers: { Authorization: `Bearer ${key}` } })).json() as any;
    expect(job.status).toBe('succeeded');
    expect(joined).toBe(job.result.choices[0].message.content);
    expect(joined).toBe('x'.repeat(20));
    expect(parsed.at(-1).usage).toEqual(job.result.usage);
    // The first client left after one of 20 tokens: the rest came through the second process.
    expect(rest.length).toBeGreaterThan(2);
  });

  it('resumes from the start without Last-Event-ID, and refuses a malformed one', async () => {
    const plain = await client.chat.completions.create(tiny('Replay from the start'));
    const jobId = plain.id.replace('chatcmpl-', '');
    const again = await fetch(`${second.url}/v1/chat/completions/${jobId}/stream`, { headers: { Authorization: `Bearer ${key}` } });
    const events = await readEvents(again);
    const joined = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0]?.delta?.content ?? '').join('');
    expect(joined).toBe(plain.choices[0]?.message.content);
    const bad = await fetch(`${second.url}/v1/chat/completions/${jobId}/stream`, { headers: { Authorization: `Bearer ${key}`, 'Last-Event-ID': 'x; drop' } });
    expect(bad.status).toBe(400);
    const other = await stack.createTenantKey();
    const foreign = await fetch(`${second.url}/v1/chat/completions/${jobId}/stream`, { headers: { Authorization: `Bearer ${other.key}` } });
    expect(foreign.status).toBe(404);
  });
});

describe('disconnect', () => {
  it('cancels the workflow, stops the generation, records what was generated unbilled and releases the reservation', async () => {
    const abort = new AbortController();
    const res = await post(stack.url, { model: 'paced', messages: [{ role: 'user', content: 'long one' }], max_tokens: 1000, stream: true }, {}, abort.signal);
    const jobId = res.headers.get('x-sluice-job-id') as string;
    let contentEvents = 0;
    await readEvents(res, (e) => {
      if (e.id !== null && e.id !== '0') contentEvents += 1;
      return contentEvents >= 3;
    });
    abort.abort();
    const handle = stack.client.workflow.getHandle(chatWorkflowId(jobId));
    await expect(handle.result()).rejects.toThrow();
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    const rows = await usageRows(jobId);
    expect(rows.map((r) => r.step)).toEqual(['infer:cancelled:paced-local']);
    // Stopped soon after the client left: far fewer than the 1000 tokens it was generating.
    expect(rows[0]?.output_tokens).toBeGreaterThanOrEqual(3);
    expect(rows[0]?.output_tokens).toBeLessThan(1000);
    expect(rows[0]?.billable).toBe(false);
    const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', jobId).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('released');
    const audit = await stack.db.selectFrom('audit_log').selectAll().where('target', '=', `request:${jobId}`).execute();
    expect(audit.map((a) => a.action)).toContain('request.cancelled');
  });
});

describe('openai-compatible upstreams', () => {
  const ask = (model: string) => ({ model, messages: [{ role: 'user' as const, content: 'hello there upstream' }], max_tokens: 6, stream: true as const, stream_options: { include_usage: true } });

  it('relays the upstream SSE, asking it for usage; the usage chunk equals the ledger row', async () => {
    const stream = await client.chat.completions.create(ask('relay'));
    let joined = '';
    let usage = null;
    let id = '';
    for await (const c of stream) {
      id = c.id;
      joined += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(joined).toBe('This is a deterministic reply from');
    const sent = good.requests.at(-1)?.body as Record<string, unknown>;
    expect(sent).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    const rows = await usageRows(id.replace('chatcmpl-', ''));
    expect(rows.map((r) => r.step)).toEqual(['infer']);
    expect(usage).toEqual({ prompt_tokens: rows[0]?.input_tokens, completion_tokens: rows[0]?.output_tokens, total_tokens: (rows[0]?.input_tokens ?? 0) + (rows[0]?.output_tokens ?? 0) });
  });

  it("shows the model that generates the text on every chunk: an experiment variant's, not the one asked for", async () => {
    const { tenantId, key: adminKey } = await stack.createTenantKey({ role: 'tenant_admin' });
    const created = await fetch(`${stack.url}/v1/admin/experiments`, {
      method: 'POST', headers: { Authorization: `Bearer ${adminKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'stream-model', model: 'relay', variants: [{ name: 'a', overrides: { model: 'relay-variant' } }, { name: 'b', overrides: { model: 'relay-variant' } }] }),
    });
    expect(created.status, await created.clone().text()).toBe(201);
    const res = await post(stack.url, ask('relay'), { Authorization: `Bearer ${adminKey}` });
    expect(res.status).toBe(200);
    const events = await readEvents(res);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data) as { model: string; choices: Array<{ delta: { content?: string } }> });
    expect(chunks.some((c) => (c.choices[0]?.delta.content ?? '') !== '')).toBe(true);
    expect(new Set(chunks.map((c) => c.model))).toEqual(new Set(['relay-variant']));
    const row = await stack.db.selectFrom('usage').select('model').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
    expect(row.model).toBe('relay-variant');
    // Ops see the variant's model too: the start wrote the one asked for, the end's upsert writes the one that served.
    const handle = stack.client.workflow.getHandle(chatWorkflowId(res.headers.get('x-sluice-job-id') as string));
    await handle.result();
    expect((await handle.describe()).searchAttributes).toMatchObject({ SluiceModel: ['relay-variant'], SluiceStatus: ['succeeded'] });
  });

  it('falls back invisibly when the upstream fails before its first byte', async () => {
    const before = goodFallback.calls;
    const res = await post(stack.url, ask('fallback'));
    expect(res.status).toBe(200);
    const events = await readEvents(res);
    expect(events.at(-1)?.data).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    expect(chunks.some((c) => c.error)).toBe(false);
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('This is a deterministic reply from');
    expect(broken.calls).toBeGreaterThan(0);
    expect(goodFallback.calls).toBe(before + 1);
  });

  it('ends with an error event in OpenAI error shape when the upstream fails mid-stream, never restarting the text', async () => {
    const fallbackCalls = goodFallback.calls;
    const res = await post(stack.url, ask('midbreak'));
    expect(res.status).toBe(200);
    const jobId = res.headers.get('x-sluice-job-id') as string;
    const events = await readEvents(res);
    const last = JSON.parse(events.at(-1)?.data ?? '{}');
    expect(last.error).toMatchObject({ type: 'service_unavailable', code: 'stream_interrupted', param: null });
    expect(typeof last.error.message).toBe('string');
    expect(events.at(-1)?.id).toMatch(/-e$/);
    const text = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe('This is');
    // Not retried, not sent to the fallback deployment.
    expect(breaking.calls).toBe(1);
    expect(goodFallback.calls).toBe(fallbackCalls);
    const job: any = await (await fetch(`${stack.url}/v1/jobs/${jobId}`, { headers: { Authorization: `Bearer ${key}` } })).json();
    expect(job.status).toBe('failed');
    expect((await usageRows(jobId)).filter((r) => r.billable)).toEqual([]);
    // The official client raises it as an APIError.
    await expect((async () => {
      for await (const _ of await client.chat.completions.create(ask('midbreak'))) void _;
    })()).rejects.toThrow(OpenAI.APIError);
  });
});

describe('the stream writer role', () => {
  it('lets an inference worker append chunks and read nothing', async () => {
    const role = `stream_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    const admin = new pg.Client({ connectionString: stack.databaseUrl });
    await admin.connect();
    await admin.query(`create role ${role} login password '${password}' in role sluice_stream_writer`);
    const url = new URL(stack.databaseUrl);
    url.username = role;
    url.password = password;
    const writer = createDb({ connectionString: url.toString(), max: 1 });
    try {
      expect(await publishChunk(writer.db, { requestId: 'req_writer', attempt: 'a:1', model: 'm', content: 'hi' })).toBeGreaterThan(0);
      await expect(writer.db.selectFrom('stream_chunks').select('content').execute()).rejects.toThrow(/permission denied/);
      await expect(writer.db.selectFrom('requests').select('id').execute()).rejects.toThrow(/permission denied/);
      await expect(writer.db.deleteFrom('stream_chunks').execute()).rejects.toThrow(/permission denied/);
    } finally {
      await writer.db.destroy();
      await admin.query(`drop owned by ${role}`);
      await admin.query(`drop role ${role}`);
      await admin.end();
    }
  });
});

describe('batch lines', () => {
  it('refuses a line with stream at validation', async () => {
    const { parseBatchLine } = await import('../../activities/parse-batch-line.js');
    const line = JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { ...tiny('x'), stream: true } });
    expect(parseBatchLine(line, '/v1/chat/completions')).toMatchObject({ ok: false, error: { code: 'unsupported_parameter', param: 'body.stream' } });
  });
});
