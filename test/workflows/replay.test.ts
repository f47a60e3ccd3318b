/**
 * Determinism: histories recorded by real runs of every kind of workflow (a sync request, an async
 * request that fell back from a failing deployment, a job cancelled mid-generation on llama.cpp,
 * a request refused by its quota, a batch, an embeddings request and an embeddings batch, a legacy
 * completion with three prompts and one whose second prompt fell back, and a billing run) replay
 * against the current workflow code without a non-determinism error.
 * `test/fixtures/histories` keeps histories (binary protobuf) of those runs recorded by the
 * workflow code as released: a change that would replay a running workflow differently
 * (reordered steps, a new activity without `patched`) fails the second test. The versioning
 * policy (docs/versioning.md) says when a fixture is replaced; to record the fixtures again from
 * the current code: `SLUICE_RECORD_HISTORIES=1 npx vitest run test/workflows/replay.test.ts`.
 * `batch-waiting-lines.pb` (a batch with lines waiting for a pipeline slot) is recorded by
 * `replay-batch-slots.test.ts`, on a stack whose batches run more than 64 lines at once; it is
 * replayed here with the others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { addInstantModel, addModel, pollJob, settled, startJob, startTestStack, waitForGeneration, type TestStack } from '../support/stack.js';
import { SLOW_GGUF } from '../support/global-setup.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { batchWorkflowId, chatWorkflowId, completionWorkflowId } from '../../contracts/ids.js';

const FIXTURES = new URL('../fixtures/histories/', import.meta.url);
/** Fixture file → the workflow of this run it is recorded from (filled in by the first test). */
const scenarios = new Map<string, string>();

