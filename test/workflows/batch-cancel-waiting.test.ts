/**
 * A batch cancelled while some of its lines wait for a pipeline slot (`line-slots.ts`: at most 64
 * lines run the request pipeline at once) ends them without running them
 * (`patched('batch-cancel-skips-waiting-lines')`): before, each waiting line was admitted after the
 * cancel (a reservation, an audit entry, its request ended `cancelled`), its embed cancelled at
 * once and its reservation released, one slot-wave after another. Now a waiting line is never
 * admitted: its request stays as its page's load created it (`queued`), with no reservation,
 * usage or audit row, and the output reports it `batch_cancelled`, as a line never started.
 *
 * The embeddings lines run on a fake upstream (the remote, paid API's stand-in) that never
 * answers, so the 64 lines that got a slot are all still in flight when the cancel arrives and the
 * others are all still waiting: which lines ran does not depend on the machine's speed.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { Worker } from '@temporalio/worker';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { batchRequestId, batchWorkflowId } from '../../contracts/ids.js';

/** More lines than the 64 pipeline slots (`PIPELINE_LINES`, workflows/batch.ts). */
const LINES = 100;
const SLOTS = 64;

let stack: TestStack;
let client: OpenAI;
let tenantId: string;
let upstream: FakeUpstream;

beforeAll(async () => {
  upstream = await startFakeUpstream({ behaviour: { kind: 'hang' } });
  stack = await startTestStack();
  await addModel(stack, {
    id: 'hanging-embed', kind: 'embeddings', context_length: 8192, max_output_tokens: 1,
    deployments: [{
      provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'up-embed',
      price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 },
    }],
  });
  const tenant = await stack.createTenantKey();
  tenantId = tenant.tenantId;
  client = new OpenAI({ apiKey: tenant.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('a batch cancelled while lines wait for a pipeline slot', () => {
  it('does not admit the waiting lines: no reservation, usage or audit row, the request left queued, and each is reported batch_cancelled', async () => {
    const lines = Array.from({ length: LINES }, (_, i) => ({ custom_id: `e-${i + 1}`, method: 'POST', url: '/v1/embeddings', body: { model: 'hanging-embed', input: `line ${i + 1}` } }));
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    const ids = Array.from({ length: LINES }, (_, i) => batchRequestId(created.id, i + 1));
    const running = new Set(ids.slice(0, SLOTS));
    const waiting = ids.slice(SLOTS);

    // The first 64 lines are admitted (each holds a reservation) and their embeds hang; the others wait for a slot.
    const reservationsOf = () => stack.db.selectFrom('reservations').select(['request_id', 'status']).where('request_id', 'in', ids).execute();
    await until('64 admitted lines', reservationsOf, (rows) => rows.length >= SLOTS);
    await upstream.waitForCalls(1);
    const cancelling = await client.batches.cancel(created.id);
    expect(['cancelling', 'cancelled']).toContain(cancelling.status);
    const done = await until('the batch to end', () => client.batches.retrieve(created.id), (b) => ['completed', 'failed', 'cancelled', 'expired'].includes(b.status));

    expect(done.status).toBe('cancelled');
    expect(done.request_counts).toEqual({ total: LINES, completed: 0, failed: 0 });
    expect(done.output_file_id).toBeNull();
    const errors = (await (await client.files.content(done.error_file_id as string)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; error: { code: string } | null });
    expect(errors).toHaveLength(LINES);
    expect(errors.every((e) => e.error?.code === 'batch_cancelled')).toBe(true);
    expect(errors.map((e) => e.id).sort()).toEqual([...ids].sort());

    // Only the lines that had a slot were admitted, and each of them ended cancelled, nothing held;
    // a waiting line's request is as its page's load created it.
    const requests = await stack.db.selectFrom('requests').select(['id', 'status']).where('id', 'in', ids).execute();
    expect(requests).toHaveLength(LINES);
    expect(requests.filter((r) => r.status === 'cancelled').map((r) => r.id).sort()).toEqual([...running].sort());
    expect(requests.filter((r) => r.status === 'queued').map((r) => r.id).sort()).toEqual([...waiting].sort());
    const reservations = await reservationsOf();
    expect(reservations.map((r) => r.request_id).sort()).toEqual([...running].sort());
    expect(reservations.filter((r) => r.status === 'held')).toEqual([]);
    const usage = await stack.db.selectFrom('usage').select(['request_id', 'billable']).where('tenant_id', '=', tenantId).execute();
    expect(usage.filter((u) => !running.has(u.request_id))).toEqual([]);
    expect(usage.filter((u) => u.billable)).toEqual([]);
    const audited = await stack.db.selectFrom('audit_log').select(['target']).where('target', 'in', waiting.map((id) => `request:${id}`)).execute();
    expect(audited).toEqual([]);
    // The lines that ran were admitted once each and audited.
    const ranAudit = await stack.db.selectFrom('audit_log').select(['target']).where('target', 'in', [...running].map((id) => `request:${id}`)).execute();
    expect(new Set(ranAudit.map((a) => a.target)).size).toBe(SLOTS);

    // The history: 64 admissions, the patch's marker once, and it replays on the current code.
    const history = await stack.client.workflow.getHandle(batchWorkflowId(created.id)).fetchHistory();
    const events = history.events ?? [];
    expect(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'admit')).toHaveLength(SLOTS);
    const markers = events.flatMap((e) => {
      const data = e.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0]?.data;
      return data ? [(JSON.parse(Buffer.from(data).toString('utf8')) as { id: string }).id] : [];
    });
    expect(markers.filter((m) => m === 'batch-cancel-skips-waiting-lines')).toHaveLength(1);
    await expect(Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, 'cancelled with waiting lines')).resolves.toBeUndefined();
  }, 300_000);
});
