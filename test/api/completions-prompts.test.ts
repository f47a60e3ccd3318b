/**
 * `POST /v1/completions` with several prompts (`prompt: [...]`) on the real stack, with the
 * official `openai` client: one `completionRequest` workflow, one choice per prompt, usage summed;
 * each prompt its own billed usage row and audit row under the request's one reservation (which
 * held every prompt's worst case and ends with nothing held); on llama.cpp (the generated tiny
 * model: shapes, counts, determinism) and an openai-compatible upstream (the fake). A failing
 * prompt bills nothing of its own; a retry with the same `Idempotency-Key` bills nothing twice;
 * the job route answers what the sync route did, `echo` included. A later prompt falls back to
 * the next deployment on its own (its failed attempts' tokens unbilled, each prompt's row on the
 * deployment that served it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { completionWorkflowId } from '../../contracts/ids.js';
import { MAX_COMPLETION_PROMPTS } from '../../contracts/completions.js';
import { DEMO_GGUF } from '../../scripts/lib/bootstrap.js';

let stack: TestStack;
let upstream: FakeUpstream;

/** Every prompt token costs 1 micro-USD, every completion token 2. */
const PRICE = { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 };

beforeAll(async () => {
  upstream = await startFakeUpstream();
  stack = await startTestStack();
  await addModel(stack, {
    id: 'tiny-priced', context_length: 1024, max_output_tokens: 64,
    deployments: [{ id: 'tiny-priced-local', provider: 'llama-cpp', pool: 'local', gguf_path: DEMO_GGUF, price: PRICE }],
  });
  await addModel(stack, {
    id: 'remote-priced', context_length: 1024, max_output_tokens: 64,
    deployments: [{ id: 'remote-priced-up', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'gpt-fake-instruct', price: PRICE }],
  });
  // The upstream first, llama.cpp when it cannot serve.
  await addModel(stack, {
    id: 'fallback-priced', context_length: 1024, max_output_tokens: 64,
    deployments: [
      { id: 'fallback-up', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'gpt-fake-instruct', priority: 0, price: PRICE },
      { id: 'fallback-local', provider: 'llama-cpp', pool: 'local', gguf_path: DEMO_GGUF, priority: 1, price: PRICE },
    ],
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

const requestIdOf = (id: string) => id.replace(/^cmpl-/, '');

async function tenantClient(limits?: Record<string, unknown>) {
  const t = await stack.createTenantKey(limits ? { limits } : {});
  return { ...t, client: new OpenAI({ apiKey: t.key, baseURL: `${stack.url}/v1`, maxRetries: 0 }) };
}

async function usageOf(requestId: string) {
  return stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).orderBy('id').execute();
}

async function auditOf(requestId: string) {
  return stack.db.selectFrom('audit_log').select(['action', 'data']).where('target', '=', `request:${requestId}`).orderBy('seq').execute();
}

/** The tenant's spend and token counters once its requests ended: what was billed, nothing held. */
async function holdings(tenantId: string) {
  const spend = await stack.db.selectFrom('tenant_spend').select(['spent_micros', 'reserved_micros']).where('tenant_id', '=', tenantId).execute();
  const counters = await stack.db.selectFrom('quota_counters').select('tokens').where('tenant_id', '=', tenantId).execute();
  return {
    spent: spend.reduce((n, s) => n + Number(s.spent_micros), 0),
    reserved: spend.reduce((n, s) => n + Number(s.reserved_micros), 0),
    tokens: counters.reduce((n, c) => n + Number(c.tokens), 0),
  };
}

async function getJob(key: string, id: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${key}` } });
  return { status: res.status, body: await res.json() };
}

describe('several prompts on llama.cpp', () => {
  it('answers one choice per prompt in one workflow, each prompt billed and audited, the reservation ending with nothing held', async () => {
    const { tenantId, client } = await tenantClient();
    const prompts = ['Once upon a time', 'The quick brown fox', 'Hello'];
    const completion = await client.completions.create({ model: 'tiny-priced', prompt: prompts, max_tokens: 6, temperature: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of completion.choices) {
      expect(typeof c.text).toBe('string');
      expect(['stop', 'length']).toContain(c.finish_reason);
    }
    const requestId = requestIdOf(completion.id);
    expect((await stack.client.workflow.getHandle(completionWorkflowId(requestId)).describe()).type).toBe('completionRequest');

    const rows = await usageOf(requestId);
    expect(rows.map((r) => [r.step, r.billable])).toEqual([['infer', true], ['infer:1', true], ['infer:2', true]]);
    const sum = (f: (r: (typeof rows)[number]) => number) => rows.reduce((n, r) => n + f(r), 0);
    expect(completion.usage).toEqual({
      prompt_tokens: sum((r) => r.input_tokens), completion_tokens: sum((r) => r.output_tokens), total_tokens: sum((r) => r.input_tokens + r.output_tokens),
    });
    for (const r of rows) expect(Number(r.cost_micros)).toBe(r.input_tokens + 2 * r.output_tokens);

    const audit = await auditOf(requestId);
    expect(audit.map((a) => a.action)).toEqual(['request.prompt_settled', 'request.prompt_settled', 'request.prompt_settled', 'request.succeeded']);
    expect(audit.slice(0, 3).map((a) => (a.data as { prompt_index: number }).prompt_index)).toEqual([0, 1, 2]);
    expect((audit[3]?.data as { cost_micros: number }).cost_micros).toBe(sum((r) => Number(r.cost_micros)));

    const reservation = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', requestId).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('settled');
    expect(await holdings(tenantId)).toEqual({ spent: sum((r) => Number(r.cost_micros)), reserved: 0, tokens: sum((r) => r.input_tokens + r.output_tokens) });

    // Each choice is what the prompt alone gives (greedy decoding is deterministic).
    const alone = await client.completions.create({ model: 'tiny-priced', prompt: prompts[1] as string, max_tokens: 6, temperature: 0 });
    expect(completion.choices[1]?.text).toBe(alone.choices[0]?.text);
    expect(rows[1]?.input_tokens).toBe(alone.usage?.prompt_tokens);
  });

  it('echoes each prompt before its choice, and the job route answers the same body', async () => {
    const { key, client } = await tenantClient();
    const prompts = ['Echo one', 'Echo two'];
    const completion = await client.completions.create({ model: 'tiny-priced', prompt: prompts, echo: true, max_tokens: 3, temperature: 0 });
    expect(completion.choices.map((c) => c.text.startsWith(prompts[c.index] as string))).toEqual([true, true]);
    const job = await getJob(key, requestIdOf(completion.id));
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({ object: 'text_completion.job', status: 'succeeded' });
    expect(job.body.result).toEqual(JSON.parse(JSON.stringify(completion)));
    // The request row keeps the completion only, no prompt.
    const row = await stack.db.selectFrom('requests').select('result').where('id', '=', requestIdOf(completion.id)).executeTakeFirstOrThrow();
    expect(JSON.stringify(row.result)).not.toContain('Echo one');
  });

  it('answers a one-prompt echo on the job route as the sync route did', async () => {
    const { key, client } = await tenantClient();
    const completion = await client.completions.create({ model: 'tiny-priced', prompt: 'Echo alone', echo: true, max_tokens: 3, temperature: 0 });
    expect(completion.choices[0]?.text.startsWith('Echo alone')).toBe(true);
    expect((await getJob(key, requestIdOf(completion.id))).body.result).toEqual(JSON.parse(JSON.stringify(completion)));
  });

  it('reserves every prompt\'s worst case at once: a budget for two prompts refuses three with a 429, nothing billed', async () => {
    const probe = await tenantClient();
    const one = await probe.client.completions.create({ model: 'tiny-priced', prompt: 'p', max_tokens: 8, temperature: 0 });
    const held = await stack.db.selectFrom('reservations').select('est_cost_micros').where('request_id', '=', requestIdOf(one.id)).executeTakeFirstOrThrow();
    const { tenantId, client } = await tenantClient({ monthly_budget_micros: 2 * Number(held.est_cost_micros) });
    const err = await client.completions.create({ model: 'tiny-priced', prompt: ['p', 'p', 'p'], max_tokens: 8, temperature: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(429);
    expect(await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', tenantId).execute()).toEqual([]);
    const two = await client.completions.create({ model: 'tiny-priced', prompt: ['p', 'p'], max_tokens: 8, temperature: 0 });
    expect(two.choices).toHaveLength(2);
    expect((await holdings(tenantId)).reserved).toBe(0);
  });

  it(`refuses more than ${MAX_COMPLETION_PROMPTS} prompts with a 400 naming prompt, before any request exists`, async () => {
    const { tenantId, key } = await tenantClient();
    const res = await fetch(`${stack.url}/v1/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-priced', prompt: Array.from({ length: MAX_COMPLETION_PROMPTS + 1 }, () => 'x'), max_tokens: 2 }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { param: string; type: string; message: string } };
    expect(body.error).toMatchObject({ param: 'prompt', type: 'invalid_request_error' });
    expect(body.error.message).toContain(String(MAX_COMPLETION_PROMPTS));
    expect(await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenantId).execute()).toEqual([]);
  });
});

