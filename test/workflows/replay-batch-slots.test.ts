/**
 * Determinism of a batch whose lines wait for a pipeline slot: 70 embeddings lines started in one
 * turn (the default concurrency, 512, takes them all), of which 64 run the request pipeline at
 * once (`batch-bounded-pipelines`, workflows/line-slots.ts) and 6 wait, loaded in a page of whole
 * chunks (`batch-chunk-pages`). Its history carries both markers, replays against the current
 * code, and is kept as the fixture `batch-waiting-lines.pb` (test/fixtures/histories), which
 * `replay.test.ts` replays with the others. The stack of `replay.test.ts` runs batches 4 lines at
 * a time, so no line of its batches ever waits: this scenario needs its own.
 * To record the fixture again from the current code:
 * `SLUICE_RECORD_HISTORIES=1 npx vitest run test/workflows/replay-batch-slots.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { readFile, writeFile } from 'node:fs/promises';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { batchWorkflowId } from '../../contracts/ids.js';

const FIXTURE = new URL('../fixtures/histories/batch-waiting-lines.pb', import.meta.url);
/** More lines than the 64 pipeline slots (`PIPELINE_LINES`, workflows/batch.ts). */
const LINES = 70;

let stack: TestStack;
let client: OpenAI;

beforeAll(async () => {
  stack = await startTestStack();
  await addModel(stack, {
    id: 'replay-embed', kind: 'embeddings', context_length: 1024, max_output_tokens: 1,
    deployments: [{ provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf' }],
  });
  const { key } = await stack.createTenantKey();
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

/** The patch IDs of a history's markers, in order. */
function patchesOf(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((e) => {
    const m = e.markerRecordedEventAttributes;
    if (m?.markerName !== 'core_patch') return [];
    const data = m.details?.['patch-data']?.payloads?.[0]?.data;
    return data ? [(JSON.parse(Buffer.from(data).toString('utf8')) as { id: string }).id] : [];
  });
}

describe('replay of a batch with lines waiting for a pipeline slot', () => {
  it('runs 70 embeddings lines 64 at a time; its history carries both batch markers and replays', async () => {
    const lines = Array.from({ length: LINES }, (_, i) => JSON.stringify({ custom_id: `w${i}`, method: 'POST', url: '/v1/embeddings', body: { model: 'replay-embed', input: `waiting line ${i}` } }));
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'w.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    const deadline = Date.now() + 240_000;
    let done = await client.batches.retrieve(batch.id);
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(done.status)) {
      if (Date.now() > deadline) throw new Error(`batch did not end: ${JSON.stringify(done)}`);
      await new Promise((r) => setTimeout(r, 250));
      done = await client.batches.retrieve(batch.id);
    }
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });

    const handle = stack.client.workflow.getHandle(batchWorkflowId(batch.id));
    // All 70 were in flight together and 64 held a slot at most: 6 waited.
    expect((await handle.query<{ pipelinesPeak: number }>('batchProgress')).pipelinesPeak).toBe(64);
    const history = await handle.fetchHistory();
    expect(patchesOf(history)).toEqual(expect.arrayContaining(['batch-chunk-pages', 'batch-bounded-pipelines']));
    await expect(Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, 'fresh batch-waiting-lines')).resolves.toBeUndefined();

    if (process.env.SLUICE_RECORD_HISTORIES === '1') await writeFile(FIXTURE, temporal.api.history.v1.History.encode(history).finish());
  }, 300_000);

  it('replays the recorded fixture, which carries both markers', async () => {
    const history = temporal.api.history.v1.History.decode(await readFile(FIXTURE));
    expect(patchesOf(history)).toEqual(expect.arrayContaining(['batch-chunk-pages', 'batch-bounded-pipelines']));
    await expect(Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, 'batch-waiting-lines.pb')).resolves.toBeUndefined();
  });
});
