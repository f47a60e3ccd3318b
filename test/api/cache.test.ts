/**
 * The response cache (issue 15) on the real stack: Temporal, PostgreSQL and llama.cpp on the tiny
 * GGUF (gibberish: equalities and counts, never text). A hit must skip a real generation: its
 * workflow history schedules no `infer` activity, while the miss before it ran one on llama.cpp.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { chatWorkflowId } from '../../contracts/ids.js';
import { DEMO_GGUF } from '../../scripts/lib/bootstrap.js';
import { putCacheEntry } from '../../db/repositories/cache.js';

let stack: TestStack;
const MODEL = 'cached-tiny';
/** The model's cache price: a tenth of its input price. */
const CACHE_PRICE = 100_000;

interface Tenant { tenantId: string; key: string; keyId: string }
let a: Tenant;
let b: Tenant;
let off: Tenant;

beforeAll(async () => {
  stack = await startTestStack();
  await addModel(stack, {
    id: MODEL, context_length: 1024, max_output_tokens: 64, cache_micros_per_mtok: CACHE_PRICE,
    deployments: [{ id: 'cached-tiny-local', provider: 'llama-cpp', pool: 'local', gguf_path: DEMO_GGUF, price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 } }],
  });
  a = await stack.createTenantKey();
  b = await stack.createTenantKey();
  off = await stack.createTenantKey();
  for (const t of [a, b]) {
    const r = await stack.admin('PATCH', `/v1/admin/tenants/${t.tenantId}`, { cache: { enabled: true } });
    expect(r.status).toBe(200);
    expect(r.body.cache).toEqual({ enabled: true, ttl_seconds: null });
  }
}, 180_000);
afterAll(async () => {
  await stack?.stop();
});

/** A fresh prompt (so tests never share entries) with deterministic sampling unless overridden. */
function body(extra: Record<string, unknown> = {}, prompt = `cache ${randomBytes(4).toString('hex')}`) {
  return { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 8, temperature: 0, ...extra };
}

async function chat(key: string, payload: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(payload),
  });
  const json = await res.json() as any;
  const requestId = typeof json.id === 'string' ? json.id.replace(/^chatcmpl-/, '') : null;
  // Returns once the request is settled: a miss's answer leaves before its entry is stored
  // (README "When a sync answer leaves"), and the tests' next request must find it.
  if (requestId !== null) await settled(stack, requestId);
  return { status: res.status, cache: res.headers.get('x-sluice-cache'), body: json, requestId };
}

/** How many `infer` activities the request's workflow scheduled (a hit schedules none). */
async function inferActivities(requestId: string): Promise<number> {
  const history = await stack.client.workflow.getHandle(chatWorkflowId(requestId)).fetchHistory();
  return (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'infer').length;
}

async function usageRow(requestId: string) {
  return stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).where('step', '=', 'infer').executeTakeFirstOrThrow();
}

