/**
 * `SLUICE_EARLY_ANSWER=true`: a sync chat request is answered as soon as its served inference
 * output is in the workflow's history, settle and audit following in the workflow (api/answer.ts).
 * Proved on the real stack (Temporal dev server, PostgreSQL, the instant backend; pipeline only;
 * payloads encrypted with `SLUICE_PAYLOAD_KEY`, so the answer is decoded through the codec)
 * with a transaction holding a lock on the usage table, which blocks the workflow's settlement:
 * - the caller gets its completion while the workflow still runs and nothing is billed yet; once
 *   the lock goes, the request is settled exactly once and its job holds the very completion the
 *   caller got;
 * - a cancel sent after the answer is too late: the caller has the text, so the request is
 *   settled and billed all the same (the workflow settles a served attempt out of any cancel's
 *   reach), never left unbilled;
 * - a retry of its Idempotency-Key while the settlement is blocked gets the same completion;
 * - a response-cache miss is answered early with its `miss` header, and stored once settled;
 * - the histories of these runs replay against the workflow code without non-determinism, and so
 *   do they without the `infer` attempt's summary (as the release before it recorded them);
 * - the API answers from the history only an attempt scheduled with `ANSWERED_EARLY_SUMMARY`: the
 *   same history without it (a worker that ignores `answeredEarly`) is answered by the result;
 * - a tenant under a concurrency limit is answered by the result (its limit counts a request until
 *   its settlement), so its one-at-a-time requests are never refused for their own previous one.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sql } from 'kysely';
import { Worker } from '@temporalio/worker';
import { addInstantModel, startTestStack, type TestStack } from '../support/stack.js';
import type { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { decodeOptionalSinglePayload } from '@temporalio/common/lib/internal-non-workflow/index.js';
import type { temporal } from '@temporalio/proto';
import { chatWorkflowId } from '../../contracts/ids.js';
import { ANSWERED_EARLY_SUMMARY } from '../../contracts/chat.js';
import { payloadCodecsFor } from '../../runtime/payload-codec.js';
import { awaitEarlyAnswer } from '../../api/answer.js';

let stack: TestStack;

beforeAll(async () => {
  // Payloads encrypted, as in production: the answer is decoded from the history through the client's codec.
  stack = await startTestStack({ env: { SLUICE_EARLY_ANSWER: 'true', SLUICE_PAYLOAD_KEY: randomBytes(32).toString('base64') } });
  await addInstantModel(stack);
}, 180_000);
afterAll(async () => {
  await stack?.stop();
});

async function chat(key: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: 'early' }], max_tokens: 4, ...extra }),
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, cache: res.headers.get('x-sluice-cache'), body: await res.json() as any };
}

/** Holds `lock table usage in share mode` (inserts wait, reads do not) until the returned function is called. */
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

/** The summaries of a history's `infer` attempts, decoded as the client decodes them (through the codec). */
async function summariesOf(history: temporal.api.history.v1.IHistory): Promise<unknown[]> {
  const scheduled = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'infer');
  return Promise.all(scheduled.map(async (e) => {
    const summary = e.userMetadata?.summary;
    return summary ? decodeOptionalSinglePayload(stack.client.workflow.options.loadedDataConverter, summary as Payload) : null;
  }));
}

/** `history` as a worker that ignores `answeredEarly` records it: its events without user metadata. */
function withoutSummaries(history: temporal.api.history.v1.IHistory): temporal.api.history.v1.IHistory {
  return { ...history, events: (history.events ?? []).map((e) => ({ ...e, userMetadata: null })) };
}

/** The requests answered early by the tests, for the replay at the end. */
const answered: string[] = [];
const requestIdOf = (completion: { id: string }) => {
  const id = String(completion.id).replace(/^chatcmpl-/, '');
  answered.push(id);
  return id;
};
const usageOf = (requestId: string) => stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).execute();

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A sync request answered while its settlement is blocked (`lockUsage`): `during` runs with its
 * answer and request ID before the lock goes.
 */
async function answeredWhileBlocked(key: string, during: (answer: Awaited<ReturnType<typeof chat>>, requestId: string) => Promise<void>) {
  const unlock = await lockUsage();
  try {
    const answer = await chat(key);
    expect(answer.status).toBe(200);
    const requestId = requestIdOf(answer.body);
    await during(answer, requestId);
    return { answer, requestId };
  } finally {
    await unlock();
  }
}

