/**
 * The job routes for requests of every endpoint on the real stack: `GET /v1/jobs/{id}` finds a
 * legacy completion, an embeddings request and a response by their IDs (their own workflows, not
 * `chat-`), with the result in the endpoint's shape; `POST /v1/jobs/{id}/cancel` cancels a running
 * response and a running completion (the upstream call is dropped, the job is `cancelled`, nothing
 * billed); another tenant's job is a 404; a batch line is cancelled with its batch (409).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { DEMO_GGUF } from '../../scripts/lib/bootstrap.js';

let stack: TestStack;
let upstream: FakeUpstream;
let tenant: { tenantId: string; key: string };
let client: OpenAI;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  stack = await startTestStack();
  await addModel(stack, { id: 'remote', context_length: 4096, max_output_tokens: 64, deployments: [{ id: 'remote-up', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'gpt-fake' }] });
  await addModel(stack, { id: 'tiny-embed', kind: 'embeddings', context_length: 1024, max_output_tokens: 1, deployments: [{ provider: 'llama-cpp', pool: 'local', gguf_path: DEMO_GGUF }] });
  tenant = await stack.createTenantKey();
  client = new OpenAI({ apiKey: tenant.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

async function call(key: string, method: string, path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.url}/v1${path}`, { method, headers: { Authorization: `Bearer ${key}` } });
  return { status: res.status, body: await res.json() };
}

/** The newest request of the tenant whose ID starts with `prefix`, once its row exists. */
async function newestRequest(prefix: string, known: ReadonlySet<string>): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const rows = await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenant.tenantId).where('id', 'like', `${prefix}%`).execute();
    const found = rows.find((r) => !known.has(r.id));
    if (found) return found.id;
    if (Date.now() > deadline) throw new Error(`no new ${prefix} request`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const idsOf = async (prefix: string) => new Set((await stack.db.selectFrom('requests').select('id').where('id', 'like', `${prefix}%`).execute()).map((r) => r.id));

describe('GET /v1/jobs/{id}', () => {
  it('finds a completion, an embeddings request and a response, with the result in the endpoint\'s shape', async () => {
    upstream.setBehaviour({ kind: 'succeed' });
    const completion = await client.completions.create({ model: 'remote', prompt: 'Once', max_tokens: 8 });
    const cmplId = completion.id.replace(/^cmpl-/, '');
    const job = await call(tenant.key, 'GET', `/jobs/${cmplId}`);
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({ id: cmplId, object: 'text_completion.job', status: 'succeeded', model: 'remote' });
    expect(job.body.result).toEqual(JSON.parse(JSON.stringify(completion)));

    const knownEmb = await idsOf('embreq_');
    const embeddings = await client.embeddings.create({ model: 'tiny-embed', input: ['a', 'b'], encoding_format: 'float' });
    const embId = await newestRequest('embreq_', knownEmb);
    const embJob = await call(tenant.key, 'GET', `/jobs/${embId}`);
    expect(embJob.body).toMatchObject({ id: embId, object: 'embedding.job', status: 'succeeded' });
    expect(embJob.body.result.data.map((d: { embedding: number[] }) => d.embedding)).toEqual(embeddings.data.map((d) => d.embedding));
    expect(embJob.body.result.usage).toEqual(embeddings.usage);

    const response = await client.responses.create({ model: 'remote', input: 'hi', max_output_tokens: 8 });
    const respJob = await call(tenant.key, 'GET', `/jobs/${response.id}`);
    expect(respJob.body).toMatchObject({ id: response.id, object: 'response.job', status: 'succeeded' });
    expect(respJob.body.result).toEqual(JSON.parse(JSON.stringify(response)));
    // Not stored: the workflow's result.
    const unstored = await client.responses.create({ model: 'remote', input: 'hi', max_output_tokens: 8, store: false });
    expect((await call(tenant.key, 'GET', `/jobs/${unstored.id}`)).body.result).toEqual(JSON.parse(JSON.stringify(unstored)));

    // Another tenant's job is not found, for every kind.
    const other = await stack.createTenantKey();
    for (const id of [cmplId, embId, response.id]) {
      expect((await call(other.key, 'GET', `/jobs/${id}`)).status).toBe(404);
      expect((await call(other.key, 'POST', `/jobs/${id}/cancel`)).status).toBe(404);
    }
  });
});

describe('POST /v1/jobs/{id}/cancel', () => {
  it.each([
    ['a response', 'resp_', '/v1/responses', { model: 'remote', input: 'a long story', max_output_tokens: 32 }],
    ['a legacy completion', 'cmpl_', '/v1/completions', { model: 'remote', prompt: 'a long story', max_tokens: 32 }],
  ])('cancels %s while its upstream call runs: the call is dropped, the job is cancelled, nothing billed', async (_name, prefix, path, body) => {
    upstream.setBehaviour({ kind: 'hang' });
    const known = await idsOf(prefix);
    const calls = upstream.calls;
    const disconnects = upstream.disconnects;
    const pending = fetch(`${stack.url}${path}`, {
      method: 'POST', headers: { Authorization: `Bearer ${tenant.key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
    await upstream.waitForCalls(calls + 1);
    const id = await newestRequest(prefix, known);
    expect((await call(tenant.key, 'GET', `/jobs/${id}`)).body.status).toBe('running');
    const cancelled = await call(tenant.key, 'POST', `/jobs/${id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ id, status: 'cancelled', result: null });
    await upstream.waitForDisconnects(disconnects + 1);
    const answer = await pending;
    expect(answer.status).toBeGreaterThanOrEqual(400);
    const billed = await stack.db.selectFrom('usage').select('id').where('request_id', '=', id).where('billable', '=', true).execute();
    expect(billed).toEqual([]);
    const reservation = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', id).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('released');
    upstream.setBehaviour({ kind: 'succeed' });
  });

  it('a batch line is cancelled with its batch: 409 naming the batch route, the batch untouched', async () => {
    const file = await client.files.create({
      file: new File([`${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'remote', messages: [{ role: 'user', content: 'x' }], max_tokens: 4 } })}\n`], 'in.jsonl'),
      purpose: 'batch',
    });
    upstream.setBehaviour({ kind: 'succeed' });
    let batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 120_000;
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(batch.status)) {
      if (Date.now() > deadline) throw new Error(`batch ${batch.id} timed out: ${batch.status}`);
      await new Promise((r) => setTimeout(r, 200));
      batch = await client.batches.retrieve(batch.id);
    }
    const line = await stack.db.selectFrom('requests').select('id').where('id', 'like', `${batch.id.replace(/^batch_/, 'batch_req_')}_%`).executeTakeFirstOrThrow();
    const job = await call(tenant.key, 'GET', `/jobs/${line.id}`);
    expect(job.body).toMatchObject({ id: line.id, object: 'chat.completion.job', status: 'succeeded' });
    const refused = await call(tenant.key, 'POST', `/jobs/${line.id}/cancel`);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'batch_line_not_cancellable' });
    expect((await client.batches.retrieve(batch.id)).status).toBe('completed');
  });
});
