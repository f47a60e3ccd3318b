/**
 * Hostile values on their way to inference (issue 12 items 1 and 5), on the real stack: Temporal,
 * PostgreSQL and llama.cpp on the tiny GGUF (gibberish: shapes and counts only).
 * - The poison pill (`temperature: "hot"`) is refused with a 400 naming the field at every entry:
 *   an experiment variant, a chat body, a batch line.
 * - Past entry (written straight into the experiments table), it is refused at the backend
 *   boundary: the request fails with a clear 400, its reservation released, nothing billed, and
 *   the stack still serves another tenant (before the fix, node-llama-cpp's decode loop threw and
 *   the process running the inference worker died).
 * - A variant is authorized and reserved like a request for its own model: a model outside the
 *   tenant's allowed_models or the key's `model:` scopes is refused (403) and not billed; the
 *   reservation holds the variant model's price for the variant's max_tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { sql } from 'kysely';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { costMicros } from '../../domain/cost.js';
import { estimatePromptTokens } from '../../domain/chat-validation.js';

let stack: TestStack;

/** A second llama.cpp model on the same GGUF, far dearer, with a small output limit. */
const PRICEY = 'sluice-tiny-pricey';
const PRICEY_PRICE = { input_micros_per_mtok: 3_000_000_000, output_micros_per_mtok: 7_000_000_000 };
const PRICEY_MAX_OUTPUT = 64;
const messages = [{ role: 'user', content: 'hello there' }];

beforeAll(async () => {
  stack = await startTestStack();
  await addModel(stack, {
    id: PRICEY, context_length: 1024, max_output_tokens: PRICEY_MAX_OUTPUT,
    deployments: [{ id: `${PRICEY}-local`, provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf', price: PRICEY_PRICE }],
  });
});
afterAll(async () => {
  await stack?.stop();
});

async function call(key: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const chat = (key: string, body: Record<string, unknown>) => call(key, 'POST', '/v1/chat/completions', { model: 'sluice-tiny', messages, ...body });

/** A tenant with a tenant admin key (experiments) and a developer key (inference). */
async function tenant(opts: { limits?: Record<string, unknown>; developerScopes?: string[] } = {}) {
  const { tenantId, key: adminKey } = await stack.createTenantKey({ role: 'tenant_admin', ...(opts.limits ? { limits: opts.limits } : {}) });
  const dev = await stack.admin('POST', `/v1/admin/tenants/${tenantId}/keys`, { role: 'developer', ...(opts.developerScopes ? { scopes: opts.developerScopes } : {}) });
  expect(dev.status).toBe(201);
  return { tenantId, adminKey, devKey: dev.body.key as string };
}

/** An experiment on sluice-tiny whose two variants both set `overrides` (so every subject gets them). */
async function experiment(adminKey: string, overrides: Record<string, unknown>) {
  const r = await call(adminKey, 'POST', '/v1/admin/experiments', {
    name: 'exp', model: 'sluice-tiny', variants: [{ name: 'a', overrides }, { name: 'b', overrides }],
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id as string;
}

/** The tenant's one request, its reservation (if any) and its usage rows. */
async function ledgerOf(tenantId: string) {
  const requests = await stack.db.selectFrom('requests').selectAll().where('tenant_id', '=', tenantId).execute();
  expect(requests).toHaveLength(1);
  const request = requests[0]!;
  const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', request.id).executeTakeFirst();
  const usage = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', request.id).execute();
  return { request, reservation, usage };
}

describe('the poison pill at every entry', () => {
  it('an experiment variant: 400 naming the field, for every bad type or range', async () => {
    const { adminKey } = await tenant();
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ temperature: 'hot' }, 'variants[1].overrides.temperature', 'invalid_type'],
      [{ temperature: 9 }, 'variants[1].overrides.temperature', 'invalid_value'],
      [{ top_p: 'all' }, 'variants[1].overrides.top_p', 'invalid_type'],
      [{ max_tokens: '100' }, 'variants[1].overrides.max_tokens', 'invalid_type'],
      [{ max_tokens: 0 }, 'variants[1].overrides.max_tokens', 'invalid_value'],
      [{ model: PRICEY, max_tokens: PRICEY_MAX_OUTPUT + 1 }, 'variants[1].overrides.max_tokens', 'invalid_value'],
      [{ model: 17 }, 'variants[1].overrides.model', 'invalid_type'],
      [{ seed: 1 }, 'variants[1].overrides.seed', 'invalid_value'],
    ];
    for (const [overrides, param, code] of cases) {
      const r = await call(adminKey, 'POST', '/v1/admin/experiments', {
        name: 'poison', model: 'sluice-tiny', variants: [{ name: 'a' }, { name: 'b', overrides }],
      });
      expect(r.status, JSON.stringify(overrides)).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param, code });
    }
    const missing = await call(adminKey, 'POST', '/v1/admin/experiments', {
      name: 'poison', model: 'sluice-tiny', variants: [{ name: 'a' }, { name: 'b', overrides: { model: 'no-such-model' } }],
    });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ param: 'variants[1].overrides.model', code: 'model_not_found' });
    expect(await stack.db.selectFrom('experiments').select('id').where('name', '=', 'poison').execute()).toHaveLength(0);
  });

  it('a chat body: 400 naming the field, no request started', async () => {
    const { tenantId, devKey } = await tenant();
    for (const [body, param] of [[{ temperature: 'hot' }, 'temperature'], [{ top_p: '1' }, 'top_p'], [{ seed: 'x' }, 'seed'], [{ max_tokens: 2.5 }, 'max_tokens']] as const) {
      const r = await chat(devKey, body);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param, code: 'invalid_type' });
    }
    expect(await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenantId).execute()).toHaveLength(0);
  });

  it('a batch line: the batch fails validation naming the line and field, nothing runs or is billed', async () => {
    const { tenantId, devKey } = await tenant();
    const client = new OpenAI({ apiKey: devKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const line = { custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body: { model: 'sluice-tiny', messages, max_tokens: 2, temperature: 'hot' } };
    const file = await client.files.create({ file: await toFile(Buffer.from(`${JSON.stringify(line)}\n`), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 60_000;
    let batch = await client.batches.retrieve(created.id);
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(batch.status) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 150));
      batch = await client.batches.retrieve(created.id);
    }
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data?.[0]).toMatchObject({ line: 1, code: 'invalid_type', param: 'body.temperature' });
    expect(await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', tenantId).execute()).toHaveLength(0);
  });
});

