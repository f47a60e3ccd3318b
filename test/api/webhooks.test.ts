/**
 * Webhooks and budget thresholds on a real stack (Temporal, PostgreSQL, the API, the instant
 * backend) with a real HTTP receiver on 127.0.0.1. Signatures are checked by an independent
 * verifier written here from the Standard Webhooks spec (https://www.standardwebhooks.com), not
 * by Sluice's signing code. Retries use short intervals (SLUICE_WEBHOOK_RETRY_*).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { settled, startJob, startTestStack, type TestStack } from '../support/stack.js';
import { createModel } from '../../db/repositories/models.js';

// ---- An independent Standard Webhooks verifier --------------------------------------------------

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Unix seconds when it arrived. */
  at: number;
}

/** Signed content: `${webhook-id}.${webhook-timestamp}.${body}`; key: base64-decoded secret after `whsec_`. */
function expectedSignature(secret: string, id: string, timestamp: string, body: string): Buffer {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  return createHmac('sha256', key).update(`${id}.${timestamp}.${body}`, 'utf8').digest();
}

/**
 * Verifies a message as a receiver must: all three headers present, the timestamp within
 * `toleranceSeconds` of `nowSeconds` (replay protection), and at least one space-separated
 * `v1,<base64>` signature equal (constant-time) to the expected one.
 */
