/**
 * The production shape run for real (issue 17): `startCluster` — the Temporal server 1.30.9 on
 * PostgreSQL, two API processes behind nginx, two control workers, two llama.cpp inference workers
 * (payloads encrypted), each its own OS process — under a steady mix of sync, async and streamed
 * requests and one batch through the load balancer, while processes are SIGKILLed and restarted;
 * then the books: one terminal state and one ledger outcome per accepted request, nothing held, the
 * batch's lines once each, the audit chain intact. Also limits across the two API processes and a
 * rolling restart of the control workers.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { chatWorkflowId } from '../../contracts/ids.js';
import { startLoad, startTestCluster, waitUntil, type Op, type TestCluster } from './support.js';
import { settled } from '../support/stack.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster();
}, 480_000);

afterAll(async () => {
  await cluster?.close();
}, 120_000);

const FINAL = ['succeeded', 'failed', 'cancelled'];

/** Request IDs of the accepted operations, by Idempotency-Key, from the database. */
async function requestRows(tenantId: string) {
  const r = await cluster.db.query<{ id: string; idempotency_key: string | null; status: string }>(
    'select id, idempotency_key, status from requests where tenant_id = $1', [tenantId]);
  return r.rows;
}

async function billableRows(tenantId: string) {
  const r = await cluster.db.query<{ request_id: string; n: string; cost: string }>(
    'select request_id, count(*) as n, sum(cost_micros) as cost from usage where tenant_id = $1 and billable group by request_id', [tenantId]);
  return new Map(r.rows.map((row) => [row.request_id, Number(row.n)]));
}

/** The worker identity (`pid@host`) running the request's inference once it has generated tokens. */
async function generatingOn(requestId: string, timeoutMs = 120_000): Promise<number> {
  const handle = cluster.temporalClient.workflow.getHandle(chatWorkflowId(requestId));
  let pid = 0;
  await waitUntil(`request ${requestId} generating`, async () => {
    const d = await handle.describe();
    const pending = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'infer');
    const payload = pending?.heartbeatDetails?.payloads?.[0]?.data;
    if (!payload || !pending?.lastWorkerIdentity) return false;
    // Heartbeat details are encrypted by the payload codec: any heartbeat after the first start is progress.
    pid = Number(pending.lastWorkerIdentity.split('@')[0]);
    return Number.isInteger(pid) && pid > 0;
  }, timeoutMs);
  return pid;
}

