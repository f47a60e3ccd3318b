/**
 * Durability on real parts: a job cancelled mid-generation, an inference worker process killed
 * mid-generation, and the Temporal server stopped and restarted with requests in flight.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { addModel, pollJob, startJob, startTestStack, waitForGeneration, startInferenceWorkerProcess, type TestStack } from '../support/stack.js';
import { freePort, SLOW_GGUF } from '../support/global-setup.js';
import { startTemporalDevServer } from '../../scripts/lib/temporal-dev-server.js';
import { chatWorkflowId } from '../../contracts/ids.js';

let stack: TestStack;
let key: string;
let tmp: string;
let temporalPort: number;

/** Starts `npm run worker:inference` for a pool as its own process. */
function startWorkerProcess(pool: string): ChildProcess {
  return startInferenceWorkerProcess(stack, pool, { DATABASE_URL: stack.databaseUrl });
}

async function usageRows(requestId: string) {
  return stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).execute();
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-durability-'));
  temporalPort = await freePort();
  stack = await startTestStack({ temporalDbFile: path.join(tmp, 'temporal.db'), temporalPort });
  await addModel(stack, {
    id: 'sluice-slow', context_length: 1024, max_output_tokens: 600,
    deployments: [{ id: 'slow-local', provider: 'llama-cpp', pool: 'local', gguf_path: SLOW_GGUF }],
  });
  await addModel(stack, {
    id: 'sluice-slow-remote', context_length: 1024, max_output_tokens: 600,
    deployments: [{ id: 'slow-crashy', provider: 'llama-cpp', pool: 'crashy', gguf_path: SLOW_GGUF }],
  });
  ({ key } = await stack.createTenantKey());
});
afterAll(async () => {
  await stack?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('cancel', () => {
  it('cancels a running job: reservation released, nothing billed, the tokens it spent recorded unbilled, audited', async () => {
    const job = await startJob(stack, key, { model: 'sluice-slow', messages: [{ role: 'user', content: 'a long story' }], max_tokens: 500, temperature: 0 });
    await waitForGeneration(stack, job.id);
    const res = await fetch(`${stack.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).status).toBe('cancelled');
    // The generation was waited for: it reported the prompt and the tokens it had produced.
    const rows = await usageRows(job.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ step: 'infer:cancelled:slow-local', deployment_id: 'slow-local', billable: false });
    expect(rows[0]!.input_tokens).toBeGreaterThan(0);
    expect(rows[0]!.output_tokens).toBeGreaterThan(0);
    // The cancellation reaches the worker within its heartbeat throttle (2 s): on a fast machine the
    // generation may finish first, and then its tokens are recorded as cancelled all the same.
    expect(rows[0]!.output_tokens).toBeLessThanOrEqual(500);
    const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', job.id).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('released');
    const audit = await stack.db.selectFrom('audit_log').selectAll().where('target', '=', `request:${job.id}`).execute();
    expect(audit.map((a) => a.action)).toEqual(['request.cancelled']);
    const spend = await stack.db.selectFrom('tenant_spend').selectAll().where('tenant_id', '=', reservation.tenant_id).execute();
    expect(spend.every((s) => s.reserved_micros === 0)).toBe(true);
    expect(spend.every((s) => s.spent_micros === 0)).toBe(true);
  });

  it('cancelling a finished job changes nothing', async () => {
    const job = await startJob(stack, key, { model: 'sluice-tiny', messages: [{ role: 'user', content: 'quick' }], max_tokens: 3 });
    const done = await pollJob(stack, key, job.id, (s) => s === 'succeeded');
    const res = await fetch(`${stack.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    expect(((await res.json()) as any).status).toBe('succeeded');
    expect(done.status).toBe('succeeded');
    expect(await usageRows(job.id)).toHaveLength(1);
  });
});

describe('worker crash', () => {
  it('an inference worker killed mid-generation: the activity completes on a restarted worker, billed once, the lost attempt recorded unbilled', async () => {
    let worker = startWorkerProcess('crashy');
    try {
      const job = await startJob(stack, key, { model: 'sluice-slow-remote', messages: [{ role: 'user', content: 'crash me' }], max_tokens: 400, temperature: 0 });
      await waitForGeneration(stack, job.id, 90_000, worker);
      worker.kill('SIGKILL');
      await new Promise((r) => worker.once('exit', r));
      worker = startWorkerProcess('crashy');
      const done = await pollJob(stack, key, job.id, (s) => s === 'succeeded' || s === 'failed', 120_000);
      expect(done.status).toBe('succeeded');
      const rows = await usageRows(job.id);
      expect(rows.filter((r) => r.billable).map((r) => r.step)).toEqual(['infer']);
      // What the killed attempt had reported by its last heartbeat: its prompt and tokens so far.
      const lost = rows.filter((r) => !r.billable);
      expect(lost.map((r) => r.step)).toEqual(['infer:failed:slow-crashy']);
      expect(lost[0]!.input_tokens).toBe(rows.find((r) => r.billable)!.input_tokens);
      expect(lost[0]!.output_tokens).toBeGreaterThan(0);
      const history = await stack.client.workflow.getHandle(chatWorkflowId(job.id)).fetchHistory();
      const attempts = (history.events ?? []).flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt] : []));
      expect(attempts).toEqual([2]); // the started event records the attempt that completed
    } finally {
      worker.kill('SIGKILL');
    }
  });
});

describe('Temporal restart', () => {
  it('stops and restarts the Temporal server with its data file while requests are in flight: all complete, each billed once', async () => {
    const jobs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => startJob(stack, key, { model: 'sluice-slow', messages: [{ role: 'user', content: `restart ${i}` }], max_tokens: 120, temperature: 0 })),
    );
    await waitForGeneration(stack, jobs[0].id);
    await stack.temporal.stop();
    await new Promise((r) => setTimeout(r, 2000));
    const restarted = await startTemporalDevServer({ dbFile: path.join(tmp, 'temporal.db'), port: temporalPort, uiPort: null });
    stack.temporal = restarted;
    for (const job of jobs) {
      const done = await pollJob(stack, key, job.id, (s) => s === 'succeeded' || s === 'failed', 120_000);
      expect(done?.status).toBe('succeeded');
      // Billed once; an attempt that timed out while the server was away may have left its spent tokens, unbilled.
      const rows = await usageRows(job.id);
      expect(rows.filter((r) => r.billable)).toHaveLength(1);
      for (const r of rows.filter((row) => !row.billable)) expect(r.step).toBe('infer:failed:slow-local');
    }
  });
});
