/**
 * A workflow start that fails, for the chat and batch routes: Temporal unreachable or overloaded
 * is 503 `temporal_unavailable` (retry), an existing workflow of the same ID is the same work (the
 * request is answered by it), anything else is 500 `internal_error`. Every failure is logged with
 * the request's or batch's ID, and nothing the failed start created is left behind.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ServiceError, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { addInstantModel, settled, startTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let key: string;

beforeAll(async () => {
  stack = await startTestStack();
  await addInstantModel(stack);
  ({ key } = await stack.createTenantKey());
});
afterAll(async () => {
  await stack?.stop();
});

/** The client error for a gRPC UNAVAILABLE, as the client wraps it. */
function unavailable(): ServiceError {
  const grpc = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14, details: 'No connection established', metadata: {} });
  return new ServiceError('Failed to start Workflow', { cause: grpc });
}

async function post(path: string, body: unknown) {
  const res = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() as any };
}

const CHAT = { model: 'instant', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 };

/** Log lines about a failed start, parsed. */
function startLogs(): Array<Record<string, unknown>> {
  return stack.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.msg).includes('workflow'));
}

async function uploadBatchFile(): Promise<string> {
  const form = new FormData();
  form.append('purpose', 'batch');
  const line = JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: CHAT });
  form.append('file', new Blob([`${line}\n`]), 'input.jsonl');
  const res = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: form });
  expect(res.status).toBe(200);
  return ((await res.json()) as { id: string }).id;
}

describe('chat: a failed workflow start', () => {
  // Pipeline only (docs/testing.md): the instant backend answers; what is under test is the start
  // of the workflow, not inference.
  it('answers 503 temporal_unavailable when Temporal is unreachable, logs it with the request ID, and keeps no request row', async () => {
    const spy = vi.spyOn(stack.client.workflow, 'start').mockRejectedValueOnce(unavailable());
    const before = startLogs().length;
    const r = await post('/v1/chat/completions', CHAT);
    spy.mockRestore();
    expect(r.status).toBe(503);
    expect(r.retryAfter).toBe('1');
    expect(r.body.error).toMatchObject({ type: 'service_unavailable', code: 'temporal_unavailable' });
    const logged = startLogs().slice(before);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 'error', kind: 'unavailable', grpc_code: 14 });
    const requestId = String(logged[0]?.request_id);
    expect(requestId).toMatch(/^req_/);
    expect(await stack.db.selectFrom('requests').select('id').where('id', '=', requestId).executeTakeFirst()).toBeUndefined();
  });

  it('answers 500 internal_error for any other start error, without its detail, and logs it', async () => {
    const spy = vi.spyOn(stack.client.workflow, 'start').mockRejectedValueOnce(new TypeError('secret internal detail'));
    const before = startLogs().length;
    const r = await post('/v1/chat/completions', CHAT);
    spy.mockRestore();
    expect(r.status).toBe(500);
    expect(r.body.error).toMatchObject({ type: 'server_error', code: 'internal_error' });
    expect(JSON.stringify(r.body)).not.toContain('secret internal detail');
    const logged = startLogs().slice(before);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 'error', kind: 'internal', error: 'TypeError' });
    expect(String(logged[0]?.detail)).toContain('secret internal detail');
    expect(await stack.db.selectFrom('requests').select('id').where('id', '=', String(logged[0]?.request_id)).executeTakeFirst()).toBeUndefined();
  });

  it('answers from the workflow when it already exists (the same request ID is the same work)', async () => {
    const real = stack.client.workflow.start.bind(stack.client.workflow);
    const spy = vi.spyOn(stack.client.workflow, 'start').mockImplementationOnce(async (...args: Parameters<typeof real>) => {
      await real(...args);
      throw new WorkflowExecutionAlreadyStartedError('Workflow execution already started', args[1].workflowId, 'chatRequest');
    });
    const r = await post('/v1/chat/completions', CHAT);
    spy.mockRestore();
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ object: 'chat.completion', model: 'instant' });
    await settled(stack, r.body);
    expect(await stack.db.selectFrom('requests').select('status').where('id', '=', String(r.body.id).replace(/^chatcmpl-/, '')).executeTakeFirst()).toEqual({ status: 'succeeded' });
  });
});

describe('chat: an API process that died between the request row and the workflow start', () => {
  // Pipeline only (docs/testing.md). The first call's start never returns (as if its process had
  // been killed right after writing the row); the client gives up and retries with the same key.
  it('a retry with the same Idempotency-Key starts the workflow and gets the answer', async () => {
    const idempotencyKey = `died-${Date.now()}`;
    const spy = vi.spyOn(stack.client.workflow, 'start').mockImplementationOnce(() => new Promise(() => undefined));
    const abort = new AbortController();
    const first = fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', signal: abort.signal,
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey },
      body: JSON.stringify(CHAT),
    }).catch(() => null);
    // The row exists and no workflow was started for it.
    const deadline = Date.now() + 60_000;
    let row: { id: string; status: string } | undefined;
    while (!(row = await stack.db.selectFrom('requests').select(['id', 'status']).where('idempotency_key', '=', idempotencyKey).executeTakeFirst()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(row).toMatchObject({ status: 'queued' });
    expect(spy).toHaveBeenCalledTimes(1);
    abort.abort();
    await first;
    spy.mockRestore();
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey },
      body: JSON.stringify(CHAT),
    });
    const body = await res.json() as { id: string; object: string };
    expect(res.status).toBe(200);
    expect(body).toMatchObject({ id: `chatcmpl-${row!.id}`, object: 'chat.completion' });
    await settled(stack, body);
    expect(await stack.db.selectFrom('requests').select('status').where('id', '=', row!.id).executeTakeFirst()).toEqual({ status: 'succeeded' });
    expect((await stack.db.selectFrom('usage').select('step').where('request_id', '=', row!.id).execute()).map((u) => u.step)).toEqual(['infer']);
  });
});

describe('batches: a failed workflow start', () => {
  // Pipeline only (docs/testing.md): the batch workflow's start fails before any line is served.
  it('answers 503 temporal_unavailable or 500 internal_error, logged with the batch ID, and keeps no batch row', async () => {
    const fileId = await uploadBatchFile();
    const create = { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' };

    const spy = vi.spyOn(stack.client.workflow, 'start').mockRejectedValueOnce(unavailable()).mockRejectedValueOnce(new Error('boom'));
    const before = startLogs().length;
    const down = await post('/v1/batches', create);
    const broken = await post('/v1/batches', create);
    spy.mockRestore();
    expect(down.status).toBe(503);
    expect(down.body.error).toMatchObject({ code: 'temporal_unavailable' });
    expect(broken.status).toBe(500);
    expect(broken.body.error).toMatchObject({ code: 'internal_error' });
    const logged = startLogs().slice(before);
    expect(logged.map((l) => l.kind)).toEqual(['unavailable', 'internal']);
    for (const l of logged) {
      expect(String(l.batch_id)).toMatch(/^batch_/);
      expect(await stack.db.selectFrom('batches').select('id').where('id', '=', String(l.batch_id)).executeTakeFirst()).toBeUndefined();
    }
  });
});
