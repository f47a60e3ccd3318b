/**
 * Finance on a real stack (PostgreSQL, Temporal dev server, control worker, API). Usage rows are
 * written by the ledger's settle activity called directly with a controlled clock (the row is
 * priced and dated at that instant), or in bulk by SQL where only volume matters. Periods are in
 * 2025, long closed; the Schedule test bills the month before today.
 * Pipeline only (docs/testing.md): nothing is generated here; the deployment's `instant` provider
 * is only a value in the models table.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startTestStack, type TestStack } from '../support/stack.js';
import { createModel } from '../../db/repositories/models.js';
import { createLedgerActivities, type SettleInput } from '../../activities/ledger.js';
import { createWebhookPublisher } from '../../activities/webhooks.js';
import { BILLING_SCHEDULE_ID, DAY_CLOSE_SCHEDULE_ID, billingWorkflowId } from '../../contracts/ids.js';
import { previousDay, previousPeriod } from '../../domain/billing-calendar.js';
import { ScheduleOverlapPolicy, WorkflowFailedError } from '@temporalio/client';
import type { billingRun } from '../../workflows/billing.js';

const DEP = 'bill-dep';
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
  // 1 micro-USD per input token, 2 per output token, from 2025-01-01.
  await createModel(stack.db, {
    id: 'bill-model', ownedBy: 'sluice', contextLength: 2048, maxOutputTokens: 256,
    deployments: [{ id: DEP, pool: 'local', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 1_000_000, outputMicrosPerMtok: 2_000_000 }],
  }, new Date('2025-01-01T00:00:00Z'));
});
afterAll(async () => {
  await stack?.stop();
});

let seq = 0;
/** Settles one usage row through the ledger activity, priced and dated at `at`. */
async function settleAt(at: string, input: Partial<SettleInput> & { tenantId: string }) {
  const ledger = createLedgerActivities({ db: stack.db, now: () => new Date(at), events: createWebhookPublisher({ db: stack.db, now: () => new Date(at) }), metrics: null });
  return ledger.settle({
    requestId: `req_bill_${++seq}`, step: 'infer', keyId: 'key_a', kind: 'sync', model: 'bill-model', deploymentId: DEP, pool: 'local',
    variant: null, promptTokens: 1000, completionTokens: 1000, latencyMs: 5, ...input,
  });
}

async function tenant(plan?: string): Promise<{ id: string; financeKey: string }> {
  const t = await stack.admin('POST', '/v1/admin/tenants', { name: `fin-${++seq}`, ...(plan ? { plan } : {}) });
  expect(t.status).toBe(201);
  const k = await stack.admin('POST', `/v1/admin/tenants/${t.body.id}/keys`, { role: 'finance' });
  expect(k.status).toBe(201);
  return { id: t.body.id, financeKey: k.body.key };
}

