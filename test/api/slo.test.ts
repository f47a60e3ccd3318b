/**
 * SLOs and SLA credits on the real stack (PostgreSQL, Temporal dev server, workers, API), measured
 * from the request rows the workflows complete. Failures and latency are injected through the fake
 * OpenAI upstream (the one test double): 500s (retried, then 503: against us), a 400 (the client's
 * own: left out), delays. Latencies are asserted only from below (a delayed answer takes at least
 * its delay), never against a bound a slow machine could miss.
 *
 * The credit: a closed period is needed, so once measured today the two tenants' request and
 * usage rows are moved by SQL into June 2025 (keeping their spacing), then billed for 2025-06.
 * Tenant A's availability there is 8/10 = 80% exactly, on the boundary of its plan's
 * "below 80% → 25%" tier: it earns the 10% tier ("below 90%"), not the 25% one.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ServiceError } from '@temporalio/client';
import { sql } from 'kysely';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { periodOf } from '../../domain/billing-calendar.js';
import { ensureSlos } from '../../scripts/lib/slo-seed.js';
import { createMetrics } from '../../runtime/metrics.js';
import { startOpsMetrics } from '../../workers/ops-metrics.js';
import { SLO_BURN_WINDOWS } from '../../domain/slo.js';
import { tenantAvailability } from '../../db/repositories/slos.js';
import type { BatchStatus } from '../../db/tables/index.js';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const MODEL = 'slo-up';
const PLAN = `sla-gold-${Math.random().toString(36).slice(2, 8)}`;
let stack: TestStack;
let upstream: FakeUpstream;
let a: { tenantId: string; key: string };
let b: { tenantId: string; key: string };
let tenantKey: string;

async function call(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.url}${path}`, {
    method, headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, text, body: res.headers.get('content-type')?.includes('json') && text ? JSON.parse(text) : null };
}
const admin = (method: string, path: string, body?: unknown) => call(stack.adminKey, method, path, body);
const chat = (key: string, extra: Record<string, unknown> = {}) =>
  call(key, 'POST', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'one two three' }], max_tokens: 8, ...extra });

async function tenantOn(plan: string | null) {
  const t = await admin('POST', '/v1/admin/tenants', { name: `slo-${Math.random().toString(36).slice(2, 8)}`, ...(plan ? { plan } : {}) });
  expect(t.status, t.text).toBe(201);
  const k = await admin('POST', `/v1/admin/tenants/${t.body.id}/keys`, { role: 'developer' });
  expect(k.status, k.text).toBe(201);
  return { tenantId: t.body.id as string, key: k.body.key as string };
}

async function slo(body: Record<string, unknown>) {
  const r = await admin('POST', '/v1/admin/slos', body);
  expect(r.status, r.text).toBe(201);
  return r.body as { id: string; status: Record<string, any> };
}

beforeAll(async () => {
  upstream = await startFakeUpstream();
  // A breaker that never opens here: every failing request is retried and answered 503 on its own.
  stack = await startTestStack({ breaker: { failureThreshold: 1000, windowMs: 60_000, cooldownMs: 1000, probeTimeoutMs: 60_000 } });
  await addModel(stack, {
    id: MODEL, context_length: 1024, max_output_tokens: 16,
    deployments: [{ id: `${MODEL}-d`, provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'gpt-x', price: { input_micros_per_mtok: 1_000_000_000, output_micros_per_mtok: 3_000_000_000 } }],
  });
  a = await tenantOn(PLAN);
  b = await tenantOn(null);
  tenantKey = (await stack.createTenantKey({ role: 'tenant_admin' })).key;

  // Tenant A: 5 fast, 1 streamed, 2 delayed (3 s) successes; 1 upstream 400 (the client's own); 2 upstream 500s (ours).
  upstream.setBehaviour({ kind: 'succeed' });
  const fast = await Promise.all([...Array.from({ length: 5 }, () => chat(a.key)), chat(b.key), chat(b.key)]);
  for (const r of fast) expect(r.status, r.text).toBe(200);
  // A sync answer leaves before its settlement: the rows the tests read are written by then.
  for (const r of fast) await settled(stack, r.body);
  const streamed = await chat(a.key, { stream: true });
  expect(streamed.status).toBe(200);
  expect(streamed.text).toContain('[DONE]');
  upstream.setBehaviour({ kind: 'succeed', delayMs: 3000 });
  for (const r of await Promise.all([chat(a.key), chat(a.key)])) {
    expect(r.status, r.text).toBe(200);
    await settled(stack, r.body);
  }
  upstream.setBehaviour({ kind: 'fail', status: 400, message: 'bad input' });
  const clientFault = await chat(a.key);
  expect(clientFault.status, clientFault.text).toBe(400);
  upstream.setBehaviour({ kind: 'fail', status: 500 });
  for (const r of await Promise.all([chat(a.key), chat(a.key)])) expect(r.status, r.text).toBe(503);
  upstream.setBehaviour({ kind: 'succeed' });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

describe('what the request rows record', () => {
  it('latency on every finished request, TTFT on the stream, the failure type and the pool', async () => {
    const rows = await stack.db.selectFrom('requests').select(['status', 'latency_ms', 'ttft_ms', 'failure_type', 'pool', 'error'])
      .where('tenant_id', '=', a.tenantId).execute();
    expect(rows).toHaveLength(11);
    for (const r of rows) expect(r.latency_ms, JSON.stringify(r)).toBeGreaterThanOrEqual(0);
    expect(rows.filter((r) => r.status === 'succeeded')).toHaveLength(8);
    expect(rows.filter((r) => r.latency_ms !== null && r.latency_ms >= 3000).length).toBeGreaterThanOrEqual(2);
    const withTtft = rows.filter((r) => r.ttft_ms !== null);
    expect(withTtft).toHaveLength(1);
    expect(withTtft[0]?.ttft_ms).toBeLessThanOrEqual(withTtft[0]?.latency_ms ?? -1);
    expect(rows.filter((r) => r.status === 'failed').map((r) => r.failure_type).sort()).toEqual(['BadRequest', 'NoDeploymentAvailable', 'NoDeploymentAvailable']);
    // Failed requests carry the pool of the deployment they were tried on.
    expect(new Set(rows.map((r) => r.pool))).toEqual(new Set(['local']));
  });
});

describe('GET /v1/admin/slos', () => {
  it('gives attainment and the remaining error budget; a client 400 does not count against availability', async () => {
    const byModel = await slo({ name: 'slo-up availability', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 0.8 });
    const byPlan = await slo({ name: 'gold availability', kind: 'availability', scope: { type: 'plan', value: PLAN }, target: 0.9, window: 'calendar_month' });
    const byPool = await slo({ name: 'local availability', kind: 'availability', scope: { type: 'pool', value: 'local' }, target: 0.99 });
    const list = await admin('GET', '/v1/admin/slos?limit=100');
    expect(list.status, list.text).toBe(200);
    const get = (id: string) => list.body.data.find((s: { id: string }) => s.id === id);
    // Model: A 8 good + 2 bad (the 400 left out), B 2 good → 10/12 against 0.8: met, 2 of 2.4 allowed bad spent.
    expect(get(byModel.id).status).toMatchObject({ eligible: 12, good: 10, bad: 2, met: true, error_budget: { bad: 2 } });
    expect(get(byModel.id).status.attainment).toBeCloseTo(10 / 12, 12);
    expect(get(byModel.id).status.error_budget.allowed_bad).toBeCloseTo(2.4, 12);
    expect(get(byModel.id).status.error_budget.remaining).toBeCloseTo(1 - 2 / 2.4, 12);
    // Plan: tenant A only, 8/10 against 0.9: missed, the budget overspent (2 bad of 1 allowed).
    expect(get(byPlan.id).status).toMatchObject({ eligible: 10, good: 8, attainment: 0.8, met: false });
    expect(get(byPlan.id).status.error_budget.remaining).toBeCloseTo(-1, 12);
    expect(get(byPool.id).status).toMatchObject({ eligible: 12, good: 10 });
    expect(get(byModel.id)).toMatchObject({ object: 'slo', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 0.8, window: '30d', threshold_ms: null });
  });

  it('latency percentiles in SQL over the successful requests, and TTFT over the streams', async () => {
    const lat = await slo({ name: 'p95', kind: 'latency_p95', scope: { type: 'model', value: MODEL }, target: 0.5, threshold_ms: 2500 });
    const rows = await stack.db.selectFrom('requests').select('latency_ms').where('model', '=', MODEL).where('status', '=', 'succeeded').execute();
    const within = rows.filter((r) => (r.latency_ms ?? Infinity) <= 2500).length;
    // 10 successes, 2 of them delayed 3 s: p95 lies between the two slowest, both at least 3 s.
    expect(lat.status).toMatchObject({ eligible: 10, good: within });
    expect(lat.status.bad).toBeGreaterThanOrEqual(2);
    expect(lat.status.percentile_ms).toBeGreaterThanOrEqual(3000);
    const p99 = await slo({ name: 'p99', kind: 'latency_p99', scope: { type: 'model', value: MODEL }, target: 0.5, threshold_ms: 2500 });
    expect(p99.status.percentile_ms).toBeGreaterThanOrEqual(lat.status.percentile_ms);
    const ttft = await slo({ name: 'ttft', kind: 'ttft_p95', scope: { type: 'model', value: MODEL }, target: 0.9, threshold_ms: 60_000 });
    const stream = await stack.db.selectFrom('requests').select('ttft_ms').where('model', '=', MODEL).where('ttft_ms', 'is not', null).executeTakeFirstOrThrow();
    expect(ttft.status).toMatchObject({ eligible: 1, percentile_ms: stream.ttft_ms });
  });

  it('batch completion within its window, over batches that completed or expired', async () => {
    // Batch rows as the batch workflow leaves them (a batch run is not what is measured here):
    // on time, completed late, expired; a failed (invalid input) and a cancelled one are the client's.
    const { key_id: keyId } = await stack.db.selectFrom('requests').select('key_id').where('tenant_id', '=', a.tenantId).limit(1).executeTakeFirstOrThrow();
    const at = new Date(Date.now() - 3_600_000);
    const h = (n: number) => new Date(at.getTime() + n * 3_600_000);
    const rows: [BatchStatus, string, Date | null][] = [['completed', 'on-time', h(1)], ['completed', 'late', h(25)], ['expired', 'expired', null], ['failed', 'failed', null], ['cancelled', 'cancelled', null]];
    for (const [status, name, completedAt] of rows) {
      await stack.db.insertInto('batches').values({
        id: `batch_slo_${name}`, tenant_id: a.tenantId, key_id: keyId, endpoint: '/v1/chat/completions', input_file_id: 'file_slo', completion_window: '24h',
        status, model: MODEL, created_at: at, expires_at: h(24), completed_at: completedAt, output_file_id: null, error_file_id: null, errors: null, metadata: null,
        estimated_cost_micros: null, in_progress_at: null, finalizing_at: null, failed_at: null, expired_at: null, cancelling_at: null, cancelled_at: null,
      }).execute();
    }
    const byModel = await slo({ name: 'batches', kind: 'batch_window', scope: { type: 'model', value: MODEL }, target: 0.5 });
    expect(byModel.status).toMatchObject({ eligible: 3, good: 1, bad: 2, met: false, percentile_ms: null });
    const byPlan = await slo({ name: 'batches gold', kind: 'batch_window', scope: { type: 'plan', value: PLAN }, target: 0.3 });
    expect(byPlan.status).toMatchObject({ eligible: 3, good: 1, met: true });
    const report = await admin('GET', `/v1/admin/slos/${byModel.id}/report?period=${periodOf(at)}`);
    expect(report.body.data).toEqual([expect.objectContaining({ tenant_id: a.tenantId, eligible: 3, good: 1 })]);
  });

  it('validates definitions, patches and deletes them, and is for operator keys only', async () => {
    const bad = await admin('POST', '/v1/admin/slos', { name: 'x', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 1.5 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'target', code: 'invalid_value' });
    const noThreshold = await admin('POST', '/v1/admin/slos', { name: 'x', kind: 'latency_p99', scope: { type: 'model', value: MODEL }, target: 0.99 });
    expect(noThreshold.body.error.param).toBe('threshold_ms');
    const s = await slo({ name: 'tmp', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 0.5 });
    const patched = await admin('PATCH', `/v1/admin/slos/${s.id}`, { target: 0.95, name: 'tmp2' });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body).toMatchObject({ name: 'tmp2', target: 0.95, status: { met: false } });
    expect((await admin('PATCH', `/v1/admin/slos/${s.id}`, { kind: 'latency_p95' })).body.error.code).toBe('immutable_field');
    const denied = await call(tenantKey, 'GET', '/v1/admin/slos');
    expect(denied.status).toBe(403);
    expect((await call(tenantKey, 'POST', '/v1/admin/slos', { name: 'x', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 0.5 })).status).toBe(403);
    expect((await call(tenantKey, 'PUT', `/v1/admin/plans/${PLAN}/sla`, { target: 0.5, credits: [{ below: 0.5, credit_percent: 100 }] })).status).toBe(403);
    expect((await admin('DELETE', `/v1/admin/slos/${s.id}`)).status).toBe(200);
    expect((await admin('GET', `/v1/admin/slos/${s.id}`)).status).toBe(404);
    expect((await admin('GET', `/v1/admin/slos/${s.id}/report?period=2025-06`)).status).toBe(404);
  });
});

describe('SLOs seeded from SLUICE_SLOS_FILE', () => {
  it('creates, then changes nothing, then applies the file\'s new target; a changed kind stops the start', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slo-seed-'));
    const file = path.join(dir, 'slos.json');
    const entry = { id: 'slo_seeded_availability', name: 'seeded', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 0.8 };
    try {
      await fs.writeFile(file, JSON.stringify({ slos: [entry] }));
      expect(await ensureSlos(stack.db, file)).toEqual({ created: 1, updated: 0 });
      expect(await ensureSlos(stack.db, file)).toEqual({ created: 0, updated: 0 });
      await fs.writeFile(file, JSON.stringify({ slos: [{ ...entry, target: 0.95 }] }));
      expect(await ensureSlos(stack.db, file)).toEqual({ created: 0, updated: 1 });
      const got = await admin('GET', `/v1/admin/slos/${entry.id}`);
      expect(got.body).toMatchObject({ id: entry.id, target: 0.95, status: { eligible: 12, good: 10, met: false } });
      await fs.writeFile(file, JSON.stringify({ slos: [{ ...entry, kind: 'batch_window' }] }));
      await expect(ensureSlos(stack.db, file)).rejects.toThrow(/another kind or scope/);
      await fs.writeFile(file, JSON.stringify({ slos: [{ ...entry, target: 7 }] }));
      await expect(ensureSlos(stack.db, file)).rejects.toThrow(/slos\[0\]/);
      expect((await stack.db.selectFrom('audit_log').select('action').where('target', '=', `slo:${entry.id}`).execute()).map((r) => r.action)).toEqual(['slo.seeded', 'slo.seeded']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SLA credits on the monthly invoice', () => {
  it('the report per tenant, then the credit line at the tier boundary, once; a re-run gives the same invoice', async () => {
    const byModel = await slo({ name: 'report', kind: 'availability', scope: { type: 'model', value: MODEL }, target: 0.9 });
    const today = await admin('GET', `/v1/admin/slos/${byModel.id}/report?period=${periodOf(new Date())}`);
    expect(today.status, today.text).toBe(200);
    expect(today.body).toMatchObject({ object: 'slo_report', complete: false, overall: { eligible: 12, good: 10 } });
    expect(today.body.data).toEqual(expect.arrayContaining([
      expect.objectContaining({ tenant_id: a.tenantId, eligible: 10, good: 8, attainment: 0.8, met: false }),
      expect.objectContaining({ tenant_id: b.tenantId, eligible: 2, good: 2, attainment: 1, met: true }),
    ]));
    for (const [q, param] of [['period=2025-13', 'period'], ['', 'period'], ['period=2999-01', 'period'], ['period=2025-06&x=1', 'x']] as const) {
      const r = await admin('GET', `/v1/admin/slos/${byModel.id}/report?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error.param, q).toBe(param);
    }

    // The plan's SLA: 90% a month; below 90% → 10%, below 80% → 25%.
    const badSla = await admin('PUT', `/v1/admin/plans/${PLAN}/sla`, { target: 0.9, credits: [{ below: 0.8, credit_percent: 25 }, { below: 0.9, credit_percent: 10 }] });
    expect(badSla.status).toBe(400);
    expect(badSla.body.error.param).toBe('credits[1].below');
    const put = await admin('PUT', `/v1/admin/plans/${PLAN}/sla`, { target: 0.9, credits: [{ below: 0.9, credit_percent: 10 }, { below: 0.8, credit_percent: 25 }] });
    expect(put.status, put.text).toBe(200);
    expect((await admin('GET', `/v1/admin/plans/${PLAN}/sla`)).body).toMatchObject({ target: 0.9, credits: [{ below: 0.9, credit_percent: 10 }, { below: 0.8, credit_percent: 25 }] });

    // Into June 2025, a closed period, keeping each row's place in time relative to the first.
    const { t0 } = await stack.db.selectFrom('requests').select((eb) => eb.fn.min('created_at').as('t0'))
      .where('tenant_id', 'in', [a.tenantId, b.tenantId]).executeTakeFirstOrThrow();
    const moved = (column: string) => sql`timestamptz '2025-06-15 12:00:00+00' + (${sql.ref(column)} - ${t0}::timestamptz)`;
    await sql`update requests set created_at = ${moved('created_at')}, finished_at = ${moved('finished_at')}
      where tenant_id in (${a.tenantId}, ${b.tenantId})`.execute(stack.db);
    await sql`update usage set created_at = ${moved('created_at')} where tenant_id in (${a.tenantId}, ${b.tenantId})`.execute(stack.db);
    const june = await admin('GET', `/v1/admin/slos/${byModel.id}/report?period=2025-06`);
    expect(june.body).toMatchObject({ complete: true, period_end: '2025-07-01T00:00:00.000Z', overall: { eligible: 12, good: 10 } });

    const bill = async (tenantId: string) => {
      const r = await admin('POST', '/v1/admin/billing/runs', { period: '2025-06', tenant_id: tenantId, wait: true });
      expect(r.status, r.text).toBe(200);
      const result = r.body.runs[0].result as { status: string; invoice_id: string; created: boolean; total_micros: number };
      expect(result.status, JSON.stringify(result)).toBe('succeeded');
      const inv = await admin('GET', `/v1/admin/invoices/${result.invoice_id}`);
      return { result, invoice: inv.body as { id: string; total_micros: number; adjustments_micros: number; lines: { kind: string; late: boolean; amount_micros: number; description: string | null }[] } };
    };
    const first = await bill(a.tenantId);
    expect(first.result.created).toBe(true);
    const charges = first.invoice.lines.filter((l) => l.kind !== 'adjustment' && !l.late).reduce((s, l) => s + l.amount_micros, 0);
    expect(charges).toBeGreaterThan(0);
    const credits = first.invoice.lines.filter((l) => l.kind === 'adjustment');
    expect(credits).toHaveLength(1);
    // 80% exactly is not below 80%: the 10% tier, rounded half up to a whole micro-USD.
    expect(credits[0]?.amount_micros).toBe(-Math.floor((charges * 1000 + 5000) / 10_000));
    expect(credits[0]?.description).toContain('SLA credit 2025-06');
    expect(first.invoice.total_micros).toBe(charges + (credits[0]?.amount_micros ?? 0));
    const rec = await admin('GET', `/v1/admin/invoices/${first.invoice.id}/reconciliation`);
    expect(rec.body, rec.text).toMatchObject({ ok: true, problems: [] });

    const again = await bill(a.tenantId);
    expect(again.result).toMatchObject({ created: false, invoice_id: first.invoice.id, total_micros: first.invoice.total_micros });
    expect(again.invoice).toEqual(first.invoice);
    const credited = await stack.db.selectFrom('sla_credits').selectAll().where('tenant_id', '=', a.tenantId).execute();
    expect(credited).toHaveLength(1);
    expect(credited[0]).toMatchObject({ period: '2025-06', eligible: 10, good: 8, credit_bps: 1000, charges_micros: charges, credit_micros: -(credits[0]?.amount_micros ?? 0) });
    const audited = await stack.db.selectFrom('audit_log').select('action').where('tenant_id', '=', a.tenantId).where('action', '=', 'invoice.sla_credit').execute();
    expect(audited).toHaveLength(1);

    // Tenant B's plan carries no SLA: no credit line.
    const other = await bill(b.tenantId);
    expect(other.invoice.lines.filter((l) => l.kind === 'adjustment')).toEqual([]);
  });
});

describe('requests whose workflow could not start', () => {
  /** The client error for a gRPC UNAVAILABLE, as the Temporal client wraps it. */
  function unavailable(): ServiceError {
    const grpc = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14, details: 'No connection established', metadata: {} });
    return new ServiceError('Failed to start Workflow', { cause: grpc });
  }

  it('count as failed in availability (503 and 500), once each; a client 400 does not; a retry that succeeds counts as a success', async () => {
    const plan = `start-fail-${Math.random().toString(36).slice(2, 8)}`;
    const c = await tenantOn(plan);
    const byPlan = await slo({ name: 'start failures', kind: 'availability', scope: { type: 'plan', value: plan }, target: 0.999 });
    const byPool = await slo({ name: 'pool view', kind: 'availability', scope: { type: 'pool', value: 'local' }, target: 0.5 });
    const poolBefore = byPool.status;
    expect(byPlan.status).toMatchObject({ eligible: 0, good: 0 });
    const first = await chat(c.key);
    expect(first.status).toBe(200);
    await settled(stack, first.body);

    const spy = vi.spyOn(stack.client.workflow, 'start').mockRejectedValueOnce(unavailable()).mockRejectedValueOnce(new TypeError('internal detail'));
    const idempotencyKey = `start-fail-${Math.random().toString(36).slice(2, 10)}`;
    const post = (headers: Record<string, string> = {}) => fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${c.key}`, 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'one two three' }], max_tokens: 8 }),
    });
    let unavailableAnswer: Response;
    let internalAnswer: Response;
    try {
      unavailableAnswer = await post({ 'Idempotency-Key': idempotencyKey });
      internalAnswer = await post();
    } finally {
      spy.mockRestore();
    }
    expect(unavailableAnswer.status).toBe(503);
    expect(((await unavailableAnswer.json()) as any).error.code).toBe('temporal_unavailable');
    expect(internalAnswer.status).toBe(500);
    // The client's own 400 (validation, before any row): neither good nor bad.
    expect((await chat(c.key, { temperature: 'hot' })).status).toBe(400);

    // Recorded where the SLI reads them, with no request row left behind (so nothing is counted twice).
    const failures = await stack.db.selectFrom('request_start_failures').select(['tenant_id', 'model', 'code', 'status', 'kind']).where('tenant_id', '=', c.tenantId).orderBy('id').execute();
    expect(failures).toEqual([
      { tenant_id: c.tenantId, model: MODEL, code: 'temporal_unavailable', status: 503, kind: 'sync' },
      { tenant_id: c.tenantId, model: MODEL, code: 'internal_error', status: 500, kind: 'sync' },
    ]);
    const rows = await stack.db.selectFrom('requests').select(['status']).where('tenant_id', '=', c.tenantId).execute();
    expect(rows).toEqual([{ status: 'succeeded' }]);
    const get = async (id: string) => (await admin('GET', `/v1/admin/slos/${id}`)).body.status;
    expect(await get(byPlan.id)).toMatchObject({ eligible: 3, good: 1, bad: 2, met: false });
    // No deployment was chosen for them: a pool's objective does not see them.
    expect(await get(byPool.id)).toMatchObject({ eligible: poolBefore.eligible + 1, good: poolBefore.good + 1 });

    // The client retries the 503 with its Idempotency-Key: this time it starts and succeeds.
    const retried = await post({ 'Idempotency-Key': idempotencyKey });
    expect(retried.status, await retried.clone().text()).toBe(200);
    await settled(stack, ((await retried.json()) as { id: string }));
    expect(await get(byPlan.id)).toMatchObject({ eligible: 4, good: 2, bad: 2 });
    // The tenant's SLA measure (what a plan's credit is computed from) counts the same.
    expect(await tenantAvailability(stack.db, c.tenantId, new Date(Date.now() - 3_600_000), new Date(Date.now() + 60_000))).toEqual({ eligible: 4, good: 2 });

    // The control worker's burn-rate gauges read the same rows.
    const metrics = createMetrics({ defaults: false });
    const ops = startOpsMetrics({ db: stack.db, metrics, intervalMs: 3_600_000 });
    await ops.refresh();
    await ops.stop();
    const values = (await metrics.sloErrorRatio.get()).values.filter((v) => v.labels.slo === byPlan.id);
    expect(values.map((v) => v.labels.window).sort()).toEqual(SLO_BURN_WINDOWS.map((w) => w.label).sort());
    for (const v of values) expect(v.value, String(v.labels.window)).toBeCloseTo(0.5, 12);
    const events = (await metrics.sloEvents.get()).values.filter((v) => v.labels.slo === byPlan.id && v.labels.window === '5m');
    expect(Object.fromEntries(events.map((v) => [v.labels.class, v.value]))).toEqual({ eligible: 4, bad: 2 });
    const objective = (await metrics.sloObjective.get()).values.find((v) => v.labels.slo === byPlan.id);
    expect(objective).toMatchObject({ value: 0.999, labels: { kind: 'availability', scope_type: 'plan', scope: plan } });
  });
});
