/**
 * A streamed request whose inference worker process is killed after it sent text (issue 13): the
 * retry on a restarted worker sees, in the last heartbeat, that text was sent and ends the request
 * instead of restarting the text; the client gets an error event; one ledger outcome, unbilled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { addModel, startTestStack, startInferenceWorkerProcess, type TestStack } from '../support/stack.js';
import { SLOW_GGUF } from '../support/global-setup.js';
import { chatWorkflowId } from '../../contracts/ids.js';

let stack: TestStack;
let key: string;

/** `npm run worker:inference` for a pool, as its own process, publishing chunks through SLUICE_STREAM_DATABASE_URL. */
function startWorkerProcess(pool: string): ChildProcess {
  return startInferenceWorkerProcess(stack, pool, { SLUICE_STREAM_DATABASE_URL: stack.databaseUrl });
}

beforeAll(async () => {
  stack = await startTestStack();
  await addModel(stack, {
    id: 'slow-stream', context_length: 1024, max_output_tokens: 600,
    deployments: [{ id: 'slow-stream-crashy', provider: 'llama-cpp', pool: 'crashy', gguf_path: SLOW_GGUF }],
  });
  ({ key } = await stack.createTenantKey());
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

/** Waits until the last heartbeat the server holds says the attempt sent text. */
async function waitForStreamedBeat(requestId: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const handle = stack.client.workflow.getHandle(chatWorkflowId(requestId));
  while (Date.now() < deadline) {
    const d = await handle.describe().catch(() => null);
    const payload = d?.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0]?.data;
    if (payload && JSON.parse(Buffer.from(payload).toString()).streamed === true) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`request ${requestId} sent no streamed heartbeat`);
}

describe('inference worker killed mid-stream', () => {
  it('ends the stream with an error event, never a restarted text, and records one outcome, unbilled', async () => {
    let worker = startWorkerProcess('crashy');
    try {
      const res = await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'slow-stream', messages: [{ role: 'user', content: 'crash me while streaming' }], max_tokens: 500, temperature: 0, stream: true }),
      });
      expect(res.status).toBe(200);
      const jobId = res.headers.get('x-sluice-job-id') as string;
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      const readUntil = async (done: () => boolean) => {
        while (!done()) {
          const { done: end, value } = await reader.read();
          if (end) return;
          text += decoder.decode(value, { stream: true });
        }
      };
      await readUntil(() => /\nid: [1-9]/.test(`\n${text}`));
      await waitForStreamedBeat(jobId);
      worker.kill('SIGKILL');
      await new Promise((r) => worker.once('exit', r));
      worker = startWorkerProcess('crashy');
      await readUntil(() => false);
      const events = text.split('\n\n').filter(Boolean);
      const last = events.at(-1) ?? '';
      expect(last).toMatch(/^id: \d+-e\n/);
      const error = JSON.parse(last.split('data: ')[1] ?? '{}').error;
      expect(error).toMatchObject({ code: 'stream_interrupted', type: 'service_unavailable', param: null });
      expect(text).not.toContain('[DONE]');

      const handle = stack.client.workflow.getHandle(chatWorkflowId(jobId));
      expect((await handle.describe()).status.name).toBe('FAILED');
      const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', jobId).execute();
      expect(rows.filter((r) => r.billable)).toEqual([]);
      expect(rows.every((r) => r.step === 'infer:failed:slow-stream-crashy')).toBe(true);
      const audit = await stack.db.selectFrom('audit_log').selectAll().where('target', '=', `request:${jobId}`).execute();
      expect(audit.map((a) => a.action)).toEqual(['request.failed']);
      const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', jobId).executeTakeFirstOrThrow();
      expect(reservation.status).toBe('released');
    } finally {
      worker.kill('SIGKILL');
    }
  });
});