describe('faults under load through the load balancer', () => {
  it('SIGKILL of an API, a control worker, an inference worker mid-generation and Temporal, and a PostgreSQL restart: every accepted request ends once, billed once, nothing held, the batch complete, the audit chain intact', async () => {
    const { tenantId, key } = await cluster.createTenantKey();
    const client = new OpenAI({ apiKey: key, baseURL: `${cluster.url}/v1`, maxRetries: 0 });
    const LINES = 12;
    const lines = Array.from({ length: LINES }, (_, i) => JSON.stringify({
      custom_id: `line-${i}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: 'sluice-tiny', messages: [{ role: 'user', content: `batch ${i}` }], max_tokens: 6, temperature: 0 },
    }));
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'faults.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });

    const load = startLoad(cluster, key, 4);
    await load.progress(6);

    // 1. An API process: in-flight requests through it are cut off; clients retry on the other.
    const [api1] = cluster.apis;
    await api1!.kill('SIGKILL');
    await load.progress(6);
    await api1!.start();

    // 2. A control worker: its workflow tasks and local activities move to the other one.
    const [control1] = cluster.controlWorkers;
    await control1!.kill('SIGKILL');
    await load.progress(6);
    await control1!.start();

    // 3. An inference worker in the middle of a generation (the larger model, long enough to catch).
    const slowKey = randomUUID();
    const slowBody = { model: 'sluice-slow', messages: [{ role: 'user', content: 'a long answer' }], max_tokens: 400, temperature: 0 };
    const slow = await cluster.call(key, 'POST', '/v1/chat/completions', slowBody, { 'Idempotency-Key': slowKey, Prefer: 'respond-async' });
    expect(slow.status).toBe(202);
    const pid = await generatingOn(slow.body.id as string);
    const victim = cluster.inferenceWorkers.find((w) => w.pid() === pid);
    expect(victim, `inference worker with pid ${pid}`).toBeDefined();
    await victim!.kill('SIGKILL');
    await load.progress(4);
    await victim!.start();

    // 4. The Temporal server, killed and restarted on the same ports and databases.
    await cluster.temporal.kill('SIGKILL');
    await cluster.temporal.start();
    await load.progress(6);

    // 5. PostgreSQL restarted under everyone's pools (Temporal's and Sluice's).
    await cluster.restartPostgres();
    await load.progress(6);

    const ops = await load.stop();
    const accepted = ops.filter((o: Op) => o.failure === null);
    expect(ops.filter((o) => o.failure !== null).map((o) => `${o.kind}: ${o.failure}`)).toEqual([]);
    expect(accepted.length).toBeGreaterThanOrEqual(34);
    for (const kind of ['sync', 'async', 'stream'] as const) expect(accepted.some((o) => o.kind === kind), kind).toBe(true);

    // Every accepted request reaches exactly one terminal state.
    const expectedKeys = new Set([...accepted.map((o) => o.idempotencyKey), slowKey]);
    await waitUntil('every accepted request final', async () => {
      const rows = (await requestRows(tenantId)).filter((r) => r.idempotency_key !== null);
      return rows.length >= expectedKeys.size && rows.every((r) => FINAL.includes(r.status));
    }, 300_000);
    const rows = (await requestRows(tenantId)).filter((r) => r.idempotency_key !== null);
    // One request per Idempotency-Key, however often its client retried.
    expect(rows.map((r) => r.idempotency_key).sort()).toEqual([...expectedKeys].sort());
    const billable = await billableRows(tenantId);
    const opOf = (r: { idempotency_key: string | null }) => accepted.find((o) => o.idempotencyKey === r.idempotency_key);
    for (const r of rows) {
      const op = opOf(r);
      if (op?.finalError) {
        // A stream whose generation died after its first chunk ends there (never restarted):
        // failed, the tokens it sent recorded unbilled, and every retry told the same.
        expect(op.kind).toBe('stream');
        expect(r.status, r.id).toBe('failed');
        expect(billable.get(r.id), `billable ledger rows of ${r.id}`).toBeUndefined();
      } else {
        expect(r.status, r.id).toBe('succeeded');
        expect(billable.get(r.id), `billable ledger rows of ${r.id}`).toBe(1);
      }
    }
    // Only streams caught mid-generation by the inference worker's kill (or a restart) may end so.
    expect(accepted.filter((o) => o.finalError !== null).length).toBeLessThanOrEqual(accepted.filter((o) => o.kind === 'stream').length / 2);
    // What the clients were answered is what the database holds.
    for (const o of accepted.filter((x) => x.kind !== 'stream' && x.finalError === null)) {
      const id = rows.find((r) => r.idempotency_key === o.idempotencyKey)?.id;
      // A job is the request; a completion's ID is `chatcmpl-<request ID>`.
      expect(o.response.id, o.kind).toBe(o.kind === 'async' ? id : `chatcmpl-${id}`);
    }

    // The batch completes with every line accounted for once.
    await waitUntil('the batch final', async () => ['completed', 'failed', 'cancelled', 'expired'].includes((await client.batches.retrieve(batch.id)).status), 300_000);
    const done = await client.batches.retrieve(batch.id);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });
    const output = (await (await client.files.content(done.output_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(output.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: LINES }, (_, i) => `line-${i}`).sort());
    const lineIds = new Set(output.map((l) => l.id as string));
    expect(lineIds.size).toBe(LINES);
    const batchBillable = [...billable.entries()].filter(([id]) => id.startsWith('batch_req_'));
    expect(batchBillable).toHaveLength(LINES);
    for (const [, n] of batchBillable) expect(n).toBe(1);

    // No reservation left held, nothing reserved, and what was spent is what the ledger says.
    const held = await cluster.db.query("select count(*)::int as n from reservations where tenant_id = $1 and status = 'held'", [tenantId]);
    expect(held.rows[0].n).toBe(0);
    const spend = await cluster.db.query('select coalesce(sum(spent_micros), 0)::bigint as spent, coalesce(sum(reserved_micros), 0)::bigint as reserved from tenant_spend where tenant_id = $1', [tenantId]);
    const ledger = await cluster.db.query('select coalesce(sum(cost_micros), 0)::bigint as cost from usage where tenant_id = $1 and billable', [tenantId]);
    expect(Number(spend.rows[0].reserved)).toBe(0);
    expect(Number(spend.rows[0].spent)).toBe(Number(ledger.rows[0].cost));

    // No process died on its own (only the ones the test killed, and those were restarted).
    expect(cluster.processes().filter((p) => !p.running()).map((p) => `${p.spec.name}: ${p.tail().slice(-500)}`)).toEqual([]);

    // The audit chain verifies, from the first row.
    const verify = await cluster.call(cluster.adminKey, 'GET', '/v1/admin/audit/verify?full=true');
    expect(verify.status).toBe(200);
    expect(verify.body).toMatchObject({ ok: true, complete: true });
  }, 900_000);
});

describe('limits across the two API processes (separate OS processes)', () => {
  async function ask(base: string, key: string) {
    return cluster.call(key, 'POST', '/v1/chat/completions', { model: 'sluice-tiny', messages: [{ role: 'user', content: 'limit' }], max_tokens: 1, temperature: 0 }, {}, base);
  }

  it('a monthly budget for exactly K requests admits exactly K of 6×K concurrent ones sent to both APIs', async () => {
    // The estimate of this body, from one request of another tenant.
    const probe = await cluster.createTenantKey();
    const first = await ask(cluster.apis[0]!.url, probe.key);
    expect(first.status).toBe(200);
    const est = Number((await cluster.db.query('select est_cost_micros from reservations where tenant_id = $1', [probe.tenantId])).rows[0].est_cost_micros);
    expect(est).toBeGreaterThan(0);
    const K = 4;
    const { tenantId, key } = await cluster.createTenantKey({ monthly_budget_micros: K * est });
    const results = await Promise.all(Array.from({ length: 6 * K }, (_, i) => ask(cluster.apis[i % 2]!.url, key)));
    // Every answer in the message: an under-admission then says which requests failed and how.
    const answers = JSON.stringify(results.map((r) => [r.status, r.body?.error?.code ?? null]));
    expect(results.filter((r) => r.status === 200), answers).toHaveLength(K);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(429);
      expect(r.body.error.code).toBe('insufficient_quota');
    }
    // The settlements follow the answers (README "When a sync answer leaves").
    await Promise.all(results.filter((r) => r.status === 200).map((r) => settled({ client: cluster.temporalClient }, r.body)));
    const reservations = await cluster.db.query('select status from reservations where tenant_id = $1', [tenantId]);
    expect(reservations.rows.map((r) => r.status)).toEqual(Array(K).fill('settled'));
  });

  it('requests_per_minute = R admits at most R per window of a 3R burst sent to both APIs', async () => {
    const R = 4;
    const { tenantId, key } = await cluster.createTenantKey({ requests_per_minute: R });
    // Inside one fixed minute window, "at most R" is also "exactly R".
    await waitUntil('a fresh minute window', () => new Date().getUTCSeconds() <= 45, 30_000);
    const results = await Promise.all(Array.from({ length: 3 * R }, (_, i) => ask(cluster.apis[i % 2]!.url, key)));
    const windows = await cluster.db.query('select window_start, count(*)::int as n from reservations where tenant_id = $1 group by window_start', [tenantId]);
    for (const w of windows.rows) expect(w.n).toBeLessThanOrEqual(R);
    const ok = results.filter((r) => r.status === 200);
    if (windows.rows.length === 1) expect(ok).toHaveLength(R);
    else expect(ok.length).toBeLessThanOrEqual(R * windows.rows.length);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(429);
      expect(r.body.error.code).toBe('rate_limit_exceeded');
    }
  });
});

describe('rolling restart of the control workers', () => {
  it('stops (SIGTERM, draining) and restarts each control worker in turn under load: no request fails or needs a retry', async () => {
    const { tenantId, key } = await cluster.createTenantKey();
    const load = startLoad(cluster, key, 3);
    await load.progress(3);
    for (const worker of cluster.controlWorkers) {
      await worker.stop(60_000);
      await load.progress(3);
      await worker.start();
      await load.progress(3);
    }
    const ops = await load.stop();
    expect(ops.filter((o) => o.failure !== null || o.finalError !== null || o.retries.length > 0).map((o) => `${o.kind}: ${o.failure ?? o.finalError ?? o.retries.join(', ')}`)).toEqual([]);
    await waitUntil('every request final', async () => (await requestRows(tenantId)).every((r) => FINAL.includes(r.status)), 120_000);
    const rows = await requestRows(tenantId);
    expect(rows).toHaveLength(ops.length);
    expect(rows.filter((r) => r.status !== 'succeeded')).toEqual([]);
  }, 600_000);
});