async function entries(tenantId: string): Promise<number> {
  const row = await stack.db.selectFrom('response_cache').select((eb) => eb.fn.countAll<number>().as('n')).where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('response cache', () => {
  it('answers a second identical deterministic request from the cache: same content and usage, header hit, no generation, ledger cached at the cache price', async () => {
    const req = body();
    const first = await chat(a.key, req);
    expect(first.status).toBe(200);
    expect(first.cache).toBe('miss');
    const second = await chat(a.key, req);
    expect(second.status).toBe(200);
    expect(second.cache).toBe('hit');
    expect(second.body.id).not.toBe(first.body.id);
    expect(second.body.choices).toEqual(first.body.choices);
    expect(second.body.usage).toEqual(first.body.usage);
    expect(await inferActivities(first.requestId)).toBe(1);
    expect(await inferActivities(second.requestId)).toBe(0);

    const missRow = await usageRow(first.requestId);
    const hitRow = await usageRow(second.requestId);
    expect(missRow.cached).toBe(false);
    expect(hitRow.cached).toBe(true);
    expect(hitRow.billable).toBe(true);
    expect([hitRow.input_tokens, hitRow.output_tokens]).toEqual([first.body.usage.prompt_tokens, first.body.usage.completion_tokens]);
    const tokens = first.body.usage.prompt_tokens + first.body.usage.completion_tokens;
    expect(hitRow.cost_micros).toBe(Math.ceil((tokens * CACHE_PRICE) / 1_000_000));
    expect(missRow.cost_micros).toBe(Math.ceil((first.body.usage.prompt_tokens * 1_000_000 + first.body.usage.completion_tokens * 2_000_000) / 1_000_000));
    // The hit's reservation was taken and settled as usual.
    const reservation = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', second.requestId).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('settled');
    // A retry of an idempotent request answers its stored completion with the same header.
    const idem = { 'Idempotency-Key': `idem-${randomBytes(4).toString('hex')}` };
    const once = await chat(a.key, req, idem);
    const retried = await chat(a.key, req, idem);
    expect([once.cache, retried.cache]).toEqual(['hit', 'hit']);
    expect(retried.body).toEqual(once.body);
  });

  it('a request with an explicit seed is cached too', async () => {
    const req = body({ temperature: 0.7, seed: 42 });
    expect((await chat(a.key, req)).cache).toBe('miss');
    const hit = await chat(a.key, req);
    expect(hit.cache).toBe('hit');
    expect(await inferActivities(hit.requestId)).toBe(0);
  });

  it('never caches a non-deterministic request (temperature 0.7, no seed): no header, both generated, no entry', async () => {
    const before = await entries(a.tenantId);
    const req = body({ temperature: 0.7 });
    const first = await chat(a.key, req);
    const second = await chat(a.key, req);
    for (const r of [first, second]) {
      expect(r.status).toBe(200);
      expect(r.cache).toBeNull();
      expect(await inferActivities(r.requestId)).toBe(1);
      expect((await usageRow(r.requestId)).cached).toBe(false);
    }
    expect(await entries(a.tenantId)).toBe(before);
  });

  it('never crosses tenants: the same request from another tenant is a miss and generated', async () => {
    const req = body();
    expect((await chat(a.key, req)).cache).toBe('miss');
    expect((await chat(a.key, req)).cache).toBe('hit');
    const other = await chat(b.key, req);
    expect(other.cache).toBe('miss');
    expect(await inferActivities(other.requestId)).toBe(1);
  });

  it('Cache-Control: no-store neither looks up nor stores; no-cache skips the lookup but stores', async () => {
    const req = body();
    const stored = await entries(a.tenantId);
    const noStore = await chat(a.key, req, { 'Cache-Control': 'no-store' });
    expect(noStore.cache).toBeNull();
    expect(await inferActivities(noStore.requestId)).toBe(1);
    expect(await entries(a.tenantId)).toBe(stored);
    // Nothing was stored by no-store: a plain request misses.
    expect((await chat(a.key, req)).cache).toBe('miss');
    expect(await entries(a.tenantId)).toBe(stored + 1);
    // Now cached; no-cache generates anyway and replaces the entry.
    const noCache = await chat(a.key, req, { 'Cache-Control': 'no-cache' });
    expect(noCache.cache).toBe('miss');
    expect(await inferActivities(noCache.requestId)).toBe(1);
    expect(await entries(a.tenantId)).toBe(stored + 1);
    expect((await chat(a.key, req)).cache).toBe('hit');
  });

  it('a tenant with the cache off is never consulted, unless a request sends X-Sluice-Cache: force', async () => {
    const req = body();
    expect((await chat(off.key, req)).cache).toBeNull();
    expect((await chat(off.key, req, { 'X-Sluice-Cache': 'force' })).cache).toBe('miss');
    const forced = await chat(off.key, req, { 'X-Sluice-Cache': 'force' });
    expect(forced.cache).toBe('hit');
    expect(await inferActivities(forced.requestId)).toBe(0);
    expect((await chat(off.key, req)).cache).toBeNull();
    const bad = await chat(off.key, req, { 'X-Sluice-Cache': 'always' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ param: 'X-Sluice-Cache', code: 'invalid_value' });
  });

  it('admin invalidation by tenant and model makes the next request a miss; another tenant admin cannot touch it (404)', async () => {
    const req = body();
    await chat(a.key, req);
    expect((await chat(a.key, req)).cache).toBe('hit');
    const bAdmin = await stack.createTenantKey({ role: 'tenant_admin' });
    const cross = await fetch(`${stack.url}/v1/admin/cache?tenant=${a.tenantId}&model=${MODEL}`, { method: 'DELETE', headers: { Authorization: `Bearer ${bAdmin.key}` } });
    expect(cross.status).toBe(404);
    const developer = await fetch(`${stack.url}/v1/admin/cache?tenant=${a.tenantId}`, { method: 'DELETE', headers: { Authorization: `Bearer ${a.key}` } });
    expect(developer.status).toBe(403);
    const dropped = await stack.admin('DELETE', `/v1/admin/cache?tenant=${a.tenantId}&model=${MODEL}`);
    expect(dropped.status).toBe(200);
    expect(dropped.body.deleted_entries).toBeGreaterThan(0);
    expect(await entries(a.tenantId)).toBe(0);
    // The L1 copy in the control worker is dropped too (the tenant's generation moved on).
    const after = await chat(a.key, req);
    expect(after.cache).toBe('miss');
    expect(await inferActivities(after.requestId)).toBe(1);
    const audit = await stack.db.selectFrom('audit_log').select('action').where('action', '=', 'cache.invalidated').execute();
    expect(audit.length).toBe(1);
  });

  it('replays a cached response as a stream (the SDK stream works, header hit, no generation)', async () => {
    const req = body();
    const cached = await chat(a.key, req);
    expect(cached.cache).toBe('miss');
    const client = new OpenAI({ apiKey: a.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } } as OpenAI.ChatCompletionCreateParamsStreaming).withResponse();
    expect(response.headers.get('x-sluice-cache')).toBe('hit');
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(cached.body.choices[0].message.content);
    expect(finish).toBe(cached.body.choices[0].finish_reason);
    expect(usage).toEqual(cached.body.usage);
    const requestId = response.headers.get('x-sluice-job-id') as string;
    expect(await inferActivities(requestId)).toBe(0);
    expect((await usageRow(requestId)).cached).toBe(true);
  });

  it("caps one tenant's stored entries in the table: its own oldest go, another tenant's stay; a store after an invalidation is refused", async () => {
    const hostile = await stack.createTenantKey();
    const victim = await stack.createTenantKey();
    const gen = async (tenantId: string) => Number((await stack.db.selectFrom('tenants').select('cache_generation').where('id', '=', tenantId).executeTakeFirstOrThrow()).cache_generation);
    const put = async (tenantId: string, key: string, bytes: number, generation?: number) => putCacheEntry(stack.db, {
      tenantId, key, model: MODEL, generation: generation ?? await gen(tenantId), bytes, expiresAt: new Date(Date.now() + 60_000),
      body: { content: key, finishReason: 'stop', promptTokens: 1, completionTokens: 1, logprobs: null, deploymentId: 'cached-tiny-local', pool: 'local' },
    }, { maxBytes: 1000, maxEntries: 3 });
    expect(await put(victim.tenantId, 'v1', 100)).toBe(true);
    for (let i = 0; i < 10; i++) expect(await put(hostile.tenantId, `h${i}`, 100)).toBe(true);
    expect(await entries(hostile.tenantId)).toBe(3);
    const kept = await stack.db.selectFrom('response_cache').select('key').where('tenant_id', '=', hostile.tenantId).orderBy('key').execute();
    expect(kept.map((r) => r.key)).toEqual(['h7', 'h8', 'h9']);
    // Bytes: the newest entries that fit under 1000 stay, in order from the newest (b3, b2; b1
    // would pass the cap, so it and everything older go).
    for (const k of ['b1', 'b2', 'b3']) await put(hostile.tenantId, k, 400);
    const byBytes = await stack.db.selectFrom('response_cache').select(['key', 'bytes']).where('tenant_id', '=', hostile.tenantId).orderBy('key').execute();
    expect(byBytes.reduce((n, r) => n + r.bytes, 0)).toBeLessThanOrEqual(1000);
    expect(byBytes.map((r) => r.key)).toEqual(['b2', 'b3']);
    expect(await put(hostile.tenantId, 'too-big', 1001)).toBe(false);
    expect(await entries(victim.tenantId)).toBe(1);
    // A store whose lookup saw an older generation (an invalidation came since) is refused.
    const before = await gen(victim.tenantId);
    expect((await stack.admin('DELETE', `/v1/admin/cache?tenant=${victim.tenantId}`)).status).toBe(200);
    expect(await put(victim.tenantId, 'stale', 100, before)).toBe(false);
    expect(await entries(victim.tenantId)).toBe(0);
  });

  it('legacy completions follow the same rules: a second identical greedy prompt is a hit with the same text and usage', async () => {
    const prompt = `legacy ${randomBytes(4).toString('hex')}`;
    const call = async (headers: Record<string, string> = {}) => {
      const res = await fetch(`${stack.url}/v1/completions`, {
        method: 'POST', headers: { Authorization: `Bearer ${a.key}`, 'Content-Type': 'application/json', ...headers },
        body: JSON.stringify({ model: MODEL, prompt, max_tokens: 6, temperature: 0 }),
      });
      return { status: res.status, cache: res.headers.get('x-sluice-cache'), body: await res.json() as any };
    };
    const first = await call();
    const second = await call();
    expect([first.status, second.status]).toEqual([200, 200]);
    expect([first.cache, second.cache]).toEqual(['miss', 'hit']);
    expect(second.body.choices).toEqual(first.body.choices);
    expect(second.body.usage).toEqual(first.body.usage);
    expect((await call({ 'Cache-Control': 'no-store' })).cache).toBeNull();
  });

  it("erasing a tenant removes its cache entries and no other tenant's", async () => {
    const req = body();
    await chat(a.key, req);
    await chat(b.key, req);
    expect(await entries(a.tenantId)).toBeGreaterThan(0);
    const bEntries = await entries(b.tenantId);
    expect(bEntries).toBeGreaterThan(0);
    const erased = await stack.admin('POST', `/v1/admin/tenants/${a.tenantId}/erase`, { confirm: true });
    expect(erased.status).toBe(200);
    expect(erased.body.erased.cache_entries).toBeGreaterThan(0);
    expect(await entries(a.tenantId)).toBe(0);
    expect(await entries(b.tenantId)).toBe(bEntries);
  });
});
