/**
 * `POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}` and `input_items` with the official
 * `openai` client on the real stack (llama.cpp on the tiny GGUF: shapes, counts and validity, never
 * text): its own `responseRequest` workflow through the request pipeline, billed (usage equals the
 * ledger row) and audited; stored per tenant, chained with `previous_response_id`, removed by
 * DELETE, retention and erase; streamed as Responses events; fields refused with a 400 naming them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { Ajv } from 'ajv';
import { startTestStack, type TestStack } from '../support/stack.js';
import { responseWorkflowId } from '../../contracts/ids.js';
import { purgeExpiredContent } from '../../db/repositories/retention.js';

let stack: TestStack;
let client: OpenAI;
let tenant: { tenantId: string; key: string };

const base = { model: 'sluice-tiny', max_output_tokens: 8, temperature: 0 } as const;

beforeAll(async () => {
  stack = await startTestStack();
  tenant = await stack.createTenantKey();
  client = new OpenAI({ apiKey: tenant.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

function sdk(key: string): OpenAI {
  return new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}

async function call(key: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: await res.json() };
}

async function ledger(requestId: string) {
  return stack.db.selectFrom('usage').select(['step', 'input_tokens', 'output_tokens']).where('request_id', '=', requestId).execute();
}

async function storedRow(id: string) {
  return stack.db.selectFrom('responses').select(['id', 'tenant_id']).where('id', '=', id).executeTakeFirst();
}

describe('create and retrieve', () => {
  it('answers a response object in its own workflow, billed once (usage = the ledger row) and audited', async () => {
    const response = await client.responses.create({ ...base, input: 'Tell me a story' });
    expect(response).toMatchObject({ object: 'response', model: 'sluice-tiny', previous_response_id: null, store: true, error: null });
    expect(response.id).toMatch(/^resp_/);
    expect(['completed', 'incomplete']).toContain(response.status);
    expect(response.output).toHaveLength(1);
    const item = response.output[0];
    expect(item).toMatchObject({ type: 'message', role: 'assistant' });
    const content = item?.type === 'message' ? item.content : [];
    expect(content).toHaveLength(1);
    expect(content[0]).toMatchObject({ type: 'output_text', annotations: [] });
    expect(response.output_text.length).toBeGreaterThan(0);
    expect(content[0]?.type === 'output_text' ? content[0].text : null).toBe(response.output_text);
    expect(response.created_at).toEqual(expect.any(Number));

    const usage = response.usage;
    expect(usage?.input_tokens).toBeGreaterThan(0);
    expect(usage?.output_tokens).toBeGreaterThan(0);
    expect(usage?.output_tokens).toBeLessThanOrEqual(8);
    expect(usage?.total_tokens).toBe((usage?.input_tokens ?? 0) + (usage?.output_tokens ?? 0));
    expect(await ledger(response.id)).toEqual([{ step: 'infer', input_tokens: usage?.input_tokens, output_tokens: usage?.output_tokens }]);
    const audit = await stack.db.selectFrom('audit_log').select('action').where('target', '=', `request:${response.id}`).execute();
    expect(audit.map((a) => a.action)).toEqual(['request.succeeded']);
    const described = await stack.client.workflow.getHandle(responseWorkflowId(response.id)).describe();
    expect(described.type).toBe('responseRequest');

    // Stored (store defaults to true) and retrievable as it was returned.
    const retrieved = await client.responses.retrieve(response.id);
    expect(retrieved).toEqual(response);
    expect(await storedRow(response.id)).toEqual({ id: response.id, tenant_id: tenant.tenantId });
  });

  it('takes message items and instructions: the instructions count as prompt tokens; input_items lists the input', async () => {
    const input = [
      { role: 'user' as const, content: [{ type: 'input_text' as const, text: 'Hello' }] },
      { role: 'assistant' as const, content: 'Hi there' },
      { role: 'user' as const, content: 'And then?' },
    ];
    const plain = await client.responses.create({ ...base, input, store: false });
    const instructed = await client.responses.create({ ...base, input, instructions: 'Answer like a pirate who has seen many seas' });
    expect(instructed.instructions).toBe('Answer like a pirate who has seen many seas');
    expect(instructed.usage?.input_tokens).toBeGreaterThan(plain.usage?.input_tokens ?? Infinity);

    const items = await client.responses.inputItems.list(instructed.id, { order: 'asc' });
    expect(items.data.map((i) => (i.type === 'message' ? [i.role, i.content.map((c) => c.type)] : null))).toEqual([
      ['user', ['input_text']], ['assistant', ['output_text']], ['user', ['input_text']],
    ]);
    const desc = await call(tenant.key, 'GET', `/responses/${instructed.id}/input_items?limit=1`);
    expect(desc.status).toBe(200);
    expect(desc.body).toMatchObject({ object: 'list', has_more: true });
    expect(desc.body.data).toHaveLength(1);
    expect(desc.body.data[0].id).toBe(items.data[2]?.id);
  });

  it('store: false is answered but not retrievable, and still billed', async () => {
    const response = await client.responses.create({ ...base, input: 'Forget me', store: false });
    expect((response as unknown as { store: boolean }).store).toBe(false);
    expect(await ledger(response.id)).toHaveLength(1);
    expect(await storedRow(response.id)).toBeUndefined();
    const got = await call(tenant.key, 'GET', `/responses/${response.id}`);
    expect(got.status).toBe(404);
    expect(got.body.error).toMatchObject({ type: 'not_found_error', code: 'response_not_found' });
    const chained = await call(tenant.key, 'POST', '/responses', { ...base, input: 'x', previous_response_id: response.id });
    expect(chained.status).toBe(404);
    expect(chained.body.error).toMatchObject({ param: 'previous_response_id', code: 'previous_response_not_found' });
  });

  it('DELETE removes a stored response', async () => {
    const response = await client.responses.create({ ...base, input: 'Delete me' });
    await client.responses.delete(response.id);
    expect(await storedRow(response.id)).toBeUndefined();
    expect((await call(tenant.key, 'GET', `/responses/${response.id}`)).status).toBe(404);
    expect((await call(tenant.key, 'DELETE', `/responses/${response.id}`)).status).toBe(404);
  });
});

describe('previous_response_id', () => {
  it('continues a stored response: the second prompt holds the first turn', async () => {
    const first = await client.responses.create({ ...base, input: 'My name is Ada' });
    const second = await client.responses.create({ ...base, input: 'What is my name?', previous_response_id: first.id });
    const alone = await client.responses.create({ ...base, input: 'What is my name?', store: false });
    expect(second.previous_response_id).toBe(first.id);
    expect(second.usage?.input_tokens).toBeGreaterThan(alone.usage?.input_tokens ?? Infinity);
    // The second holds at least the first's whole prompt and output besides its own input.
    expect(second.usage?.input_tokens).toBeGreaterThan((first.usage?.input_tokens ?? Infinity) + (first.usage?.output_tokens ?? 0));
    const third = await client.responses.create({ ...base, input: 'And again?', previous_response_id: second.id });
    expect(third.usage?.input_tokens).toBeGreaterThan(second.usage?.input_tokens ?? Infinity);
    expect((await client.responses.retrieve(second.id)).previous_response_id).toBe(first.id);
  });
});

describe('text.format', () => {
  const schema = {
    type: 'object',
    properties: { ok: { type: 'boolean' }, level: { type: 'string', enum: ['low', 'medium', 'high'] }, tag: { type: 'string', maxLength: 8 } },
    required: ['ok', 'level', 'tag'],
    additionalProperties: false,
  };

  it('json_schema (strict): output_text parses and validates', async () => {
    const validate = new Ajv({ strict: false }).compile(schema);
    for (const seed of [1, 2]) {
      const response = await client.responses.create({
        model: 'sluice-tiny', input: 'Describe the task as JSON', max_output_tokens: 128, temperature: 1,
        text: { format: { type: 'json_schema', name: 'answer', strict: true, schema } },
        metadata: { seed: String(seed) },
      });
      expect(response.status, `seed ${seed}`).toBe('completed');
      expect(response.text?.format).toEqual({ type: 'json_schema', name: 'answer', strict: true, schema });
      expect(response.metadata).toEqual({ seed: String(seed) });
      const parsed: unknown = JSON.parse(response.output_text);
      expect(validate(parsed), JSON.stringify(validate.errors)).toBe(true);
    }
  });

  it('json_object: output_text parses', async () => {
    const response = await client.responses.create({ model: 'sluice-tiny', input: 'JSON please', max_output_tokens: 128, temperature: 0, text: { format: { type: 'json_object' } } });
    expect(response.status).toBe('completed');
    expect(() => JSON.parse(response.output_text) as unknown).not.toThrow();
  });
});

describe('tenant isolation and erasure', () => {
  it("another tenant's response is a 404 everywhere", async () => {
    const mine = await client.responses.create({ ...base, input: 'Mine only' });
    const other = await stack.createTenantKey();
    for (const [method, path] of [['GET', `/responses/${mine.id}`], ['GET', `/responses/${mine.id}/input_items`], ['DELETE', `/responses/${mine.id}`]] as const) {
      const r = await call(other.key, method, path);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body.error.code).toBe('response_not_found');
    }
    const chained = await call(other.key, 'POST', '/responses', { ...base, input: 'x', previous_response_id: mine.id });
    expect(chained.status).toBe(404);
    expect(chained.body.error).toMatchObject({ param: 'previous_response_id', code: 'previous_response_not_found' });
    // Same answer as for an ID that never existed; the owner still has it.
    const shape = (r: { status: number; body: any }) => ({ status: r.status, type: r.body.error.type, code: r.body.error.code, param: r.body.error.param });
    expect(shape(await call(other.key, 'GET', '/responses/resp_doesnotexist'))).toEqual(shape(await call(other.key, 'GET', `/responses/${mine.id}`)));
    expect(await storedRow(mine.id)).toBeDefined();
    expect((await client.responses.retrieve(mine.id)).id).toBe(mine.id);
  });

  it("a tenant's retention purges its stored responses; another tenant's stay", async () => {
    const short = await stack.createTenantKey();
    expect((await stack.admin('PATCH', `/v1/admin/tenants/${short.tenantId}`, { retention_days: 7 })).status).toBe(200);
    const old = await sdk(short.key).responses.create({ ...base, input: 'Old content' });
    const kept = await client.responses.create({ ...base, input: 'Kept content' });
    const purged = await purgeExpiredContent(stack.db, new Date(Date.now() + 8 * 86_400_000), 1000);
    expect(purged.responses).toBeGreaterThanOrEqual(1);
    expect(await storedRow(old.id)).toBeUndefined();
    expect((await call(short.key, 'GET', `/responses/${old.id}`)).status).toBe(404);
    expect((await call(short.key, 'POST', '/responses', { ...base, input: 'x', previous_response_id: old.id })).status).toBe(404);
    expect(await storedRow(kept.id)).toBeDefined();
  });

  it('erasing a tenant removes its stored responses; usage stays', async () => {
    const victim = await stack.createTenantKey();
    const bystander = await client.responses.create({ ...base, input: 'Bystander' });
    const a = await sdk(victim.key).responses.create({ ...base, input: 'Erase me' });
    const b = await sdk(victim.key).responses.create({ ...base, input: 'Erase me too', previous_response_id: a.id });
    const usageBefore = [...(await ledger(a.id)), ...(await ledger(b.id))];
    const r = await stack.admin('POST', `/v1/admin/tenants/${victim.tenantId}/erase`, { confirm: true });
    expect(r.status).toBe(200);
    expect(r.body.erased).toMatchObject({ responses: 2 });
    const left = await stack.db.selectFrom('responses').select('id').where('tenant_id', '=', victim.tenantId).execute();
    expect(left).toEqual([]);
    expect([...(await ledger(a.id)), ...(await ledger(b.id))]).toEqual(usageBefore);
    expect(await storedRow(bystander.id)).toBeDefined();
  });
});

describe('streaming', () => {
  it('the SDK stream gets the Responses events in order, and the final response is the stored one', async () => {
    const stream = client.responses.stream({ ...base, max_output_tokens: 16, input: 'Stream a story' });
    const events: Array<{ type: string; sequence_number: number; delta?: string }> = [];
    for await (const event of stream) events.push(event as (typeof events)[number]);
    const final = await stream.finalResponse();

    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_e, i) => i));
    const types = events.map((e) => e.type).filter((t) => t !== 'response.output_text.delta');
    expect(types).toEqual([
      'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
      'response.output_text.done', 'response.content_part.done', 'response.output_item.done',
      final.status === 'incomplete' ? 'response.incomplete' : 'response.completed',
    ]);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    expect(deltas.length).toBeGreaterThan(0);
    // Deltas come between content_part.added and output_text.done.
    const firstDelta = events.indexOf(deltas[0] as (typeof events)[number]);
    expect(events[firstDelta - 1]?.type === 'response.content_part.added' || events[firstDelta - 1]?.type === 'response.output_text.delta').toBe(true);
    expect(deltas.map((d) => d.delta).join('')).toBe(final.output_text);
    expect(final.output_text.length).toBeGreaterThan(0);
    expect(await ledger(final.id)).toEqual([{ step: 'infer', input_tokens: final.usage?.input_tokens, output_tokens: final.usage?.output_tokens }]);
    const retrieved = await client.responses.retrieve(final.id);
    expect(retrieved.output_text).toBe(final.output_text);
    expect(retrieved.usage).toEqual(final.usage);
  });

  it('a request refused by its quota before any event gets the HTTP error, nothing billed or stored', async () => {
    const t = await stack.createTenantKey({ limits: { tokens_per_minute: 1 } });
    const failed = await sdk(t.key).responses.create({ ...base, input: 'Too many tokens for my limit', stream: true }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(OpenAI.APIError);
    expect((failed as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
    expect(await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);
    expect(await stack.db.selectFrom('responses').select('id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);
    const rows = await stack.db.selectFrom('requests').select('status').where('tenant_id', '=', t.tenantId).execute();
    expect(rows).toEqual([{ status: 'failed' }]);
  });

  it('create({stream: true}) iterates the same events', async () => {
    const stream = await client.responses.create({ ...base, input: 'Again', stream: true, store: false });
    const types: string[] = [];
    let completed: OpenAI.Responses.Response | null = null;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.completed' || event.type === 'response.incomplete') completed = event.response;
    }
    expect(types[0]).toBe('response.created');
    expect((completed as unknown as { store: boolean } | null)?.store).toBe(false);
    expect(await ledger(completed?.id ?? '')).toHaveLength(1);
  });
});

describe('resuming a stream', () => {
  type Event = { type: string; sequence_number: number; [k: string]: unknown };

  /** Reads SSE events from `res` until `stop(event)` (then drops the connection) or the end. */
  async function readEvents(res: globalThis.Response, stop: (e: Event) => boolean = () => false, controller?: AbortController): Promise<Array<{ id: string | null; event: Event }>> {
    const out: Array<{ id: string | null; event: Event }> = [];
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return out;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const id = /^id: (.*)$/m.exec(block)?.[1] ?? null;
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (data === undefined) continue;
        const event = JSON.parse(data) as Event;
        out.push({ id, event });
        if (stop(event)) {
          controller?.abort();
          await reader.cancel().catch(() => undefined);
          return out;
        }
      }
    }
  }

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${stack.url}/v1${path}`, { headers: { Authorization: `Bearer ${tenant.key}`, ...headers } });

  it('a detached stream dropped after its first delta resumes after the last sequence number (starting_after or Last-Event-ID), the same events; the SDK reads it', async () => {
    const controller = new AbortController();
    const res = await fetch(`${stack.url}/v1/responses`, {
      method: 'POST', signal: controller.signal,
      headers: { Authorization: `Bearer ${tenant.key}`, 'Content-Type': 'application/json', 'X-Sluice-Stream-Detach': 'true' },
      body: JSON.stringify({ ...base, max_output_tokens: 16, input: 'Stream a long story', stream: true, store: false }),
    });
    expect(res.status).toBe(200);
    const seen = await readEvents(res, (e) => e.type === 'response.output_text.delta', controller);
    expect(seen.map((s) => s.id)).toEqual(seen.map((s) => String(s.event.sequence_number)));
    const last = seen.at(-1)!.event;
    const id = (seen[0]!.event.response as { id: string }).id;

    // The whole stream again, from the start: what was seen is its beginning.
    const full = (await readEvents(await get(`/responses/${id}?stream=true`))).map((s) => s.event);
    expect(full.slice(0, seen.length)).toEqual(seen.map((s) => s.event));
    expect(full.map((e) => e.sequence_number)).toEqual(full.map((_e, i) => i));
    const end = full.at(-1)!;
    expect(['response.completed', 'response.incomplete']).toContain(end.type);
    const final = end.response as { output_text: string; usage: unknown };
    expect(full.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')).toBe(final.output_text);

    // After the last event seen, by query and by header: the rest, the same events.
    const rest = (await readEvents(await get(`/responses/${id}?stream=true&starting_after=${last.sequence_number}`))).map((s) => s.event);
    expect(rest).toEqual(full.slice(last.sequence_number + 1));
    const byHeader = (await readEvents(await get(`/responses/${id}?stream=true`, { 'Last-Event-ID': String(last.sequence_number) }))).map((s) => s.event);
    expect(byHeader).toEqual(rest);
    // Billed once, however often it is read.
    expect(await ledger(id)).toHaveLength(1);

    // The SDK's retrieve({stream: true, starting_after}).
    const sdkStream = await client.responses.retrieve(id, { stream: true, starting_after: 1 });
    const sdkEvents: unknown[] = [];
    for await (const e of sdkStream) sdkEvents.push(e);
    expect(sdkEvents).toEqual(full.slice(2));
  });

  it('refuses a bad starting_after, starting_after without stream, and another tenant\'s response', async () => {
    const created = await client.responses.create({ ...base, input: 'x', store: false });
    for (const [path, param] of [[`?stream=true&starting_after=-1`, 'starting_after'], [`?starting_after=2`, 'starting_after'], [`?stream=yes`, 'stream'], [`?stream=true&after=1`, 'after']] as const) {
      const r = await get(`/responses/${created.id}${path}`);
      expect(r.status, path).toBe(400);
      expect(((await r.json()) as any).error.param).toBe(param);
    }
    const badHeader = await get(`/responses/${created.id}?stream=true`, { 'Last-Event-ID': 'x' });
    expect(((await badHeader.json()) as any).error.param).toBe('Last-Event-ID');
    const other = await stack.createTenantKey();
    const foreign = await fetch(`${stack.url}/v1/responses/${created.id}?stream=true`, { headers: { Authorization: `Bearer ${other.key}` } });
    expect(foreign.status).toBe(404);
    // Not stored: a plain retrieve is a 404, the stream is not.
    expect((await get(`/responses/${created.id}`)).status).toBe(404);
    expect((await get(`/responses/${created.id}?stream=true`)).status).toBe(200);
  });
});

describe('a batch of /v1/responses lines', () => {
  async function runBatch(c: OpenAI, lines: unknown[]) {
    const text = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
    const file = await c.files.create({ file: await toFile(Buffer.from(text), 'responses.jsonl'), purpose: 'batch' });
    const created = await c.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const b = await c.batches.retrieve(created.id);
      if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) return b;
      if (Date.now() > deadline) throw new Error(`batch ${created.id} timed out: ${JSON.stringify(b)}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  const line = (customId: string, body: Record<string, unknown>) => ({ custom_id: customId, method: 'POST', url: '/v1/responses', body });

  it('runs each line as a response: response objects in the output file, billed once each as batch usage', async () => {
    const t = await stack.createTenantKey();
    const c = sdk(t.key);
    const done = await runBatch(c, [
      line('a', { ...base, input: 'Batch one' }),
      line('b', { ...base, max_output_tokens: 64, instructions: 'Answer in JSON', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Batch two' }] }], text: { format: { type: 'json_object' } }, metadata: { line: 'b' } }),
    ]);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const text = await (await c.files.content(done.output_file_id ?? '')).text();
    const out = new Map(text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number; request_id: string; body: any } }).map((o) => [o.custom_id, o.response]));
    for (const id of ['a', 'b']) {
      const r = out.get(id);
      expect(r?.status_code, id).toBe(200);
      expect(r?.body).toMatchObject({ object: 'response', store: false, previous_response_id: null });
      expect(r?.body.id).toBe(`resp_${r?.request_id}`);
      expect(r?.body.output[0]).toMatchObject({ type: 'message', role: 'assistant' });
      expect(r?.body.output_text).toBe(r?.body.output[0].content[0].text);
      const rows = await stack.db.selectFrom('usage').select(['kind', 'input_tokens', 'output_tokens']).where('request_id', '=', r?.request_id ?? '').execute();
      expect(rows).toEqual([{ kind: 'batch', input_tokens: r?.body.usage.input_tokens, output_tokens: r?.body.usage.output_tokens }]);
    }
    expect(out.get('b')?.body).toMatchObject({ instructions: 'Answer in JSON', metadata: { line: 'b' }, text: { format: { type: 'json_object' } } });
    expect(() => JSON.parse(out.get('b')?.body.output_text) as unknown).not.toThrow();
    // Batch lines are not stored.
    expect(await stack.db.selectFrom('responses').select('id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);
  });

  it('fails validation for what a batch line cannot do, naming each field under body.', async () => {
    const t = await stack.createTenantKey();
    const done = await runBatch(sdk(t.key), [
      line('s', { ...base, input: 'x', store: true }),
      line('p', { ...base, input: 'x', previous_response_id: 'resp_abc' }),
      line('st', { ...base, input: 'x', stream: true }),
      line('w', { ...base, input: 'x', tools: [{ type: 'web_search' }] }),
      line('m', { ...base, input: 'x', max_output_tokens: 1_000_000 }),
      line('g', { ...base, input: 'x', text: { format: { type: 'json_schema', name: 'c', schema: { type: 'string', pattern: '^a$' } } } }),
      { custom_id: 'u', method: 'POST', url: '/v1/chat/completions', body: { ...base, input: 'x' } },
    ]);
    expect(done.status).toBe('failed');
    expect(done.errors?.data?.map((e) => [e.line, e.param])).toEqual([
      [1, 'body.store'], [2, 'body.previous_response_id'], [3, 'body.stream'], [4, 'body.tools[0].type'], [5, 'body.max_output_tokens'],
      [6, 'body.text.format.schema.pattern'], [7, 'url'],
    ]);
    expect(await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);
  });
});

