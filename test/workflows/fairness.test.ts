/**
 * Sync callers are served ahead of batch lines on a shared pool: while a batch keeps the pool's
 * inference queue backlogged, a sync request waits for a free slot, not for the backlog. Temporal
 * task-queue priority does it (sync requests priorityKey 1, batch lines 3).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { SLOW_GGUF } from '../support/global-setup.js';

let stack: TestStack;
let client: OpenAI;
let tenantId: string;

/** A tenant's batch lines (their request rows) in `status`. */
async function batchLines(tenant: string, status: 'queued' | 'succeeded'): Promise<number> {
  const rows = await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenant).where('kind', '=', 'batch').where('status', '=', status).execute();
  return rows.length;
}

/** Waits, with a deadline, until `tenant` has at least `n` batch lines queued. */
async function untilQueued(tenant: string, n: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  let queued = 0;
  while (Date.now() < deadline) {
    queued = await batchLines(tenant, 'queued');
    if (queued >= n) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return queued;
}

const LINES = 40;

beforeAll(async () => {
  stack = await startTestStack({ env: { SLUICE_BATCH_CONCURRENCY: '32', SLUICE_SLOTS: '2' } });
  await addModel(stack, {
    id: 'sluice-slow', context_length: 1024, max_output_tokens: 200,
    deployments: [{ id: 'slow-local', provider: 'llama-cpp', pool: 'local', gguf_path: SLOW_GGUF }],
  });
  const created = await stack.createTenantKey();
  const key = created.key;
  tenantId = created.tenantId;
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

describe('fairness between sync and batch traffic', () => {
  it('a sync request overtakes a backlog of batch lines on the same pool', async () => {
    const lines = Array.from({ length: LINES }, (_, i) => JSON.stringify({
      custom_id: `line-${i}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: 'sluice-slow', messages: [{ role: 'user', content: `batch line ${i}` }], max_tokens: 60, temperature: 0 },
    }));
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'lines.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });

    // Wait until the batch has filled its window: many lines queued on the pool, 2 generating.
    expect(await untilQueued(tenantId, 20)).toBeGreaterThanOrEqual(20);
    const doneBefore = await batchLines(tenantId, 'succeeded');

    // The pool runs 2 lines at a time. First come first served, the first sync request would wait
    // behind the ≥ 20 lines queued before it, all of them done by the time it is answered.
    for (let i = 0; i < 3; i++) {
      const completion = await client.chat.completions.create({ model: 'sluice-slow', messages: [{ role: 'user', content: `sync ${i}` }], max_tokens: 20, temperature: 0 });
      expect(completion.object).toBe('chat.completion');
    }
    // Lines that finished while the three sync requests ran: the ones generating when each arrived
    // (2 slots), not the queue. Counted from the lines' own rows, not the batch's progress counts
    // (flushed every so often).
    const doneDuring = (await batchLines(tenantId, 'succeeded')) - doneBefore;
    expect(doneDuring).toBeLessThan(20);

    await client.batches.cancel(batch.id);
  });

  it('tenants take turns: a small batch is not held behind another tenant\'s queued lines on the same pool', async () => {
    // Both tenants new: the first test's cancelled batch counts for neither.
    const first = await stack.createTenantKey();
    const firstClient = new OpenAI({ apiKey: first.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const other = await stack.createTenantKey();
    const otherClient = new OpenAI({ apiKey: other.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const submit = async (c: OpenAI, n: number, tag: string) => {
      const lines = Array.from({ length: n }, (_, i) => JSON.stringify({
        custom_id: `${tag}-${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model: 'sluice-slow', messages: [{ role: 'user', content: `${tag} line ${i}` }], max_tokens: 60, temperature: 0 },
      }));
      const file = await c.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), `${tag}.jsonl`), purpose: 'batch' });
      return c.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    };
    const big = await submit(firstClient, 24, 'big');
    // The big batch's lines are queued for the pool's 2 slots (one chunk) before the small one starts.
    expect(await untilQueued(first.tenantId, 20)).toBeGreaterThanOrEqual(20);
    const bigDoneBefore = await batchLines(first.tenantId, 'succeeded');
    const small = await submit(otherClient, 2, 'small');
    let done: OpenAI.Batches.Batch;
    for (;;) {
      done = await otherClient.batches.retrieve(small.id);
      if (['completed', 'failed', 'cancelled', 'expired'].includes(done.status)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const bigDoneDuring = (await batchLines(first.tenantId, 'succeeded')) - bigDoneBefore;
    const bigNow = await firstClient.batches.retrieve(big.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toMatchObject({ completed: 2, failed: 0 });
    // First come first served across tenants, the 2 lines would wait for the ≥ 20 queued before
    // them: taking turns, each waits for about one of the big batch's lines per slot.
    expect(bigNow.status).toBe('in_progress');
    expect(bigDoneDuring).toBeLessThan(12);
    await firstClient.batches.cancel(big.id);
  });
});