describe('early answer', () => {
  it('answers a sync request while its settlement is blocked; the request is then settled once and its job holds the same completion', async () => {
    const t = await stack.createTenantKey();
    const { answer, requestId } = await answeredWhileBlocked(t.key, async ({ body, cache }, id) => {
      expect(body.object).toBe('chat.completion');
      expect(body.model).toBe('instant');
      expect(cache).toBeNull();
      // Answered before the settlement: the workflow is still running and nothing is billed yet.
      const d = await stack.client.workflow.getHandle(chatWorkflowId(id)).describe();
      expect(d.status.name).toBe('RUNNING');
      expect(await usageOf(id)).toEqual([]);
    });
    await stack.client.workflow.getHandle(chatWorkflowId(requestId)).result();
    const usage = await usageOf(requestId);
    expect(usage.map((u) => [u.step, u.billable])).toEqual([['infer', true]]);
    expect(usage[0]?.input_tokens).toBe(answer.body.usage.prompt_tokens);
    expect(usage[0]?.output_tokens).toBe(answer.body.usage.completion_tokens);
    const job = await fetch(`${stack.url}/v1/jobs/${requestId}`, { headers: { Authorization: `Bearer ${t.key}` } }).then((r) => r.json()) as any;
    expect(job.status).toBe('succeeded');
    expect(job.result).toEqual(answer.body);
  }, 120_000);

  it('a cancel after the answer is too late: the request is settled and billed once, not recorded as cancelled', async () => {
    const t = await stack.createTenantKey();
    const { answer, requestId } = await answeredWhileBlocked(t.key, async (_answer, id) => {
      const handle = stack.client.workflow.getHandle(chatWorkflowId(id));
      await handle.cancel();
      // The cancel is in the history before the settlement could run (it waits on the lock).
      await waitFor('the cancel request in the history', async () =>
        (await handle.fetchHistory()).events?.some((e) => e.workflowExecutionCancelRequestedEventAttributes) ?? false);
      expect(await usageOf(id)).toEqual([]);
    });
    const result = await stack.client.workflow.getHandle(chatWorkflowId(requestId)).result();
    expect(result).toEqual(answer.body);
    const usage = await usageOf(requestId);
    expect(usage.map((u) => [u.step, u.billable])).toEqual([['infer', true]]);
    const row = await stack.db.selectFrom('requests').select(['status']).where('id', '=', requestId).executeTakeFirstOrThrow();
    expect(row.status).toBe('succeeded');
    const reservations = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', requestId).execute();
    expect(reservations.map((r) => r.status)).toEqual(['settled']);
  }, 120_000);

  it('a retry of the Idempotency-Key while the settlement is blocked gets the same completion, billed once', async () => {
    const t = await stack.createTenantKey();
    const unlock = await lockUsage();
    let first: Awaited<ReturnType<typeof chat>>;
    try {
      first = await chat(t.key, { 'Idempotency-Key': 'early-1' });
      expect(first.status).toBe(200);
      const again = await chat(t.key, { 'Idempotency-Key': 'early-1' });
      expect(again.status).toBe(200);
      expect(again.body).toEqual(first.body);
    } finally {
      await unlock();
    }
    const requestId = requestIdOf(first.body);
    await stack.client.workflow.getHandle(chatWorkflowId(requestId)).result();
    expect((await usageOf(requestId)).map((u) => u.step)).toEqual(['infer']);
  }, 120_000);

  it("a cache miss is answered early with its 'miss' header; once settled, the same request is a hit with the same message", async () => {
    const t = await stack.createTenantKey();
    const r = await stack.admin('PATCH', `/v1/admin/tenants/${t.tenantId}`, { cache: { enabled: true } });
    expect(r.status).toBe(200);
    const first = await chat(t.key, {}, { temperature: 0 });
    expect(first.status).toBe(200);
    expect(first.cache).toBe('miss');
    await stack.client.workflow.getHandle(chatWorkflowId(requestIdOf(first.body))).result();
    const second = await chat(t.key, {}, { temperature: 0 });
    expect(second.status).toBe(200);
    expect(second.cache).toBe('hit');
    expect(second.body.choices).toEqual(first.body.choices);
    expect(second.body.usage).toEqual(first.body.usage);
  }, 120_000);

  it('a tenant under a concurrency limit is answered once settled: one request at a time never meets its own previous one', async () => {
    const t = await stack.createTenantKey({ limits: { max_concurrent: 1 } });
    for (let i = 0; i < 5; i++) {
      const r = await chat(t.key);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const id = String(r.body.id).replace(/^chatcmpl-/, '');
      // Answered by the result: billed by the time the caller has it, and started without `answeredEarly`.
      expect((await usageOf(id)).map((u) => u.step)).toEqual(['infer']);
      expect(await summariesOf(await stack.client.workflow.getHandle(chatWorkflowId(id)).fetchHistory())).toEqual([null]);
    }
  }, 120_000);

  it('the histories of the requests answered early (one cancelled too late among them) replay without non-determinism, with and without the summary', async () => {
    expect(answered.length).toBeGreaterThanOrEqual(4);
    for (const requestId of answered) {
      const handle = stack.client.workflow.getHandle(chatWorkflowId(requestId));
      await handle.result();
      const history = await handle.fetchHistory();
      expect(await summariesOf(history)).toEqual([ANSWERED_EARLY_SUMMARY]);
      for (const h of [history, withoutSummaries(history)]) {
        await Worker.runReplayHistory(
          { workflowBundle: { codePath: inject('workflowBundlePath') }, dataConverter: { payloadCodecs: payloadCodecsFor(stack.config) } },
          h, chatWorkflowId(requestId),
        );
      }
    }
  }, 120_000);

  it("answers from the history only an attempt scheduled with the summary: the same history without it (a worker that ignores 'answeredEarly') waits for the result", async () => {
    const requestId = answered[0]!;
    const handle = stack.client.workflow.getHandle(chatWorkflowId(requestId));
    await handle.result();
    const history = await handle.fetchHistory();
    /** The client, its history RPC answering `h` in one page. */
    const serving = (h: temporal.api.history.v1.IHistory) => ({
      workflow: stack.client.workflow,
      workflowService: { getWorkflowExecutionHistory: async () => ({ history: h, nextPageToken: new Uint8Array() }) },
    }) as unknown as Client;
    const early = await awaitEarlyAnswer(serving(history), chatWorkflowId(requestId));
    expect(early).toMatchObject({ served: true, model: 'instant' });
    expect(await awaitEarlyAnswer(serving(withoutSummaries(history)), chatWorkflowId(requestId))).toEqual({ served: false });
  }, 120_000);
});