describe('several prompts on an openai-compatible upstream', () => {
  it('sends each prompt to the upstream\'s /completions and bills each at its usage', async () => {
    upstream.setBehaviour({ kind: 'succeed' });
    const { tenantId, client } = await tenantClient();
    const prompts = ['one two three', 'four five'];
    const before = upstream.requests.length;
    const completion = await client.completions.create({ model: 'remote-priced', prompt: prompts, max_tokens: 3 });
    const sent = upstream.requests.slice(before).filter((r) => r.path === '/v1/completions');
    expect(sent.map((r) => (r.body as { prompt: unknown }).prompt)).toEqual(prompts);
    expect(completion.choices.map((c) => [c.index, c.text.split(' ').length, c.finish_reason])).toEqual([[0, 3, 'length'], [1, 3, 'length']]);
    expect(completion.usage).toEqual({ prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 });
    const rows = await usageOf(requestIdOf(completion.id));
    expect(rows.map((r) => [r.step, r.input_tokens, r.output_tokens, Number(r.cost_micros)])).toEqual([['infer', 3, 3, 9], ['infer:1', 2, 3, 8]]);
    expect(await holdings(tenantId)).toEqual({ spent: 17, reserved: 0, tokens: 11 });
  });

  it('fails the request when a prompt fails: the prompt served before it stays billed, the failed one bills nothing, nothing stays held', async () => {
    upstream.setBehaviour([{ kind: 'succeed' }, { kind: 'fail', status: 400, message: 'the upstream refuses this prompt' }]);
    const { tenantId, client } = await tenantClient();
    const err = await client.completions.create({ model: 'remote-priced', prompt: ['served first', 'refused second', 'never tried'], max_tokens: 3 }).catch((e: unknown) => e);
    upstream.setBehaviour({ kind: 'succeed' });
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBeGreaterThanOrEqual(400);
    const request = await stack.db.selectFrom('requests').select(['id', 'status']).where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
    expect(request.status).toBe('failed');
    const rows = await usageOf(request.id);
    expect(rows.filter((r) => r.billable).map((r) => [r.step, r.input_tokens, r.output_tokens])).toEqual([['infer', 2, 3]]);
    expect(rows.some((r) => r.billable && r.step.startsWith('infer:1'))).toBe(false);
    expect((await auditOf(request.id)).map((a) => a.action)).toEqual(['request.prompt_settled', 'request.failed']);
    const reservation = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', request.id).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('released');
    expect(await holdings(tenantId)).toEqual({ spent: 2 + 2 * 3, reserved: 0, tokens: 5 });
  });

  it('cancels at the prompt it reaches: the prompt served before stays billed, the running call is dropped, nothing stays held', async () => {
    upstream.setBehaviour([{ kind: 'succeed' }, { kind: 'hang' }]);
    const { tenantId, key } = await tenantClient();
    const calls = upstream.calls;
    const disconnects = upstream.disconnects;
    const pending = fetch(`${stack.url}/v1/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'remote-priced', prompt: ['served first', 'hangs second', 'never tried'], max_tokens: 3 }),
    }).then((r) => r.status);
    await upstream.waitForCalls(calls + 2);
    const request = await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
    // Prompt 0 is settled, and the rest of the reservation is still held for the prompts to come.
    const midway = await holdings(tenantId);
    const hold = await stack.db.selectFrom('reservations').select(['status', 'est_cost_micros']).where('request_id', '=', request.id).executeTakeFirstOrThrow();
    expect(hold.status).toBe('held');
    expect(midway.spent).toBe(2 + 2 * 3);
    expect(midway.reserved).toBe(Number(hold.est_cost_micros));
    expect(midway.reserved).toBeGreaterThanOrEqual(2 * (2 + 2 * 3));
    const cancel = await fetch(`${stack.url}/v1/jobs/${request.id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    expect(cancel.status).toBe(200);
    expect(((await cancel.json()) as { status: string }).status).toBe('cancelled');
    await upstream.waitForDisconnects(disconnects + 1);
    expect(await pending).toBeGreaterThanOrEqual(400);
    upstream.setBehaviour({ kind: 'succeed' });
    expect((await usageOf(request.id)).filter((r) => r.billable).map((r) => r.step)).toEqual(['infer']);
    expect(upstream.calls - calls).toBe(2);
    const reservation = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', request.id).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('released');
    expect(await holdings(tenantId)).toEqual({ spent: 2 + 2 * 3, reserved: 0, tokens: 5 });
  });

  it('answers a retry with the same Idempotency-Key from the first run, billed once', async () => {
    upstream.setBehaviour({ kind: 'succeed' });
    const { tenantId, client } = await tenantClient();
    const body = { model: 'remote-priced', prompt: ['alpha beta', 'gamma'], max_tokens: 2 };
    const options = { headers: { 'Idempotency-Key': 'several-prompts-1' } };
    const calls = upstream.calls;
    const first = await client.completions.create(body, options);
    const again = await client.completions.create(body, options);
    expect(again).toEqual(first);
    expect(upstream.calls - calls).toBe(2);
    expect((await usageOf(requestIdOf(first.id))).map((r) => r.step)).toEqual(['infer', 'infer:1']);
    expect((await holdings(tenantId)).spent).toBe(first.usage!.prompt_tokens + 2 * first.usage!.completion_tokens);
  });
});

describe('a later prompt falling back to the next deployment', () => {
  it('serves prompt 1 on the next deployment when its attempts on the first fail: each prompt\'s row on its own deployment, the failed attempts\' tokens unbilled, nothing held', async () => {
    // Prompt 0 is served by the upstream; prompt 1's three attempts there spend tokens but answer no choice.
    const spent = { kind: 'succeed', choices: 'omit', usage: { promptTokens: 7, completionTokens: 3 } } as const;
    upstream.setBehaviour([{ kind: 'succeed' }, spent]);
    const { tenantId, client } = await tenantClient();
    const calls = upstream.calls;
    const completion = await client.completions.create({ model: 'fallback-priced', prompt: ['served upstream first', 'then falls back'], max_tokens: 3, temperature: 0 });
    upstream.setBehaviour({ kind: 'succeed' });
    expect(upstream.calls - calls).toBe(4);
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(completion.choices[0]?.text.split(' ')).toHaveLength(3);

    const requestId = requestIdOf(completion.id);
    const rows = await usageOf(requestId);
    expect(rows.map((r) => [r.step, r.deployment_id, r.billable])).toEqual([
      ['infer', 'fallback-up', true], ['infer:1:failed:fallback-up', 'fallback-up', false], ['infer:1', 'fallback-local', true],
    ]);
    // The three failed attempts' tokens, priced but not billed.
    expect(rows[1]).toMatchObject({ input_tokens: 21, output_tokens: 9, cost_micros: 21 + 2 * 9 });
    const billed = rows.filter((r) => r.billable);
    const sum = (f: (r: (typeof rows)[number]) => number) => billed.reduce((n, r) => n + f(r), 0);
    for (const r of billed) expect(Number(r.cost_micros)).toBe(r.input_tokens + 2 * r.output_tokens);
    expect(completion.usage).toEqual({ prompt_tokens: sum((r) => r.input_tokens), completion_tokens: sum((r) => r.output_tokens), total_tokens: sum((r) => r.input_tokens + r.output_tokens) });

    const audit = await auditOf(requestId);
    expect(audit.map((a) => [a.action, (a.data as { deployment?: string }).deployment])).toEqual([
      ['request.prompt_settled', 'fallback-up'], ['request.prompt_settled', 'fallback-local'], ['request.succeeded', 'fallback-local'],
    ]);
    const reservation = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', requestId).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('settled');
    // The reservation's remainder released: the counters are the settled sum (the unbilled row adds nothing).
    expect(await holdings(tenantId)).toEqual({ spent: sum((r) => Number(r.cost_micros)), reserved: 0, tokens: sum((r) => r.input_tokens + r.output_tokens) });
  });
});