async function call(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.url}${path}`, {
    method, headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, text, body: res.headers.get('content-type')?.includes('json') && text ? JSON.parse(text) : null };
}

/** Runs the tenant's billing workflow to its end through the API and returns the run's result. */
async function bill(tenantId: string, period: string, key = stack.adminKey) {
  const r = await call(key, 'POST', '/v1/admin/billing/runs', { period, tenant_id: tenantId, wait: true });
  expect(r.status, r.text).toBe(200);
  return r.body.runs[0].result as { status: string; invoice_id: string | null; created: boolean | null; total_micros: number | null; error: string | null };
}

async function invoicesOf(tenantId: string, period: string) {
  return stack.db.selectFrom('invoices').selectAll().where('tenant_id', '=', tenantId).where('period', '=', period).orderBy('version').execute();
}

describe('the monthly Schedule', () => {
  it('exists after start, and two triggers of it issue one invoice per tenant', async () => {
    const t = await tenant();
    const schedule = stack.client.schedule.getHandle(BILLING_SCHEDULE_ID);
    const d = await schedule.describe();
    expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: 'billingRun' });
    expect(d.spec.calendars?.[0]).toMatchObject({ dayOfMonth: [{ start: 1, end: 1, step: 1 }], hour: [{ start: 0, end: 0, step: 1 }], minute: [{ start: 10, end: 10, step: 1 }] });
    // Scheduled workflow IDs carry the time to the second: triggers a second apart make two runs.
    await schedule.trigger(ScheduleOverlapPolicy.ALLOW_ALL);
    await new Promise((r) => setTimeout(r, 1100));
    await schedule.trigger(ScheduleOverlapPolicy.ALLOW_ALL);
    let ids: string[] = [];
    for (let i = 0; i < 100 && ids.length < 2; i++) {
      ids = (await schedule.describe()).info.recentActions.map((a) => a.action.workflow.workflowId);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ids).toHaveLength(2);
    const results = await Promise.all(ids.map((id) => stack.client.workflow.getHandle<typeof billingRun>(id).result()));
    const period = previousPeriod(new Date());
    for (const r of results) expect(r.period).toBe(period);
    expect(results.flatMap((r) => r.failures)).toEqual([]);
    const mine = await invoicesOf(t.id, period);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ status: 'issued', total_micros: 0, version: 1 });
    // Each run bills the tenant; the second finds the first's invoice.
    expect(results.map((r) => r.invoices.find((x) => x.tenantId === t.id)?.invoiceId)).toEqual([mine[0]?.id, mine[0]?.id]);
  });
});

describe('ledger and prices', () => {
  it('settles a (request, step) exactly once: a second settle with other numbers changes nothing', async () => {
    const t = await tenant();
    const first = await settleAt('2025-02-10T10:00:00Z', { tenantId: t.id, requestId: 'req_once' });
    const again = await settleAt('2025-02-10T10:00:05Z', { tenantId: t.id, requestId: 'req_once', promptTokens: 9999 });
    expect(first.costMicros).toBe(3000);
    expect(again.costMicros).toBe(3000);
    const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', 'req_once').execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ input_tokens: 1000, cost_micros: 3000 });
    expect(rows[0]?.created_at.toISOString()).toBe('2025-02-10T10:00:00.000Z');
  });

  it('a price change mid-period splits the cost at its start; overrides, batch discount and plan rate apply', async () => {
    const DEP = 'bill-dep-2';
    await createModel(stack.db, {
      id: 'bill-model-2', ownedBy: 'sluice', contextLength: 2048, maxOutputTokens: 256,
      deployments: [{ id: DEP, pool: 'local', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 1_000_000, outputMicrosPerMtok: 2_000_000 }],
    }, new Date('2025-01-01T00:00:00Z'));
    const on = { deploymentId: DEP, model: 'bill-model-2' };
    const t = await tenant('enterprise');
    const other = await tenant();
    // From 2025-03-15: 2 and 4 micro-USD per token, 100 per request, batch 50 % off.
    const p2 = await stack.admin('POST', `/v1/admin/deployments/${DEP}/prices`, {
      input_micros_per_mtok: 2_000_000, output_micros_per_mtok: 4_000_000, request_micros: 100, batch_discount_bps: 5000, effective_from: '2025-03-15T00:00:00Z',
    });
    expect(p2.status).toBe(201);
    // Negotiated for tenant t from 2025-03-25: 1 and 1 micro-USD per token, no request fee.
    const neg = await stack.admin('POST', `/v1/admin/deployments/${DEP}/prices`, {
      tenant_id: t.id, input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 1_000_000, effective_from: '2025-03-25T00:00:00Z',
    });
    expect(neg.status).toBe(201);
    // Enterprise plan: 10 % discount.
    expect((await stack.admin('POST', '/v1/admin/plans/enterprise/rates', { adjustment_bps: -1000, effective_from: '2025-01-01T00:00:00Z' })).status).toBe(201);

    const a = await settleAt('2025-03-14T23:59:59.999Z', { ...on, tenantId: t.id }); // old price: 1000 + 2000
    const b = await settleAt('2025-03-15T00:00:00.000Z', { ...on, tenantId: t.id }); // new: 2000 + 4000 + 100
    const c = await settleAt('2025-03-20T00:00:00Z', { ...on, tenantId: t.id, kind: 'batch', keyId: 'key_b' }); // 6100 - 50 %
    const d = await settleAt('2025-03-28T00:00:00Z', { ...on, tenantId: t.id, variant: 'B' }); // negotiated: 1000 + 1000
    const e = await settleAt('2025-03-28T00:00:00Z', { ...on, tenantId: other.id }); // list: 6100
    expect([a.costMicros, b.costMicros, c.costMicros, d.costMicros, e.costMicros]).toEqual([3000, 6100, 3050, 2000, 6100]);
    const priceIds = await stack.db.selectFrom('usage').select(['price_id', 'tenant_price_id']).where('tenant_id', '=', t.id).orderBy('created_at').execute();
    expect(new Set(priceIds.slice(0, 2).map((r) => r.price_id)).size).toBe(2);
    expect(priceIds[3]?.tenant_price_id).toBe(neg.body.id);

    // History is never rewritten: a price effective before already-priced usage is refused.
    const back = await stack.admin('POST', `/v1/admin/deployments/${DEP}/prices`, { input_micros_per_mtok: 1, output_micros_per_mtok: 1, effective_from: '2025-03-10T00:00:00Z' });
    expect(back.status).toBe(409);
    expect(back.body.error.code).toBe('price_history_immutable');

    const r = await bill(t.id, '2025-03');
    expect(r.status).toBe('succeeded');
    const inv = await call(stack.adminKey, 'GET', `/v1/admin/invoices/${r.invoice_id}`);
    expect(inv.body).toMatchObject({ period: '2025-03', version: 1, plan: 'enterprise', plan_adjustment_bps: -1000, usage_rows: 4, usage_micros: 14150 });
    // Plan discount per line (a and b share one), rounded half away from zero: -910, -305 (c), -200 (d).
    expect(inv.body.plan_adjustment_micros).toBe(-1415);
    expect(inv.body.total_micros).toBe(14150 - 1415);
    const lines = inv.body.lines as Array<Record<string, unknown>>;
    expect(lines.reduce((s, l) => s + (l.amount_micros as number), 0)).toBe(inv.body.total_micros);
    expect(lines.find((l) => l.kind === 'batch')).toMatchObject({ key_id: 'key_b', requests: 1, usage_micros: 3050, amount_micros: 2745 });
    expect(lines.find((l) => l.variant === 'B')).toMatchObject({ usage_micros: 2000, amount_micros: 1800 });
  });
});

describe('periods, idempotency and reconciliation', () => {
  it('splits at the UTC month boundary; re-runs and double triggers yield one invoice', async () => {
    const t = await tenant();
    await settleAt('2025-04-30T23:59:59.999Z', { tenantId: t.id });
    await settleAt('2025-05-01T00:00:00.000Z', { tenantId: t.id, promptTokens: 2000 });
    const [x, y] = await Promise.all([bill(t.id, '2025-04'), bill(t.id, '2025-04')]);
    expect(x.invoice_id).toBe(y.invoice_id);
    const again = await bill(t.id, '2025-04');
    expect(again).toMatchObject({ status: 'succeeded', invoice_id: x.invoice_id, created: false, total_micros: 3000 });
    expect(await invoicesOf(t.id, '2025-04')).toHaveLength(1);
    const may = await bill(t.id, '2025-05');
    expect(may.total_micros).toBe(4000);
  });

  it('a row inserted behind the invoice\'s back fails the re-run loudly, then bills as late usage next period', async () => {
    const t = await tenant();
    await settleAt('2025-06-10T00:00:00Z', { tenantId: t.id });
    const june = await bill(t.id, '2025-06');
    expect(june).toMatchObject({ status: 'succeeded', total_micros: 3000 });
    // Behind its back: a row dated inside June written after June was closed.
    await sql`insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, input_tokens, output_tokens, cost_micros, latency_ms, created_at)
              values ('req_sneaky', 'infer', ${t.id}, 'key_a', 'sync', 'bill-model', ${DEP}, 'local', 10, 10, 777, 1, '2025-06-20T00:00:00Z')`.execute(stack.db);
    const before = await stack.metrics.registry.getSingleMetricAsString('sluice_billing_reconciliation_failures_total');
    const rerun = await bill(t.id, '2025-06');
    expect(rerun.status).toBe('failed');
    expect(rerun.error).toMatch(/does not reconcile.*1 usage rows worth 777 micro-USD dated in 2025-06 are on no invoice/);
    const after = await stack.metrics.registry.getSingleMetricAsString('sluice_billing_reconciliation_failures_total');
    expect(after).not.toBe(before);
    expect(after).toMatch(/period="2025-06"\} [1-9]/);
    const wf = await stack.client.workflow.getHandle(billingWorkflowId(t.id, '2025-06')).result().catch((e: unknown) => e);
    expect(wf).toBeInstanceOf(WorkflowFailedError);
    expect(await invoicesOf(t.id, '2025-06')).toHaveLength(1);
    const recon = await call(stack.adminKey, 'GET', `/v1/admin/invoices/${june.invoice_id}/reconciliation`);
    expect(recon.status).toBe(409);
    expect(recon.body).toMatchObject({ ok: false, unbilled_rows: 1, unbilled_micros: 777 });

    // July's invoice bills it, flagged late; June then reconciles again.
    await settleAt('2025-07-02T00:00:00Z', { tenantId: t.id });
    const july = await bill(t.id, '2025-07');
    expect(july.status).toBe('succeeded');
    const inv = await call(stack.adminKey, 'GET', `/v1/admin/invoices/${july.invoice_id}`);
    expect(inv.body).toMatchObject({ total_micros: 3777, late_usage: { rows: 1, micros: 777 } });
    expect(inv.body.late_usage.note).toMatch(/dated before 2025-07/);
    expect(inv.body.lines.find((l: any) => l.late)).toMatchObject({ usage_period: '2025-06', usage_micros: 777 });
    expect((await bill(t.id, '2025-06')).status).toBe('succeeded');
  });

  it('a period that has not ended cannot be billed', async () => {
    const t = await tenant();
    const r = await call(stack.adminKey, 'POST', '/v1/admin/billing/runs', { period: new Date().toISOString().slice(0, 7), tenant_id: t.id });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('period_open');
  });
});

describe('the finance roles', () => {
  // Billing writes are the operator's (issue 12 item 2): an operator_finance key bills, voids,
  // re-issues and adjusts; a tenant's finance key reads and exports its own tenant, and writes nothing.
  it('operator finance bills, voids, re-issues and adjusts; tenant finance reads its own tenant, and nothing else', async () => {
    const t = await tenant();
    const other = await tenant();
    await settleAt('2025-08-05T00:00:00Z', { tenantId: t.id });
    await settleAt('2025-08-05T00:00:00Z', { tenantId: other.id });
    const otherInvoice = await bill(other.id, '2025-08');
    const key = t.financeKey;
    const op = await stack.admin('POST', '/v1/admin/keys', { role: 'operator_finance' });
    expect(op.status).toBe(201);
    const opKey = op.body.key as string;

    expect((await call(key, 'POST', '/v1/admin/billing/runs', { period: '2025-08', tenant_id: t.id })).status).toBe(403);
    const first = await bill(t.id, '2025-08', opKey);
    expect(first).toMatchObject({ status: 'succeeded', total_micros: 3000 });
    const list = await call(key, 'GET', '/v1/admin/invoices?period=2025-08');
    expect(list.body.data.map((i: any) => i.tenant_id)).toEqual([t.id]);
    expect((await call(key, 'GET', `/v1/admin/invoices/${otherInvoice.invoice_id}`)).status).toBe(404);
    expect((await call(opKey, 'GET', `/v1/admin/invoices/${otherInvoice.invoice_id}`)).status).toBe(200);

    // The tenant's finance key cannot credit, void or re-issue its own bill.
    expect((await call(key, 'POST', '/v1/admin/usage/adjustments', { tenant_id: t.id, amount_micros: -3000, reason: 'free', effective_at: '2025-08-31T12:00:00Z' })).status).toBe(403);
    expect((await call(key, 'POST', `/v1/admin/invoices/${first.invoice_id}/void`, { reason: 'no' })).status).toBe(403);
    expect((await call(key, 'POST', `/v1/admin/invoices/${first.invoice_id}/reissue`)).status).toBe(403);

    // A credit by the operator, then void and re-issue: version 2 includes it; all audited.
    const adj = await call(opKey, 'POST', '/v1/admin/usage/adjustments', { tenant_id: t.id, amount_micros: -500, reason: 'goodwill credit', effective_at: '2025-08-31T12:00:00Z' });
    expect(adj.status, adj.text).toBe(201);
    const voided = await call(opKey, 'POST', `/v1/admin/invoices/${first.invoice_id}/void`, { reason: 'credit agreed after issue' });
    expect(voided.body.status).toBe('void');
    const reissued = await call(opKey, 'POST', `/v1/admin/invoices/${first.invoice_id}/reissue`);
    expect(reissued.status, reissued.text).toBe(201);
    expect(reissued.body).toMatchObject({ version: 2, replaces_invoice_id: first.invoice_id, total_micros: 2500, adjustments_micros: -500 });
    expect(reissued.body.lines.find((l: any) => l.kind === 'adjustment')).toMatchObject({ amount_micros: -500 });
    const actions = await stack.db.selectFrom('audit_log').select('action').where('tenant_id', '=', t.id).execute();
    expect(actions.map((a) => a.action)).toEqual(expect.arrayContaining(['invoice.voided', 'invoice.reissue', 'usage.adjusted', 'billing.run']));

    const csv = await call(key, 'GET', '/v1/admin/usage/export?period=2025-08&format=csv');
    expect(csv.status).toBe(200);
    const csvLines = csv.text.trim().split('\n');
    expect(csvLines[0]).toMatch(/^id,created_at,tenant_id,/);
    expect(csvLines).toHaveLength(2);
    expect(csvLines[1]).toContain(t.id);
    expect(csvLines[1]).toContain(reissued.body.id);
    const json = await call(key, 'GET', '/v1/admin/invoices/export?period=2025-08&format=json');
    expect(json.body.data.map((r: any) => r.tenant_id)).toEqual(expect.arrayContaining([t.id]));
    expect(json.body.data.every((r: any) => r.tenant_id === t.id)).toBe(true);

    // Nothing else: tenants, keys, prices, plan rates, chat are refused to both.
    for (const k of [key, opKey]) {
      expect((await call(k, 'POST', '/v1/admin/tenants', { name: 'nope' })).status).toBe(403);
      expect((await call(k, 'POST', `/v1/admin/tenants/${t.id}/keys`, { role: 'developer' })).status).toBe(403);
      expect((await call(k, 'POST', '/v1/chat/completions', { model: 'sluice-tiny', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(403);
    }
    expect((await call(key, 'POST', `/v1/admin/deployments/${DEP}/prices`, { input_micros_per_mtok: 1, output_micros_per_mtok: 1 })).status).toBe(403);
    expect((await call(key, 'POST', '/v1/admin/plans/standard/rates', { adjustment_bps: -10000 })).status).toBe(403);
    // A developer of the tenant cannot read invoices.
    const dev = await stack.admin('POST', `/v1/admin/tenants/${t.id}/keys`, { role: 'developer' });
    expect((await call(dev.body.key, 'GET', '/v1/admin/invoices')).status).toBe(403);
  });

  it('streams a usage export of 20,000 rows as CSV', async () => {
    const t = await tenant();
    await sql`insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, input_tokens, output_tokens, cost_micros, latency_ms, created_at)
              select 'req_bulk_' || g, 'infer', ${t.id}, 'key_a', 'sync', 'bill-model', ${DEP}, 'local', 10, 10, 30, 1, '2025-09-01T00:00:00Z'::timestamptz + g * interval '1 minute'
              from generate_series(1, 20000) g`.execute(stack.db);
    const csv = await call(stack.adminKey, 'GET', `/v1/admin/usage/export?period=2025-09&tenant_id=${t.id}`);
    expect(csv.status).toBe(200);
    const lines = csv.text.trim().split('\n');
    expect(lines).toHaveLength(20_001);
    expect(new Set(lines.slice(1).map((l) => l.split(',')[0])).size).toBe(20_000);
    const r = await bill(t.id, '2025-09');
    expect(r).toMatchObject({ status: 'succeeded', total_micros: 600_000 });
  });
});

describe('day close', () => {
  const DAY = '2025-04-17';
  const closesOf = (tenantId: string) =>
    stack.db.selectFrom('day_closes').select(['rows', 'input_tokens', 'output_tokens', 'cost_micros', 'closed_at', sql<string>`to_char(day, 'YYYY-MM-DD')`.as('day')])
      .where('tenant_id', '=', tenantId).orderBy('day').execute();
  const closeDay = async (day: string, key = stack.adminKey, extra: Record<string, unknown> = {}) => {
    const r = await call(key, 'POST', '/v1/admin/billing/runs', { day, wait: true, ...extra });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ object: 'billing.day_close', day });
    return r.body.result as { status: string; created: number | null; tenants: number | null; error: string | null };
  };

  it('closes each tenant\'s day once with its billable totals; a re-run writes nothing', async () => {
    const a = await tenant();
    const b = await tenant();
    await settleAt(`${DAY}T00:00:00Z`, { tenantId: a.id });
    await settleAt(`${DAY}T23:59:59.999Z`, { tenantId: a.id, promptTokens: 10, completionTokens: 5 });
    await settleAt(`${DAY}T12:00:00Z`, { tenantId: b.id });
    await settleAt('2025-04-18T00:00:00Z', { tenantId: a.id }); // the next day
    // Tokens a failed attempt spent: in the ledger, not billable, not in the close.
    const ledger = createLedgerActivities({ db: stack.db, now: () => new Date(`${DAY}T13:00:00Z`), events: createWebhookPublisher({ db: stack.db, now: () => new Date(`${DAY}T13:00:00Z`) }), metrics: null });
    await ledger.recordConsumed({
      requestId: `req_bill_${++seq}`, step: `infer:failed:${DEP}`, tenantId: a.id, keyId: 'key_a', kind: 'sync', model: 'bill-model', deploymentId: DEP,
      pool: 'local', variant: null, promptTokens: 500, completionTokens: 0, latencyMs: 0,
    });

    const first = await closeDay(DAY);
    expect(first).toMatchObject({ status: 'succeeded', error: null });
    expect(first.created).toBeGreaterThanOrEqual(2);
    // 1 micro-USD per input token, 2 per output token.
    expect(await closesOf(a.id)).toMatchObject([{ day: DAY, rows: 2, input_tokens: 1010, output_tokens: 1005, cost_micros: 3000 + 20 }]);
    expect(await closesOf(b.id)).toMatchObject([{ day: DAY, rows: 1, input_tokens: 1000, output_tokens: 1000, cost_micros: 3000 }]);
    const closedAt = (await closesOf(a.id))[0]!.closed_at;

    const again = await closeDay(DAY);
    expect(again).toMatchObject({ status: 'succeeded', created: 0, tenants: first.tenants });
    expect((await closesOf(a.id))[0]!.closed_at).toEqual(closedAt);

    // The tenant's finance key sees its own closes, not the other tenant's.
    const mine = await call(a.financeKey, 'GET', `/v1/admin/usage/days?from=${DAY}&to=2025-04-18`);
    expect(mine.status).toBe(200);
    expect(mine.body.data).toEqual([expect.objectContaining({ object: 'usage.day_close', tenant_id: a.id, day: DAY, cost_micros: 3020 })]);
    const theirs = await call(a.financeKey, 'GET', `/v1/admin/usage/days?from=${DAY}&to=2025-04-18&tenant_id=${b.id}`);
    expect(theirs.status).toBe(404); // another tenant's data does not exist for this key
  });

  it('a row dated in a closed day that the close did not count fails the re-run loudly', async () => {
    const day = '2025-04-20';
    const t = await tenant();
    await settleAt(`${day}T08:00:00Z`, { tenantId: t.id });
    expect(await closeDay(day, stack.adminKey, { tenant_id: t.id })).toMatchObject({ status: 'succeeded', created: 1, tenants: 1 });
    await settleAt(`${day}T09:00:00Z`, { tenantId: t.id }); // written after the close, dated inside it
    const rerun = await closeDay(day, stack.adminKey, { tenant_id: t.id });
    expect(rerun.status).toBe('failed');
    expect(rerun.error).toContain(`day ${day} does not reconcile with the ledger`);
    expect(rerun.error).toContain('rows closed at 1, ledger has 2');
    // What the metrics listener serves (the API port serves no metrics without SLUICE_METRICS_TOKEN).
    const metrics = await stack.metrics.registry.metrics();
    expect(metrics).toMatch(/sluice_billing_reconciliation_failures_total\{period="2025-04"\} [1-9]/);
  });

  it('refuses a day that has not ended, a date that does not exist, and a day with a period', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const open = await call(stack.adminKey, 'POST', '/v1/admin/billing/runs', { day: today });
    expect(open.status).toBe(409);
    expect(open.body.error.code).toBe('period_open');
    for (const body of [{ day: '2025-02-30' }, { day: '2025-4-1' }, { day: DAY, period: '2025-04' }]) {
      const r = await call(stack.adminKey, 'POST', '/v1/admin/billing/runs', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.type).toBe('invalid_request_error');
    }
  });

  it('the daily Schedule exists and closes the previous day', async () => {
    const schedule = stack.client.schedule.getHandle(DAY_CLOSE_SCHEDULE_ID);
    const d = await schedule.describe();
    expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: 'dayClose' });
    expect(d.spec.calendars?.[0]).toMatchObject({ hour: [{ start: 0, end: 0, step: 1 }], minute: [{ start: 5, end: 5, step: 1 }] });
    const t = await tenant();
    const yesterday = previousDay(new Date());
    await settleAt(`${yesterday}T12:00:00Z`, { tenantId: t.id });
    await schedule.trigger(ScheduleOverlapPolicy.ALLOW_ALL);
    const deadline = Date.now() + 60_000;
    while ((await closesOf(t.id)).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await closesOf(t.id)).toMatchObject([{ day: yesterday, rows: 1, cost_micros: 3000 }]);
  });
});