describe('refused requests', () => {
  it.each<[string, Record<string, unknown>, string, string]>([
    ['a built-in tool', { tools: [{ type: 'web_search' }] }, 'tools[0].type', 'unsupported_tool'],
    ['file search', { tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }, 'tools[0].type', 'unsupported_tool'],
    ['code interpreter after a function tool', { tools: [{ type: 'function', name: 'f', parameters: {} }, { type: 'code_interpreter', container: { type: 'auto' } }] }, 'tools[1].type', 'unsupported_tool'],
    ['a custom tool', { tools: [{ type: 'custom', name: 'f' }] }, 'tools[0].type', 'unsupported_tool'],
    ['an unknown field', { top_k: 2 }, 'top_k', 'unrecognized_request_argument'],
    ['a function_call_output of no call', { input: [{ type: 'function_call_output', call_id: 'c', output: 'x' }] }, 'input[0].call_id', 'invalid_value'],
    ['an image part', { input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/x.png' }] }] }, 'input[0].content[0].type', 'unsupported_parameter'],
    ['a schema keyword the grammar cannot enforce', { text: { format: { type: 'json_schema', name: 'c', strict: true, schema: { type: 'object', properties: { code: { type: 'string', pattern: '^[a-z]+$' } }, required: ['code'], additionalProperties: false } } } }, 'text.format.schema.properties.code.pattern', 'unsupported_parameter'],
    ['a json_schema without a name', { text: { format: { type: 'json_schema', schema: { type: 'object' } } } }, 'text.format.name', 'invalid_value'],
    ['too many output tokens', { max_output_tokens: 1_000_000 }, 'max_output_tokens', 'invalid_value'],
    ['reasoning', { reasoning: { effort: 'high' } }, 'reasoning', 'unsupported_parameter'],
    ['background', { background: true }, 'background', 'unsupported_parameter'],
    ['a malformed previous_response_id', { previous_response_id: 'chatcmpl-1' }, 'previous_response_id', 'invalid_value'],
    ['verbosity on llama.cpp', { text: { verbosity: 'low' } }, 'text.verbosity', 'unsupported_parameter'],
  ])('refuses %s with a 400 naming it, nothing written or billed', async (_name, extra, param, code) => {
    const t = await stack.createTenantKey();
    const r = await call(t.key, 'POST', '/responses', { ...base, input: 'x', ...extra });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ param, code, type: 'invalid_request_error' });
    expect(await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);
    expect(await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', t.tenantId).execute()).toEqual([]);
  });
});