describe('the backend boundary, for a value that got past entry', () => {
  it('a stored override of "hot" fails the request with a clear 400; released, not billed; the stack serves on', async () => {
    const victim = await tenant();
    const expId = await experiment(victim.adminKey, { temperature: 0.5 });
    // As a row written before the API checked values (or by hand): the API never sees it.
    await sql`update experiment_variants set overrides = '{"temperature":"hot"}'::jsonb where experiment_id = ${expId}`.execute(stack.db);

    const r = await chat(victim.devKey, { max_tokens: 4 });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' });
    expect(r.body.error.message).toContain('temperature');
    const { request, reservation, usage } = await ledgerOf(victim.tenantId);
    expect(request.status).toBe('failed');
    expect(reservation?.status).toBe('released');
    expect(usage).toEqual([]);

    // The inference worker is alive: another tenant (and this one, without an experiment) is served.
    const other = await tenant();
    const ok = await chat(other.devKey, { max_tokens: 4 });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.usage.completion_tokens).toBeGreaterThan(0);
    expect(ok.body.usage.completion_tokens).toBeLessThanOrEqual(4);
  });
});

describe('a variant is authorized and reserved for its own model', () => {
  it("refuses a variant's model outside the tenant's allowed_models (403), before reserving; nothing billed", async () => {
    const t = await tenant();
    await experiment(t.adminKey, { model: PRICEY });
    // The operator narrows the tenant afterwards: the experiment stays, its variant may no longer run.
    const patched = await stack.admin('PATCH', `/v1/admin/tenants/${t.tenantId}`, { limits: { allowed_models: ['sluice-tiny'] } });
    expect(patched.status).toBe(200);
    const r = await chat(t.devKey, { max_tokens: 4 });
    expect(r.status).toBe(403);
    expect(r.body.error).toMatchObject({ type: 'permission_error', code: 'model_not_allowed' });
    const { request, reservation, usage } = await ledgerOf(t.tenantId);
    expect(request.status).toBe('failed');
    expect(reservation).toBeUndefined();
    expect(usage).toEqual([]);
    // And a tenant admin of a narrowed tenant cannot create such a variant at all.
    const refused = await call(t.adminKey, 'POST', '/v1/admin/experiments', {
      name: 'exp2', model: 'sluice-tiny', variants: [{ name: 'a' }, { name: 'b', overrides: { model: PRICEY } }],
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ param: 'variants[1].overrides.model', code: 'model_not_allowed' });
  });

  it("refuses a variant's model outside the requesting key's model scopes (403); nothing billed", async () => {
    const t = await tenant({ developerScopes: ['model:sluice-tiny'] });
    await experiment(t.adminKey, { model: PRICEY });
    const r = await chat(t.devKey, { max_tokens: 4 });
    expect(r.status).toBe(403);
    expect(r.body.error).toMatchObject({ code: 'model_not_allowed' });
    const { reservation, usage } = await ledgerOf(t.tenantId);
    expect(reservation).toBeUndefined();
    expect(usage).toEqual([]);
  });

  it("reserves the variant model's price for the variant's max_tokens, and bills that model", async () => {
    const t = await tenant();
    const variantMaxTokens = 5;
    await experiment(t.adminKey, { model: PRICEY, max_tokens: variantMaxTokens });
    // No max_tokens from the caller: on the requested model that would reserve its limit (512 tokens).
    const r = await chat(t.devKey, {});
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.model).toBe(PRICEY);
    expect(r.body.usage.completion_tokens).toBeLessThanOrEqual(variantMaxTokens);
    await settled(stack, r.body);
    const { reservation, usage } = await ledgerOf(t.tenantId);
    const promptEstimate = estimatePromptTokens(messages as Parameters<typeof estimatePromptTokens>[0]);
    expect(reservation).toMatchObject({
      status: 'settled',
      est_tokens: promptEstimate + variantMaxTokens,
      est_cost_micros: costMicros({ inputMicrosPerMtok: PRICEY_PRICE.input_micros_per_mtok, outputMicrosPerMtok: PRICEY_PRICE.output_micros_per_mtok }, promptEstimate, variantMaxTokens),
    });
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({ model: PRICEY, deployment_id: `${PRICEY}-local`, variant: expect.any(String) });
    expect(usage[0]!.cost_micros).toBe(costMicros(
      { inputMicrosPerMtok: PRICEY_PRICE.input_micros_per_mtok, outputMicrosPerMtok: PRICEY_PRICE.output_micros_per_mtok },
      usage[0]!.input_tokens, usage[0]!.output_tokens,
    ));
  });
});
