/**
 * A batch whose every line leaves the chunk path (its first deployment fails, it falls back to
 * the next) runs at most 64 of them through the request pipeline at once (`line-slots.ts`): one
 * workflow activation ran the continuations of all 512 lines in flight, for seconds under load,
 * and one past the SDK's isolate execution timeout aborts the worker process ("async hook stack
 * has become corrupted"; BENCHMARKS.md). The lines waiting for a slot still end as before: every
 * line served by the fallback deployment and billed once there, what its failed attempts spent
 * recorded, nothing left held.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { Client, Connection } from '@temporalio/client';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { batchWorkflowId } from '../../contracts/ids.js';

const LINES = 512;

let stack: TestStack;
let client: OpenAI;
let temporal: Connection;
let broken: FakeUpstream;
let good: FakeUpstream;

const upstream = (id: string, url: string, priority: number) => ({
  id, provider: 'openai-compatible', pool: 'local', base_url: url, upstream_model: 'gpt-fake', priority,
  price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 },
});

beforeAll(async () => {
  broken = await startFakeUpstream({ behaviour: { kind: 'fail', status: 500 } });
  good = await startFakeUpstream({ behaviour: { kind: 'succeed' } });
  // A breaker that never opens here: every line tries the failing upstream first.
  stack = await startTestStack({ breaker: { failureThreshold: 1_000_000, windowMs: 60_000, cooldownMs: 60_000, probeTimeoutMs: 60_000 } });
  await addModel(stack, { id: 'falls-back', context_length: 1024, max_output_tokens: 64, deployments: [upstream('fb-broken', broken.url, 0), upstream('fb-good', good.url, 1)] });
  const { key } = await stack.createTenantKey();
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  temporal = await Connection.connect({ address: stack.temporal.address });
});
afterAll(async () => {
  await temporal?.close();
  await stack?.stop();
  await broken?.close();
  await good?.close();
});

describe('a batch whose lines all fall back', () => {
  it('runs at most 64 of them through the pipeline at once, and each still ends served and billed once', async () => {
    const lines = Array.from({ length: LINES }, (_, i) => ({
      custom_id: `l-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'falls-back', messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 4 },
    }));
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 300_000;
    let done = await client.batches.retrieve(created.id);
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(done.status)) {
      if (Date.now() > deadline) throw new Error(`batch did not end: ${JSON.stringify(done)}`);
      await new Promise((r) => setTimeout(r, 250));
      done = await client.batches.retrieve(created.id);
    }
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });

    // The closed run answers from its history: of the lines in flight together, 64 in the pipeline at most.
    const progress = await new Client({ connection: temporal }).workflow.getHandle(batchWorkflowId(created.id))
      .query<{ inFlight: number; pipelinesPeak: number }>('batchProgress');
    expect(progress.pipelinesPeak).toBe(64);

    const requests = await stack.db.selectFrom('requests').select(['id', 'status']).where('kind', '=', 'batch').execute();
    expect(requests).toHaveLength(LINES);
    expect(requests.every((r) => r.status === 'succeeded')).toBe(true);
    const billed = await stack.db.selectFrom('usage').select(['request_id', 'deployment_id']).where('billable', '=', true).execute();
    expect(billed).toHaveLength(LINES);
    expect(new Set(billed.map((u) => u.request_id)).size).toBe(LINES);
    expect(billed.every((u) => u.deployment_id === 'fb-good')).toBe(true);
    const held = await stack.db.selectFrom('reservations').select(['request_id']).where('status', '=', 'held').execute();
    expect(held).toEqual([]);
    // Every line reached the serving upstream (a retried inference may call it again; billing above is once).
    expect(good.calls).toBeGreaterThanOrEqual(LINES);
  }, 420_000);
});