let stack: TestStack;
let upstream: FakeUpstream;
let client: OpenAI;
let key: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ behaviour: { kind: 'fail', status: 500 } });
  stack = await startTestStack({ env: { SLUICE_BATCH_CONCURRENCY: '4' } });
  await addModel(stack, {
    id: 'with-fallback', context_length: 1024, max_output_tokens: 64,
    deployments: [
      { id: 'fb-upstream', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'x', priority: 0 },
      { id: 'fb-local', provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf', priority: 1 },
    ],
  });
  // The cancelled job is cancelled mid-generation on llama.cpp: the slow tiny model generates for
  // longer than the 2 s heartbeat throttle, so the test can see it generating before it cancels.
  await addModel(stack, {
    id: 'sluice-slow', context_length: 1024, max_output_tokens: 600,
    deployments: [{ id: 'slow-local', provider: 'llama-cpp', pool: 'local', gguf_path: SLOW_GGUF }],
  });
  // Pipeline only: the quota refusal (before any inference) and the batch's workflow steps.
  await addInstantModel(stack);
  await addModel(stack, {
    id: 'replay-embed', kind: 'embeddings', context_length: 1024, max_output_tokens: 1,
    deployments: [{ provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf' }],
  });
  ({ key } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

describe('workflow replay', () => {
  it('replays every recorded history without non-determinism', async () => {
    const sync = await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'sync' }], max_tokens: 4 });
    await settled(stack, sync);
    // chat-request-succeeded.pb is the frozen history of a request started as `queued` (before sync
    // requests started as `running`); chat-request-sync.pb the frozen one of a sync request before
    // it was answered from the history (no `answeredEarly`); chat-request-sync-early.pb is a sync
    // request as the API starts it now (`answeredEarly`, its `infer` attempt with the summary).
    scenarios.set('chat-request-sync-early.pb', chatWorkflowId(sync.id.replace(/^chatcmpl-/, '')));
    const fallback = await startJob(stack, key, { model: 'with-fallback', messages: [{ role: 'user', content: 'fallback' }], max_tokens: 4 });
    expect((await pollJob(stack, key, fallback.id, (s) => s === 'succeeded' || s === 'failed')).status).toBe('succeeded');
    scenarios.set('chat-request-fallback.pb', chatWorkflowId(fallback.id));
    const cancelled = await startJob(stack, key, { model: 'sluice-slow', messages: [{ role: 'user', content: 'to cancel' }], max_tokens: 500, temperature: 0 });
    await waitForGeneration(stack, cancelled.id);
    await fetch(`${stack.url}/v1/jobs/${cancelled.id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    expect((await pollJob(stack, key, cancelled.id, (s) => s === 'succeeded' || s === 'failed' || s === 'cancelled')).status).toBe('cancelled');
    scenarios.set('chat-request-cancelled.pb', chatWorkflowId(cancelled.id));
    const broke = await stack.createTenantKey({ limits: { monthly_budget_micros: 0 } });
    const refused = await startJob(stack, broke.key, { model: 'instant', messages: [{ role: 'user', content: 'over budget' }], max_tokens: 4 });
    expect((await pollJob(stack, broke.key, refused.id, (s) => s === 'succeeded' || s === 'failed')).status).toBe('failed');
    scenarios.set('chat-request-quota-exceeded.pb', chatWorkflowId(refused.id));
    const lines = Array.from({ length: 3 }, (_, i) => JSON.stringify({ custom_id: `l${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'instant', messages: [{ role: 'user', content: `line ${i}` }], max_tokens: 2 } }));
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'b.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 60_000;
    while (!['completed', 'failed'].includes((await client.batches.retrieve(batch.id)).status) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    // The current code's batch. batch-completed.pb is not re-recorded: it is the frozen history from
    // before `batch-chunk-pages` (no batch markers), and only a recording of that older code may replace it.
    scenarios.set('batch-chunk-pages.pb', batchWorkflowId(batch.id));
    // Embeddings (issue 14): a request in its own workflow, and a batch of embeddings lines.
    await client.embeddings.create({ model: 'replay-embed', input: ['replay one', 'replay two'] });
    const embedLines = Array.from({ length: 2 }, (_, i) => JSON.stringify({ custom_id: `e${i}`, method: 'POST', url: '/v1/embeddings', body: { model: 'replay-embed', input: `line ${i}` } }));
    const embedFile = await client.files.create({ file: await toFile(Buffer.from(embedLines.join('\n') + '\n'), 'e.jsonl'), purpose: 'batch' });
    const embedBatch = await client.batches.create({ input_file_id: embedFile.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    while (!['completed', 'failed'].includes((await client.batches.retrieve(embedBatch.id)).status) && Date.now() < deadline + 60_000) await new Promise((r) => setTimeout(r, 200));
    expect((await client.batches.retrieve(embedBatch.id)).status).toBe('completed');
    // Legacy completions with several prompts (issue 14): three prompts on llama.cpp; and two on the
    // upstream-first model where prompt 0 is served by the upstream and prompt 1 falls back to llama.cpp.
    const prompts = await client.completions.create({ model: 'sluice-tiny', prompt: ['replay one', 'replay two', 'replay three'], max_tokens: 3 });
    expect(prompts.choices).toHaveLength(3);
    scenarios.set('completion-prompts-succeeded.pb', completionWorkflowId(prompts.id.replace(/^cmpl-/, '')));
    upstream.setBehaviour([{ kind: 'succeed' }, { kind: 'fail', status: 500 }]);
    const fellBack = await client.completions.create({ model: 'with-fallback', prompt: ['served upstream', 'falls back'], max_tokens: 3 });
    upstream.setBehaviour({ kind: 'fail', status: 500 });
    expect(fellBack.choices).toHaveLength(2);
    scenarios.set('completion-prompts-fallback.pb', completionWorkflowId(fellBack.id.replace(/^cmpl-/, '')));

    // Every closed workflow in this namespace, whatever its type.
    await new Promise((r) => setTimeout(r, 1000));
    const executions = stack.client.workflow.list({ query: 'ExecutionStatus != "Running"' });
    const types = new Set<string>();
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowBundle: { codePath: inject('workflowBundlePath') } }, executions.intoHistories())) {
      expect(result.error, `${result.workflowId}: ${String(result.error)}`).toBeUndefined();
      replayed += 1;
    }
    for await (const e of stack.client.workflow.list({ query: 'ExecutionStatus != "Running"' })) types.add(e.type);
    expect(replayed).toBeGreaterThanOrEqual(7); // sync, fallback, cancelled, refused, the batch (its lines run inside it), two several-prompt completions
    expect([...types]).toEqual(expect.arrayContaining(['chatRequest', 'batch', 'embeddingsRequest', 'completionRequest']));

    if (process.env.SLUICE_RECORD_HISTORIES === '1') {
      await mkdir(FIXTURES, { recursive: true });
      for (const [file, workflowId] of scenarios) {
        const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
        await writeFile(new URL(file, FIXTURES), temporal.api.history.v1.History.encode(history).finish());
      }
    }
  });

  it('replays the histories recorded by the released workflow code', async () => {
    // Binary protobuf (`History.encode` of `fetchHistory()`): the SDK's JSON reader trips over the
    // three copies of protobufjs 8 that npm installs beside grpc-js's protobufjs 7.
    const files = (await readdir(FIXTURES)).filter((f) => f.endsWith('.pb')).sort();
    expect(files).toEqual([
      'batch-chunk-pages.pb', 'batch-completed.pb', 'batch-waiting-lines.pb', 'chat-request-cancelled.pb', 'chat-request-fallback.pb', 'chat-request-quota-exceeded.pb', 'chat-request-succeeded.pb', 'chat-request-sync-early.pb', 'chat-request-sync.pb',
      'completion-prompts-fallback.pb', 'completion-prompts-succeeded.pb',
    ]);
    for (const file of files) {
      const history = temporal.api.history.v1.History.decode(await readFile(new URL(file, FIXTURES)));
      expect(history.events.length, file).toBeGreaterThan(5);
      await expect(
        Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, file),
        file,
      ).resolves.toBeUndefined();
    }
  });
});
