/**
 * The Files and Batches API with the official `openai` client against real Temporal, PostgreSQL
 * and llama.cpp (and the instant backend for pipeline-only tests that need many lines fast): the
 * full flow, bad-line reporting, cancel mid-batch, and resume after the workers stop mid-batch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { inject } from 'vitest';
import { WorkflowNotFoundError } from '@temporalio/client';
import { addInstantModel, addModel, startTestStack, type TestStack } from '../support/stack.js';
import { startStack } from '../../scripts/lib/system.js';
import { createLogger } from '../../runtime/logger.js';
import type { BatchWorkflowInput } from '../../contracts/batch.js';
import { CONTROL_TASK_QUEUE, batchWorkflowId, chatWorkflowId } from '../../contracts/ids.js';
import { insertBatch } from '../../db/repositories/batches.js';
import { finishRequests, insertRequest } from '../../db/repositories/requests.js';
import type { reconcileReservations } from '../../workflows/reconcile.js';
import { cli } from '../../scripts/sluice.js';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

let stack: TestStack;
let client: OpenAI;
let key: string;

beforeAll(async () => {
  stack = await startTestStack({ env: { SLUICE_BATCH_CONCURRENCY: '4', SLUICE_BATCH_LINES_PER_RUN: '20' } });
  await addInstantModel(stack);
  // Served by no worker: its lines wait for an inference slot that never comes.
  await addModel(stack, { id: 'stranded', context_length: 1024, max_output_tokens: 8, deployments: [{ id: 'stranded-x', provider: 'instant', pool: 'nowhere' }] });
  ({ key } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

function jsonl(lines: unknown[]): string {
  return lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
}

function chatLine(customId: string, model: string, content: string, maxTokens = 4) {
  return { custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content }], max_tokens: maxTokens } };
}

async function upload(text: string, c: OpenAI = client) {
  return c.files.create({ file: await toFile(Buffer.from(text), 'input.jsonl'), purpose: 'batch' });
}

async function waitFor(id: string, until: (b: OpenAI.Batches.Batch) => boolean, timeoutMs = 120_000): Promise<OpenAI.Batches.Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await client.batches.retrieve(id).catch(() => null);
    if (b && until(b)) return b;
    if (Date.now() > deadline) throw new Error(`batch ${id} timed out: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

const final = (b: OpenAI.Batches.Batch) => ['completed', 'failed', 'cancelled', 'expired'].includes(b.status);

async function usageOfBatch(batchId: string) {
  const prefix = `${batchId.replace(/^batch_/, 'batch_req_')}_`;
  return stack.db.selectFrom('usage').selectAll().where('request_id', 'like', `${prefix}%`).execute();
}

async function contentLines(fileId: string, c: OpenAI = client): Promise<any[]> {
  const text = await (await c.files.content(fileId)).text();
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

describe('files', () => {
  // Pipeline only (docs/testing.md): files are stored and served; nothing is generated.
  it('uploads, retrieves, lists, serves content byte for byte, deletes; other tenants see nothing', async () => {
    const text = 'line one\r\n{"a": "ünï"}\n\nlast without newline';
    const file = await upload(text);
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'input.jsonl', bytes: Buffer.byteLength(text), status: 'processed' });
    expect(await client.files.retrieve(file.id)).toMatchObject({ id: file.id, bytes: file.bytes });
    expect(await (await client.files.content(file.id)).text()).toBe(text);
    const listed = await client.files.list({ purpose: 'batch' });
    expect(listed.data.map((f) => f.id)).toContain(file.id);

    const other = await stack.createTenantKey();
    const otherClient = new OpenAI({ apiKey: other.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    await expect(otherClient.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    await expect(otherClient.files.content(file.id)).rejects.toMatchObject({ status: 404 });
    expect((await otherClient.files.list()).data).toHaveLength(0);
    await expect(otherClient.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 404 });

    expect(await client.files.delete(file.id)).toMatchObject({ id: file.id, deleted: true });
    await expect(client.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
  });

  it('refuses a wrong purpose and a file over the line limit', async () => {
    await expect(client.files.create({ file: await toFile(Buffer.from('{}\n'), 'x.jsonl'), purpose: 'fine-tune' })).rejects.toMatchObject({ status: 400, param: 'purpose' });
    expect(await stack.db.selectFrom('files').select('id').where('purpose', '=', 'batch').execute()).toHaveLength(0);
  });
});

describe('batches', () => {
  // The full flow and cancel mid-batch run on llama.cpp (`sluice-tiny`): they are about generated
  // lines and the tokens they spent. The others are pipeline only (docs/testing.md) and use the
  // instant backend: line validation, the budget check, the CLI, limits, expiry, resume after the
  // workers stop, and recording outcomes; `stranded` is served by no worker.
  it('runs the full OpenAI flow on llama.cpp: one output line per input line, billed once each', async () => {
    const lines = Array.from({ length: 4 }, (_, i) => chatLine(`req-${i}`, 'sluice-tiny', `Say ${i}`));
    const file = await upload(jsonl(lines));
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { job: 'nightly' } });
    expect(created).toMatchObject({ object: 'batch', status: 'validating', input_file_id: file.id, completion_window: '24h', metadata: { job: 'nightly' } });

    const done = await waitFor(created.id, final);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 4, completed: 4, failed: 0 });
    expect(done.in_progress_at).not.toBeNull();
    expect(done.completed_at).not.toBeNull();
    expect(done.error_file_id).toBeNull();
    const out = await contentLines(done.output_file_id as string);
    expect(out.map((l) => l.custom_id).sort()).toEqual(['req-0', 'req-1', 'req-2', 'req-3']);
    for (const l of out) {
      expect(l).toMatchObject({ response: { status_code: 200, body: { object: 'chat.completion', model: 'sluice-tiny' } }, error: null });
      expect(l.response.request_id).toBe(l.id);
      // The random tiny model may end at once (0 completion tokens): assert the counts agree instead.
      const u = l.response.body.usage;
      expect(u.prompt_tokens).toBeGreaterThan(0);
      expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    }
    const usage = await usageOfBatch(created.id);
    expect(usage).toHaveLength(4);
    const byRequest = new Map(usage.map((u) => [u.request_id, u]));
    for (const l of out) expect(byRequest.get(l.response.request_id)?.output_tokens).toBe(l.response.body.usage.completion_tokens);
    expect(usage.every((u) => u.kind === 'batch')).toBe(true);
    const byBatch = await fetch(`${stack.url}/v1/admin/usage?group_by=batch`, { headers: { Authorization: `Bearer ${key}` } });
    const summary = (await byBatch.json()) as { data: Array<{ group: string; requests: number }> };
    expect(summary.data.find((g) => g.group === created.id)?.requests).toBe(4);
    const listed = await client.batches.list({ limit: 10 });
    expect(listed.data.map((b) => b.id)).toContain(created.id);
    // The lines ran inside the batch's workflow (its history shows each line's admission,
    // inference and completion), not as workflows of their own. The four lines started together
    // (window of 4), so one activity admitted all four; inferences and completions that finish
    // together share activities too.
    const history = await stack.client.workflow.getHandle(batchWorkflowId(created.id)).fetchHistory();
    const scheduled = (history.events ?? []).flatMap((e) => e.activityTaskScheduledEventAttributes ?? []);
    const itemsOf = (type: string) => scheduled
      .filter((a) => a.activityType?.name === type)
      .map((a) => (JSON.parse(Buffer.from(a.input!.payloads![0]!.data!).toString()) as { items: Array<{ requestId?: string; settle?: { requestId: string } }> }).items);
    const admitted = itemsOf('admitLines');
    expect(admitted).toHaveLength(1);
    expect(admitted[0]!.map((i) => i.requestId).sort()).toEqual(out.map((l) => l.response.request_id).sort());
    const completed = itemsOf('completeLines');
    expect(completed.length).toBeLessThanOrEqual(4);
    expect(completed.flat().map((i) => i.settle!.requestId).sort()).toEqual(out.map((l) => l.response.request_id).sort());
    const inferred = itemsOf('inferLines');
    expect(inferred.length).toBeLessThanOrEqual(4);
    expect(inferred.flat().map((i) => i.requestId).sort()).toEqual(out.map((l) => l.response.request_id).sort());
    expect(scheduled.filter((a) => ['admit', 'infer', 'complete'].includes(a.activityType?.name ?? ''))).toHaveLength(0);
    for (const l of out) {
      await expect(stack.client.workflow.getHandle(chatWorkflowId(l.response.request_id)).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
    }
  });

  it('reports every bad line with its number and reason, runs nothing', async () => {
    const file = await upload(jsonl([
      chatLine('a', 'instant', 'fine'),
      '{not json',
      chatLine('a', 'instant', 'duplicate id'),
      { ...chatLine('c', 'instant', 'x'), url: '/v1/embeddings' },
      { ...chatLine('d', 'instant', 'x'), method: 'GET' },
      { custom_id: 'e', method: 'POST', url: '/v1/chat/completions', body: { model: 'instant' } },
      chatLine('f', 'no-such-model', 'x'),
    ]));
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await waitFor(created.id, final);
    expect(done.status).toBe('failed');
    expect(done.failed_at).not.toBeNull();
    const errors = (done.errors?.data ?? []).map((e) => [e.line, e.code]);
    expect(errors).toEqual([
      [2, 'invalid_json_line'], [3, 'duplicate_custom_id'], [4, 'invalid_url'], [5, 'invalid_method'],
      [6, 'missing_required_parameter'], [7, 'model_not_found'],
    ]);
    expect(await usageOfBatch(created.id)).toHaveLength(0);
  });

  it('refuses a batch whose worst-case cost exceeds the remaining budget', async () => {
    const poor = await stack.createTenantKey({ limits: { monthly_budget_micros: 1 } });
    const poorClient = new OpenAI({ apiKey: poor.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const file = await upload(jsonl([chatLine('x', 'instant', 'a long prompt '.repeat(50), 16)]), poorClient);
    const created = await poorClient.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    let done: OpenAI.Batches.Batch;
    for (;;) {
      done = await poorClient.batches.retrieve(created.id);
      if (final(done)) break;
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(done.status).toBe('failed');
    expect(done.errors?.data?.[0]?.code).toBe('insufficient_quota');
  });

  it('cancels mid-batch: stops scheduling, writes partial output, bills only what ran', async () => {
    const lines = Array.from({ length: 40 }, (_, i) => chatLine(`c-${i}`, 'sluice-tiny', `Count to ${i}`, 48));
    const created = await client.batches.create({ input_file_id: (await upload(jsonl(lines))).id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(created.id, (b) => (b.request_counts?.completed ?? 0) >= 1);
    const cancelling = await client.batches.cancel(created.id);
    expect(['cancelling', 'cancelled']).toContain(cancelling.status);
    const done = await waitFor(created.id, final);
    expect(done.status).toBe('cancelled');
    expect(done.cancelled_at).not.toBeNull();
    const completed = done.request_counts?.completed ?? 0;
    expect(completed).toBeGreaterThanOrEqual(1);
    expect(completed).toBeLessThan(40);
    const out = await contentLines(done.output_file_id as string);
    const errs = await contentLines(done.error_file_id as string);
    expect(out).toHaveLength(completed);
    expect(out.length + errs.length).toBe(40);
    expect(errs.filter((e) => e.error?.code === 'batch_cancelled').length).toBeGreaterThan(0);
    // Billed: the completed lines. Lines cancelled mid-generation left what they spent, unbilled.
    const usage = await usageOfBatch(created.id);
    expect(usage.filter((u) => u.billable)).toHaveLength(completed);
    for (const u of usage.filter((row) => !row.billable)) expect(u.step).toMatch(/^infer:cancelled:/);
    const held = await stack.db.selectFrom('reservations').select('request_id').where('status', '=', 'held').execute();
    expect(held).toHaveLength(0);
  });

  it('sluice batch submit converts a plain prompts file, waits with progress, and fetches results', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-cli-'));
    const prompts = path.join(dir, 'prompts.txt');
    await fs.writeFile(prompts, 'first prompt\nsecond prompt\n\nthird prompt\n');
    const out: string[] = [];
    const err: string[] = [];
    const deps = { fetch: globalThis.fetch, out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    const conn = ['--url', stack.url, '--key', key];
    expect(await cli(['batch', 'submit', prompts, '--model', 'instant', '--max-tokens', '2', '--wait', ...conn], {}, deps)).toBe(0);
    const id = /batch_[A-Za-z0-9]+/.exec(out.join('\n'))?.[0] as string;
    expect(out.join('\n')).toContain('completed');
    expect(err.join('\n')).toMatch(/3\/3 done, 0 failed/);
    const results = path.join(dir, 'out.jsonl');
    expect(await cli(['batch', 'results', id, '-o', results, ...conn], {}, deps)).toBe(0);
    const lines = (await fs.readFile(results, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.custom_id)).toEqual(['line-1', 'line-2', 'line-3']);
    expect(await cli(['batch', 'list', ...conn], {}, deps)).toBe(0);
    expect(out.join('\n')).toContain(id);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('lines refused by a concurrency or per-minute limit wait their turn instead of failing', async () => {
    const limited = await stack.createTenantKey({ limits: { max_concurrent: 1 } });
    const c = new OpenAI({ apiKey: limited.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const n = 6;
    const lines = Array.from({ length: n }, (_, i) => chatLine(`w-${i}`, 'instant', `wait ${i}`));
    const created = await c.batches.create({ input_file_id: (await upload(jsonl(lines), c)).id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const deadline = Date.now() + 120_000;
    let done = await c.batches.retrieve(created.id);
    while (!final(done) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      done = await c.batches.retrieve(created.id);
    }
    // Four lines at a time against a limit of one: most were refused at least once, none failed.
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: n, completed: n, failed: 0 });
    const refusals = await stack.db.selectFrom('audit_log').select('action').where('tenant_id', '=', limited.tenantId).where('action', '=', 'request.failed').execute();
    expect(refusals).toHaveLength(0);
    expect(await usageOfBatch(created.id)).toHaveLength(n);
  });

  it('expires after its completion window: lines in flight cancelled, partial output, the rest batch_expired', async () => {
    // OpenAI's API only takes '24h': the window is shortened by starting the batch workflow itself
    // (as the API does) with a deadline a few seconds away.
    const lines = [chatLine('e-0', 'instant', 'done before expiry'), chatLine('e-1', 'stranded', 'never served'), chatLine('e-2', 'stranded', 'never served either')];
    const file = await upload(jsonl(lines));
    const tenantId = (await stack.db.selectFrom('files').select('tenant_id').where('id', '=', file.id).executeTakeFirstOrThrow()).tenant_id;
    const keyId = (await stack.db.selectFrom('api_keys').select('id').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow()).id;
    const id = `batch_expiry${Date.now()}`;
    const row = await insertBatch(stack.db, {
      id, tenantId, keyId, endpoint: '/v1/chat/completions', inputFileId: file.id, completionWindow: '24h', metadata: null, expiresAt: new Date(Date.now() + 10_000),
    });
    const input: BatchWorkflowInput = {
      batchId: id, tenantId, concurrency: 4, linesPerRun: 100, expiresAtMs: row.expires_at.getTime(), state: null,
    };
    await stack.client.workflow.start('batch', { taskQueue: CONTROL_TASK_QUEUE, workflowId: batchWorkflowId(id), args: [input] });
    // While the batch runs, the reconciler leaves its lines' reservations alone (they run inside
    // the batch workflow: there is no `chat-<line>` workflow to find).
    const linePrefix = `${id.replace(/^batch_/, 'batch_req_')}_`;
    for (let i = 0; ; i++) {
      const held = await stack.db.selectFrom('reservations').select('request_id').where('request_id', 'like', `${linePrefix}%`).where('status', '=', 'held').execute();
      if (held.length === 2) break;
      if (i > 100) throw new Error(`stranded lines hold ${held.length} reservations`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const reconciled = await stack.client.workflow.execute<typeof reconcileReservations>('reconcileReservations', {
      taskQueue: CONTROL_TASK_QUEUE, workflowId: `reconcile-batch-test-${Date.now()}`, args: [{ minAgeSeconds: 0, checkpoint: false, purgeLimit: 0 }],
    });
    expect(reconciled.checked).toBeGreaterThanOrEqual(2);
    expect(reconciled.released.filter((r) => r.startsWith(linePrefix))).toEqual([]);
    const done = await waitFor(id, final);
    expect(done.status).toBe('expired');
    expect(done.expired_at).not.toBeNull();
    expect(done.request_counts).toEqual({ total: 3, completed: 1, failed: 0 });
    const out = await contentLines(done.output_file_id as string);
    expect(out.map((l) => l.custom_id)).toEqual(['e-0']);
    const errors = await contentLines(done.error_file_id as string);
    expect(errors.map((l) => [l.custom_id, l.error?.code])).toEqual([['e-1', 'batch_expired'], ['e-2', 'batch_expired']]);
    // The stranded lines' reservations were released; only the line that ran is billed.
    expect((await usageOfBatch(id)).map((u) => u.billable)).toEqual([true]);
    const held = await stack.db.selectFrom('reservations').select('status').where('request_id', 'like', `${id.replace(/^batch_/, 'batch_req_')}_%`).execute();
    expect(held.filter((r) => r.status === 'held')).toHaveLength(0);
  });

  it('admits lines in whole chunks across the pages it loads (patched batch-chunk-pages)', async () => {
    // Chunks of 3, two in flight: 210 lines are 70 chunks. Pages of 200 lines (before the patch)
    // cut a chunk at the page's end (lines 199–200, then 201 alone): more, smaller admissions.
    const chunked = await startStack({ ...stack.config, batchConcurrency: 6, batchChunkLines: 3, batchLinesPerRun: 1000 }, {
      databaseUrl: stack.databaseUrl, temporalAddress: stack.temporal.address, api: true, control: false, pools: [], log: createLogger('warn'), migrate: false,
    });
    try {
      const c = new OpenAI({ apiKey: key, baseURL: `${chunked.url}/v1`, maxRetries: 0 });
      const n = 210;
      const lines = Array.from({ length: n }, (_, i) => chatLine(`page-${i}`, 'instant', `page ${i}`, 2));
      const created = await c.batches.create({ input_file_id: (await upload(jsonl(lines), c)).id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      const done = await waitFor(created.id, final);
      expect(done.request_counts).toEqual({ total: n, completed: n, failed: 0 });
      const history = await stack.client.workflow.getHandle(batchWorkflowId(created.id)).fetchHistory();
      const admits = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'admitLines');
      expect(admits).toHaveLength(n / 3);
    } finally {
      await chunked.stop();
    }
  });

  // Stops this file's workers: keep it last.
  it('runs a chunk of lines that each carry the most metadata: a chunk stays under the payload limit', async () => {
    // 300 lines in flight at once (an API whose batches run that many), each line with 16
    // metadata pairs of 512 characters (~9 KB), which travel to the line's admission: 256 such
    // lines in one chunk would be ~2.4 MB, over Temporal's 2 MB payload limit. What keeps a chunk
    // under it is the page of lines the workflow loads at a time (256 KB of lines, activities/batch.ts).
    const wide = await startStack({ ...stack.config, batchConcurrency: 300 }, {
      databaseUrl: stack.databaseUrl, temporalAddress: stack.temporal.address, api: true, control: false, pools: [], log: createLogger('warn'), migrate: false,
    });
    try {
      const c = new OpenAI({ apiKey: key, baseURL: `${wide.url}/v1`, maxRetries: 0 });
      const n = 300;
      const metadata = Object.fromEntries(Array.from({ length: 16 }, (_, k) => [`key-${String(k).padStart(2, '0')}`, 'm'.repeat(512)]));
      const lines = Array.from({ length: n }, (_, i) => {
        const line = chatLine(`meta-${i}`, 'instant', `metadata ${i}`, 2);
        return { ...line, body: { ...line.body, metadata } };
      });
      const created = await c.batches.create({ input_file_id: (await upload(jsonl(lines), c)).id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      const done = await waitFor(created.id, final);
      expect(done.status).toBe('completed');
      expect(done.request_counts).toEqual({ total: n, completed: n, failed: 0 });
      expect(await usageOfBatch(created.id)).toHaveLength(n);
    } finally {
      await wide.stop();
    }
  });

  it('resumes after the workers stop mid-batch: exactly one result and one usage row per line', async () => {
    const n = 120;
    const lines = Array.from({ length: n }, (_, i) => chatLine(`r-${i}`, 'instant', `resume ${i}`));
    const created = await client.batches.create({ input_file_id: (await upload(jsonl(lines))).id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(created.id, (b) => (b.request_counts?.completed ?? 0) >= 10);
    for (const w of stack.workers) if (w.getState() === 'RUNNING') w.shutdown();
    while (stack.workers.some((w) => w.getState() !== 'STOPPED')) await new Promise((r) => setTimeout(r, 50));
    const mid = await client.batches.retrieve(created.id);
    expect(mid.status).toBe('in_progress');
    expect(mid.request_counts?.completed ?? 0).toBeLessThan(n);

    const log = createLogger('warn');
    const fresh = await startStack(stack.config, {
      databaseUrl: stack.databaseUrl, temporalAddress: stack.temporal.address, api: false, control: true, pools: ['local'], log,
      workflowBundle: { codePath: inject('workflowBundlePath') }, migrate: false,
    });
    try {
      const done = await waitFor(created.id, final);
      expect(done.status).toBe('completed');
      expect(done.request_counts).toEqual({ total: n, completed: n, failed: 0 });
      const out = await contentLines(done.output_file_id as string);
      expect(out).toHaveLength(n);
      expect(new Set(out.map((l) => l.custom_id)).size).toBe(n);
      expect(await usageOfBatch(created.id)).toHaveLength(n);
      // History stayed bounded: the batch continued as new (20 lines per run here).
      const d = await stack.client.workflow.getHandle(batchWorkflowId(created.id)).describe();
      expect(d.historyLength).toBeLessThan(400);
    } finally {
      await fresh.stop();
    }
  });

  it('records the outcomes of a chunk of lines in one statement, U+0000 in a completion included, each request once', async () => {
    const { tenantId, keyId } = await stack.createTenantKey();
    const ids = ['req_nul_a', 'req_nul_b', 'req_nul_c'];
    for (const id of ids) await insertRequest(stack.db, { id, tenantId, keyId, kind: 'batch', model: 'instant', idempotencyKey: null, bodyHash: 'h' });
    const completion = { choices: [{ message: { content: 'a\u0000b' } }] };
    await finishRequests(stack.db, [
      { id: 'req_nul_a', status: 'succeeded', result: completion, error: null },
      { id: 'req_nul_b', status: 'failed', result: null, error: { type: 'X', message: 'm', code: null } },
    ]);
    // A replay of the same outcome, or another one, changes a finished request no more.
    await finishRequests(stack.db, [{ id: 'req_nul_a', status: 'failed', result: null, error: { type: 'late' } }]);
    const rows = await stack.db.selectFrom('requests').select(['id', 'status', 'result', 'error', 'finished_at']).where('id', 'in', ids).orderBy('id').execute();
    expect(rows.map((r) => [r.id, r.status])).toEqual([['req_nul_a', 'succeeded'], ['req_nul_b', 'failed'], ['req_nul_c', 'queued']]);
    expect(rows[0]!.result).toEqual(completion);
    expect(rows[0]!.error).toBeNull();
    expect(rows[1]!).toMatchObject({ result: null, error: { type: 'X', message: 'm', code: null } });
    expect(rows[2]!.finished_at).toBeNull();
  });
});
