/**
 * Batch lines whose inference fails take the request pipeline's failure handling: the lines of a
 * chunk run as one unit while every step is plain (workflows/batch-lines.ts), and a line whose
 * attempt failed leaves the unit and runs the pipeline from there: tokens its failed attempts
 * spent recorded unbilled, the next deployment tried, or (none left) its reservation released
 * and its outcome failed, nothing billed. Upstreams played by local fakes in front of the real
 * llama.cpp deployment; a plain line in the same chunk is served and billed once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';

let stack: TestStack;
let client: OpenAI;
let broken: FakeUpstream;
let wasteful: FakeUpstream;

const upstream = (id: string, url: string) => ({
  id, provider: 'openai-compatible', pool: 'local', base_url: url, upstream_model: 'gpt-fake', priority: 0,
  price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 },
});

beforeAll(async () => {
  broken = await startFakeUpstream({ behaviour: { kind: 'fail', status: 500 } });
  wasteful = await startFakeUpstream({ behaviour: { kind: 'succeed', choices: 'omit', usage: { promptTokens: 7, completionTokens: 3 } } });
  // A breaker that never opens here: every line tries the failing upstream first.
  stack = await startTestStack({ breaker: { failureThreshold: 1000, windowMs: 60_000, cooldownMs: 60_000, probeTimeoutMs: 60_000 } });
  await addModel(stack, { id: 'dead', context_length: 1024, max_output_tokens: 64, deployments: [upstream('dead-upstream', broken.url)] });
  await addModel(stack, {
    id: 'wasteful', context_length: 1024, max_output_tokens: 64,
    deployments: [upstream('wasteful-upstream', wasteful.url), { id: 'wasteful-local', provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf', priority: 1 }],
  });
  const { key } = await stack.createTenantKey();
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await broken?.close();
  await wasteful?.close();
});

const line = (customId: string, model: string) => ({
  custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: `hello ${customId}` }], max_tokens: 4 },
});

async function waitFinal(id: string, timeoutMs = 180_000): Promise<OpenAI.Batches.Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) return b;
    if (Date.now() > deadline) throw new Error(`batch ${id} did not end: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('batch lines whose inference fails', () => {
  it('fall back, record what failed attempts spent unbilled, or fail with the reservation released; a plain line beside them is billed once', async () => {
    const lines = [line('w-0', 'wasteful'), line('d-0', 'dead'), line('t-0', 'sluice-tiny'), line('w-1', 'wasteful'), line('d-1', 'dead')];
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await waitFinal(created.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 5, completed: 3, failed: 2 });

    const requests = await stack.db.selectFrom('requests').select(['id', 'model', 'status']).where('kind', '=', 'batch').execute();
    expect(requests).toHaveLength(5);
    const usage = await stack.db.selectFrom('usage').selectAll().where('request_id', 'in', requests.map((r) => r.id)).execute();
    const rowsOf = (id: string) => usage.filter((u) => u.request_id === id).map((u) => [u.step, u.deployment_id, u.billable]).sort();
    for (const r of requests) {
      const reservation = await stack.db.selectFrom('reservations').select(['status']).where('request_id', '=', r.id).executeTakeFirstOrThrow();
      if (r.model === 'dead') {
        expect(r.status).toBe('failed');
        expect(rowsOf(r.id)).toEqual([]);
        expect(reservation.status).toBe('released');
      } else if (r.model === 'wasteful') {
        expect(r.status).toBe('succeeded');
        // Each of its three attempts on the upstream spent 7 + 3 tokens: one unbilled row for all of them.
        expect(rowsOf(r.id)).toEqual([['infer', 'wasteful-local', true], ['infer:failed:wasteful-upstream', 'wasteful-upstream', false]]);
        expect(usage.find((u) => u.request_id === r.id && !u.billable)).toMatchObject({ input_tokens: 21, output_tokens: 9 });
        expect(reservation.status).toBe('settled');
      } else {
        expect(r.status).toBe('succeeded');
        expect(usage.filter((u) => u.request_id === r.id).map((u) => [u.step, u.billable])).toEqual([['infer', true]]);
        expect(reservation.status).toBe('settled');
      }
    }
    expect(broken.calls).toBe(6); // three attempts per dead line
    expect(wasteful.calls).toBe(6);
  });
});