function verify(secret: string, headers: Record<string, string | undefined>, body: string, nowSeconds: number, toleranceSeconds = 300): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures) return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(nowSeconds - Number(timestamp)) > toleranceSeconds) return false;
  const expected = expectedSignature(secret, id, timestamp, body);
  return signatures.split(' ').some((entry) => {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') return false;
    const got = Buffer.from(entry.slice(comma + 1), 'base64');
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}

function headersOf(r: Received): Record<string, string | undefined> {
  const h = (name: string) => (typeof r.headers[name] === 'string' ? (r.headers[name] as string) : undefined);
  return { 'webhook-id': h('webhook-id'), 'webhook-timestamp': h('webhook-timestamp'), 'webhook-signature': h('webhook-signature') };
}

// ---- The receiver -------------------------------------------------------------------------------

const received: Received[] = [];
const hits = new Map<string, number>();
let receiver: http.Server;
let receiverUrl: string;

/** Answers by path: `/ok*` 200, `/flaky*` 500 twice then 200, `/gone*` 410, `/redirect*` 302 to `/target`. */
function answer(path: string, n: number): { status: number; headers?: Record<string, string> } {
  if (path.startsWith('/flaky')) return { status: n <= 2 ? 500 : 200 };
  if (path.startsWith('/gone')) return { status: 410 };
  if (path.startsWith('/redirect')) return { status: 302, headers: { Location: `${receiverUrl}/target` } };
  return { status: 200 };
}

async function waitFor<T>(what: string, fn: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const at = (path: string) => received.filter((r) => r.path === path);

// ---- The stack ----------------------------------------------------------------------------------

let stack: TestStack;
const MODEL = 'instant-wh';
/** 1000 micro-USD a token in and out: "user"+"x" estimates 11 tokens (11,000), costs 9 (9,000). */
const PRICE = 1_000_000_000;

async function call(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** A tenant with a tenant-admin key and an endpoint at `path` of the receiver. */
async function tenantWithEndpoint(path: string, events: string[], limits?: Record<string, unknown>) {
  const t = await stack.createTenantKey({ role: 'tenant_admin', ...(limits ? { limits } : {}) });
  const r = await call(t.key, 'POST', '/v1/admin/webhooks', { url: `${receiverUrl}${path}`, events });
  expect(r.status).toBe(201);
  expect(r.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
  return { ...t, endpointId: r.body.id as string, secret: r.body.secret as string };
}

async function asyncJob(key: string) {
  return startJob(stack, key, { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
}

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const n = (hits.get(path) ?? 0) + 1;
      hits.set(path, n);
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Math.floor(Date.now() / 1000) });
      const a = answer(path, n);
      res.writeHead(a.status, a.headers ?? {}).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  stack = await startTestStack({
    env: {
      SLUICE_ALLOW_PRIVATE_WEBHOOKS: '127.0.0.1',
      SLUICE_WEBHOOK_RETRY_INITIAL_MS: '200',
      SLUICE_WEBHOOK_RETRY_MAX_MS: '1000',
      SLUICE_WEBHOOK_MAX_ATTEMPTS: '4',
      SLUICE_WEBHOOK_HORIZON_MS: '60000',
      SLUICE_BATCH_CONCURRENCY: '4',
    },
  });
  await createModel(stack.db, {
    id: MODEL, ownedBy: 'sluice', contextLength: 4096, maxOutputTokens: 16,
    deployments: [{ id: `${MODEL}-local`, pool: 'local', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: PRICE, outputMicrosPerMtok: PRICE }],
  }, new Date(Date.now() - 60_000));
});

afterAll(async () => {
  await stack?.stop();
  await new Promise((r) => receiver?.close(r));
});

describe('webhooks', () => {
  // Pipeline only (docs/testing.md): the instant backend serves the jobs and batches whose events
  // are delivered.
  let ok: Awaited<ReturnType<typeof tenantWithEndpoint>>;
  let jobId: string;

  it('delivers job.succeeded of an async job, signed so that an independent verifier accepts it', async () => {
    ok = await tenantWithEndpoint('/ok', ['job.succeeded', 'job.failed']);
    const job = await asyncJob(ok.key);
    jobId = job.id;
    const msg = await waitFor('job.succeeded at /ok', () => at('/ok')[0]);
    const body = JSON.parse(msg.body);
    expect(body).toMatchObject({ type: 'job.succeeded', data: { id: job.id, status: 'succeeded', model: MODEL } });
    expect(typeof body.timestamp).toBe('string');
    expect(msg.headers['webhook-id']).toMatch(/^msg_/);
    expect(msg.headers['content-type']).toBe('application/json');
    expect(verify(ok.secret, headersOf(msg), msg.body, msg.at)).toBe(true);
    // The secret never appears in what Sluice logs.
    expect(stack.logs.join('\n')).not.toContain(ok.secret.slice('whsec_'.length));
  });

  it('refuses a tampered body, a tampered timestamp, a wrong secret and a stale replay', () => {
    const msg = at('/ok')[0] as Received;
    const h = headersOf(msg);
    expect(verify(ok.secret, h, msg.body.replace('succeeded', 'failed'), msg.at)).toBe(false);
    expect(verify(ok.secret, h, `${msg.body} `, msg.at)).toBe(false);
    const ts = Number(h['webhook-timestamp']);
    expect(verify(ok.secret, { ...h, 'webhook-timestamp': String(ts + 1) }, msg.body, msg.at)).toBe(false);
    expect(verify(ok.secret, { ...h, 'webhook-id': 'msg_other' }, msg.body, msg.at)).toBe(false);
    expect(verify(`whsec_${Buffer.alloc(24, 7).toString('base64')}`, h, msg.body, msg.at)).toBe(false);
    // The same message presented 10 minutes later: outside the 5-minute tolerance.
    expect(verify(ok.secret, h, msg.body, msg.at + 600)).toBe(false);
    expect(verify(ok.secret, h, msg.body, msg.at - 600)).toBe(false);
  });

  it('lists deliveries and replays one with the same webhook-id and a fresh signature', async () => {
    const list = await call(ok.key, 'GET', `/v1/admin/webhooks/${ok.endpointId}/deliveries`);
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(1);
    const d = list.body.data[0];
    expect(d).toMatchObject({ event_type: 'job.succeeded', status: 'succeeded', attempts: 1, last_status_code: 200 });
    const replay = await call(ok.key, 'POST', `/v1/admin/webhooks/deliveries/${d.id}/replay`);
    expect(replay.status).toBe(202);
    const again = await waitFor('the replay', () => at('/ok')[1]);
    expect(again.headers['webhook-id']).toBe(at('/ok')[0]?.headers['webhook-id']);
    expect(again.body).toBe(at('/ok')[0]?.body);
    expect(verify(ok.secret, headersOf(again), again.body, again.at)).toBe(true);
    expect(jobId).toBeTruthy();
  });

  it('after a rotation signs with both secrets until the grace period ends', async () => {
    const rot = await call(ok.key, 'POST', `/v1/admin/webhooks/${ok.endpointId}/rotate`, { grace_seconds: 3600 });
    expect(rot.status).toBe(200);
    const newSecret = rot.body.secret as string;
    expect(newSecret).not.toBe(ok.secret);
    const before = at('/ok').length;
    await asyncJob(ok.key);
    const msg = await waitFor('a message after rotation', () => at('/ok')[before]);
    const sigs = String(msg.headers['webhook-signature']).split(' ');
    expect(sigs).toHaveLength(2);
    expect(sigs.every((s) => s.startsWith('v1,'))).toBe(true);
    expect(verify(newSecret, headersOf(msg), msg.body, msg.at)).toBe(true);
    expect(verify(ok.secret, headersOf(msg), msg.body, msg.at)).toBe(true);
    // Each signature alone matches exactly one of the secrets.
    expect(verify(newSecret, { ...headersOf(msg), 'webhook-signature': sigs[0] }, msg.body, msg.at)).toBe(true);
    expect(verify(ok.secret, { ...headersOf(msg), 'webhook-signature': sigs[1] }, msg.body, msg.at)).toBe(true);
  });

  it('retries a flaky receiver (500, 500, 200) until it accepts', async () => {
    const t = await tenantWithEndpoint('/flaky', ['job.succeeded']);
    await asyncJob(t.key);
    const delivered = await waitFor('three attempts at /flaky', () => (at('/flaky').length >= 3 ? at('/flaky') : null));
    expect(new Set(delivered.map((r) => r.headers['webhook-id'])).size).toBe(1); // the same message each time
    const last = delivered[2] as Received;
    expect(verify(t.secret, headersOf(last), last.body, last.at)).toBe(true);
    const d = await waitFor('a succeeded delivery', async () => {
      const r = await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}/deliveries`);
      return r.body.data[0]?.status === 'succeeded' ? r.body.data[0] : null;
    });
    expect(d).toMatchObject({ attempts: 3, last_status_code: 200 });
    expect((await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}`)).body.status).toBe('active');
  });

  it('disables an endpoint that answers 410 Gone, at the first attempt', async () => {
    const t = await tenantWithEndpoint('/gone', ['job.succeeded']);
    await asyncJob(t.key);
    const e = await waitFor('the endpoint disabled', async () => {
      const r = await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}`);
      return r.body.status === 'disabled' ? r.body : null;
    });
    expect(e.disabled_reason).toMatch(/410/);
    expect(at('/gone')).toHaveLength(1);
    const d = (await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}/deliveries`)).body.data[0];
    expect(d).toMatchObject({ status: 'failed', attempts: 1, last_status_code: 410 });
    // No more events go to a disabled endpoint.
    await asyncJob(t.key);
    await new Promise((r) => setTimeout(r, 1500));
    expect(at('/gone')).toHaveLength(1);
  });

  it('does not follow a redirect: it is a failed attempt, and the endpoint is disabled after the last retry', async () => {
    const t = await tenantWithEndpoint('/redirect', ['job.succeeded']);
    await asyncJob(t.key);
    const e = await waitFor('the endpoint disabled', async () => {
      const r = await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}`);
      return r.body.status === 'disabled' ? r.body : null;
    });
    expect(e.disabled_reason).toMatch(/4 attempts/);
    expect(at('/redirect')).toHaveLength(4);
    expect(at('/target')).toHaveLength(0);
    const d = (await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}/deliveries`)).body.data[0];
    expect(d).toMatchObject({ status: 'failed', attempts: 4, last_status_code: 302 });
  });

  it('refuses private and loopback addresses not allowed, and non-http URLs', async () => {
    for (const url of ['http://10.0.0.5/hook', 'http://169.254.169.254/latest/meta-data', 'http://[::1]:9/x', 'http://localhost:9/x', 'http://127.0.0.2/x', 'ftp://example.com/x']) {
      const r = await call(ok.key, 'POST', '/v1/admin/webhooks', { url, events: ['job.succeeded'] });
      expect(r.status, url).toBe(400);
    }
    const bad = await call(ok.key, 'POST', '/v1/admin/webhooks', { url: `${receiverUrl}/ok`, events: ['job.exploded'] });
    expect(bad.status).toBe(400);
  });

  it('is tenant-scoped: another tenant gets 404, a developer 403', async () => {
    const other = await stack.createTenantKey({ role: 'tenant_admin' });
    expect((await call(other.key, 'GET', `/v1/admin/webhooks/${ok.endpointId}`)).status).toBe(404);
    expect((await call(other.key, 'GET', `/v1/admin/webhooks/${ok.endpointId}/deliveries`)).status).toBe(404);
    expect((await call(other.key, 'POST', `/v1/admin/webhooks/${ok.endpointId}/rotate`, {})).status).toBe(404);
    expect((await call(other.key, 'DELETE', `/v1/admin/webhooks/${ok.endpointId}`)).status).toBe(404);
    expect((await call(other.key, 'GET', '/v1/admin/webhooks')).body.data).toHaveLength(0);
    const dev = await stack.createTenantKey({ role: 'developer' });
    expect((await call(dev.key, 'GET', '/v1/admin/webhooks')).status).toBe(403);
    // The super admin sees everyone's.
    const all = await stack.admin('GET', '/v1/admin/webhooks');
    expect(all.body.data.some((e: { id: string }) => e.id === ok.endpointId)).toBe(true);
    expect(JSON.stringify(all.body)).not.toContain('whsec_');
  });

  it('sends batch.completed when a batch ends', async () => {
    const t = await tenantWithEndpoint('/ok-batch', ['batch.completed', 'batch.failed', 'batch.cancelled']);
    const client = new OpenAI({ apiKey: t.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const lines = [1, 2, 3].map((i) => JSON.stringify({ custom_id: `c${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 } }));
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'in.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const msg = await waitFor('batch.completed', () => at('/ok-batch')[0], 120_000);
    const body = JSON.parse(msg.body);
    expect(body).toMatchObject({ type: 'batch.completed', data: { id: batch.id, status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 } } });
    expect(verify(t.secret, headersOf(msg), msg.body, msg.at)).toBe(true);
  });

  it('deletes an endpoint', async () => {
    const t = await tenantWithEndpoint('/ok-delete', ['job.succeeded']);
    expect((await call(t.key, 'DELETE', `/v1/admin/webhooks/${t.endpointId}`)).status).toBe(200);
    expect((await call(t.key, 'GET', `/v1/admin/webhooks/${t.endpointId}`)).status).toBe(404);
  });
});

describe('budget thresholds', () => {
  // Pipeline only (docs/testing.md): thresholds are billing arithmetic over the instant backend's
  // deterministic token counts (UTF-8 bytes), so each request's cost is known in advance.
  it('records 80% and 100% of the monthly budget exactly once each: budget_events, audit, webhook, usage', async () => {
    // Each request holds 11,000 at reservation and settles at 9,000. Budget 47,000: the 4th
    // reservation takes committed spend to 38,000 (>= 80%), the 5th to exactly 47,000 (100%),
    // the 6th does not fit (429).
    const t = await tenantWithEndpoint('/ok-budget', ['budget.threshold'], { monthly_budget_micros: 47_000 });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      const r = await call(t.key, 'POST', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
      statuses.push(r.status);
      // Settled (at 9,000) before the next reservation: the arithmetic above counts on it.
      if (r.status === 200) await settled(stack, r.body);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    // More requests (all refused, some concurrent) record nothing more.
    await Promise.all([1, 2, 3].map(() => call(t.key, 'POST', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 })));

    const rows = await stack.db.selectFrom('budget_events').selectAll().where('tenant_id', '=', t.tenantId).orderBy('threshold_pct').execute();
    expect(rows.map((r) => r.threshold_pct)).toEqual([80, 100]);
    expect(rows.map((r) => r.committed_micros)).toEqual([38_000, 47_000]);

    const msgs = await waitFor('two budget.threshold events', () => (at('/ok-budget').length >= 2 ? at('/ok-budget') : null));
    const bodies = msgs.map((m) => JSON.parse(m.body));
    expect(bodies.map((b) => [b.type, b.data.threshold_pct]).sort()).toEqual([['budget.threshold', 100], ['budget.threshold', 80]]);
    for (const m of msgs) expect(verify(t.secret, headersOf(m), m.body, m.at)).toBe(true);

    const audit = await stack.db.selectFrom('audit_log').select(['action', 'data']).where('tenant_id', '=', t.tenantId).where('action', '=', 'budget.threshold').execute();
    expect(audit).toHaveLength(2);

    const usage = await call(t.key, 'GET', '/v1/admin/usage');
    expect(usage.status).toBe(200);
    expect(usage.body.budget).toMatchObject({ monthly_budget_micros: 47_000, spent_micros: 45_000, reserved_micros: 0 });
    expect(usage.body.budget.thresholds_crossed.map((x: { threshold_pct: number }) => x.threshold_pct)).toEqual([80, 100]);

    // Nothing more is on its way: both deliveries are done, each in one attempt, and no other exists.
    const deliveries = await waitFor('both deliveries done', async () => {
      const rows = await stack.db.selectFrom('webhook_deliveries').select(['status', 'attempts']).where('endpoint_id', '=', t.endpointId).execute();
      return rows.length === 2 && rows.every((d) => d.status === 'succeeded') ? rows : null;
    });
    expect(deliveries.map((d) => d.attempts)).toEqual([1, 1]);
    expect(at('/ok-budget')).toHaveLength(2);
  });

  it('records a threshold once when many requests cross it concurrently', async () => {
    // Budget 110,000: 10 concurrent reservations of 11,000 fit exactly; 80% = 88,000 is crossed by
    // whichever reservation lands 8th, 100% by the 10th; every one races the unique constraint.
    const t = await stack.createTenantKey({ role: 'tenant_admin', limits: { monthly_budget_micros: 110_000 } });
    const results = await Promise.all(Array.from({ length: 10 }, () => call(t.key, 'POST', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 })));
    expect(results.every((r) => r.status === 200 || r.status === 429)).toBe(true);
    const rows = await stack.db.selectFrom('budget_events').selectAll().where('tenant_id', '=', t.tenantId).execute();
    const pcts = rows.map((r) => r.threshold_pct).sort((a, b) => a - b);
    expect(new Set(pcts).size).toBe(pcts.length);
    expect(pcts).toContain(80);
    const audit = await stack.db.selectFrom('audit_log').select('action').where('tenant_id', '=', t.tenantId).where('action', '=', 'budget.threshold').execute();
    expect(audit).toHaveLength(rows.length);
  });
});
