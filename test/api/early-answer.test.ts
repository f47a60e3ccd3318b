/**
 * A sync chat request is answered as soon as its served inference output is in the workflow's
 * history, and settle and audit follow in the workflow (api/answer.ts). Proved on the real stack
 * (Temporal dev server, PostgreSQL, the instant backend): a transaction holding a lock on the
 * usage table blocks the workflow's settlement, yet the caller gets its completion, while the
 * workflow is still running and nothing is billed; once the lock goes, the request is settled
 * exactly once and its job holds the very completion the caller got.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { addInstantModel, startTestStack, type TestStack } from '../support/stack.js';
import { chatWorkflowId } from '../../contracts/ids.js';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
  await addInstantModel(stack);
}, 180_000);
afterAll(async () => {
  await stack?.stop();
});

async function chat(key: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: 'early' }], max_tokens: 4 }),
  });
  return { status: res.status, cache: res.headers.get('x-sluice-cache'), body: await res.json() as any };
}

/** Holds `lock table usage in share mode` (inserts wait, reads do not) until `release` is called. */
async function lockUsage(): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => { locked = r; });
  const done = stack.db.transaction().execute(async (trx) => {
    await sql`lock table usage in share mode`.execute(trx);
    locked();
    await released;
  });
  await isLocked;
  return async () => {
    release();
    await done;
  };
}

describe('early answer', () => {
  it('answers a sync request while its settlement is blocked; the request is then settled once and its job holds the same completion', async () => {
    const t = await stack.createTenantKey();
    const unlock = await lockUsage();
    let answer: Awaited<ReturnType<typeof chat>>;
    let requestId: string;
    try {
      answer = await chat(t.key);
      expect(answer.status).toBe(200);
      expect(answer.body.object).toBe('chat.completion');
      expect(answer.body.model).toBe('instant');
      expect(answer.cache).toBeNull();
      requestId = String(answer.body.id).replace(/^chatcmpl-/, '');
      // Answered before the settlement: the workflow is still running and nothing is billed yet.
      const d = await stack.client.workflow.getHandle(chatWorkflowId(requestId)).describe();
      expect(d.status.name).toBe('RUNNING');
      const billed = await stack.db.selectFrom('usage').select('request_id').where('request_id', '=', requestId).execute();
      expect(billed).toEqual([]);
    } finally {
      await unlock();
    }
    await stack.client.workflow.getHandle(chatWorkflowId(requestId)).result();
    const usage = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).execute();
    expect(usage.map((u) => u.step)).toEqual(['infer']);
    expect(usage[0]?.input_tokens).toBe(answer.body.usage.prompt_tokens);
    expect(usage[0]?.output_tokens).toBe(answer.body.usage.completion_tokens);
    const job = await fetch(`${stack.url}/v1/jobs/${requestId}`, { headers: { Authorization: `Bearer ${t.key}` } }).then((r) => r.json()) as any;
    expect(job.status).toBe('succeeded');
    expect(job.result).toEqual(answer.body);
  }, 120_000);

  it('a retry of the same Idempotency-Key after the request finished gets the same completion', async () => {
    const t = await stack.createTenantKey();
    const first = await chat(t.key, { 'Idempotency-Key': 'early-1' });
    expect(first.status).toBe(200);
    const requestId = String(first.body.id).replace(/^chatcmpl-/, '');
    await stack.client.workflow.getHandle(chatWorkflowId(requestId)).result();
    const again = await chat(t.key, { 'Idempotency-Key': 'early-1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
  }, 120_000);
});
