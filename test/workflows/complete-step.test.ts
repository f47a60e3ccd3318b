/**
 * One request's `complete` in one statement (`sluice_complete`, migration 0811) on real
 * PostgreSQL, against the separate steps it replaces (`settle` → `recordCircuit` →
 * `recordOutcome`): the same usage row, reservation, spend, request row and audit data; a retry
 * settles, finishes and audits nothing twice; the audit chain verifies; a tenant's negotiated
 * price and a cache hit's price apply; a half-open circuit's probe success closes it; and the
 * cost in SQL (`sluice_usage_cost`) is `usageCostMicros`. A response-cache hit's
 * `completeFromCache` is the same one statement (`p_cached`): what `settle` (cached) →
 * `recordOutcome` wrote, no circuit touched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pg from 'pg';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { addPrice, type PriceQuote } from '../../db/repositories/billing.js';
import { insertRequest } from '../../db/repositories/requests.js';
import { verifyAudit } from '../../db/repositories/audit.js';
import { createControlActivities } from '../../activities/index.js';
import { createAdmissionActivities, type CompleteInput } from '../../activities/admission.js';
import { usageCostMicros } from '../../activities/billing.js';
import { createInstantTestModel } from '../support/db-models.js';

let db: Db;
let acts: ReturnType<typeof createControlActivities>;
/** The same activities with `complete` as the separate steps (no `completeOne`). */
let separate: ReturnType<typeof createAdmissionActivities>;

beforeAll(async () => {
  const url = await createDatabase();
  db = createDb({ connectionString: url, max: 4 }).db;
  await migrateToLatest(db);
  await createInstantTestModel(db, 16);
  acts = createControlActivities({ db });
  separate = createAdmissionActivities(acts);
});
afterAll(async () => {
  await db.destroy();
});

async function tenantKey() {
  const tenantId = (await createTenant(db, {
    name: `complete-${Math.random()}`, plan: 'default',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: 1_000_000, allowed_models: null },
  })).id;
  const keyId = (await createKey(db, { tenantId, role: 'developer', name: null, scopes: null, expiresAt: null })).key.id;
  return { tenantId, keyId };
}

/** A request admitted as the workflow admits it (row inserted first, as the API does), and its `complete` input. */
async function admitted(t: { tenantId: string; keyId: string }, requestId: string, extra: Partial<CompleteInput['settle']> = {}): Promise<CompleteInput> {
  await insertRequest(db, { id: requestId, tenantId: t.tenantId, keyId: t.keyId, kind: 'sync', model: 'm', idempotencyKey: null, bodyHash: 'h' });
  const a = await acts.admit({ requestId, tenantId: t.tenantId, keyId: t.keyId, model: 'm', subject: 's', promptTokensEstimate: 9, maxTokens: 4 });
  expect(a.acquired).toBe(0);
  return {
    settle: { requestId, step: 'infer', tenantId: t.tenantId, keyId: t.keyId, kind: 'sync', model: 'm', deploymentId: 'm-local', pool: 'local', variant: null, latencyMs: 3, promptTokens: 7, completionTokens: 3, ...extra },
    outcome: {
      requestId, tenantId: t.tenantId, keyId: t.keyId, kind: 'sync', model: 'm', status: 'succeeded', result: { object: 'chat.completion', text: 'a\u0000b' }, error: null,
      summary: { deployment: 'm-local', pool: 'local', variant: null, prompt_tokens: 7, completion_tokens: 3 },
    },
  };
}

/** What a completion left in the database for the request, without IDs and instants. */
async function written(requestId: string) {
  const usage = await db.selectFrom('usage').select(['step', 'input_tokens', 'output_tokens', 'cost_micros', 'latency_ms', 'price_id', 'tenant_price_id', 'billable', 'cached'])
    .where('request_id', '=', requestId).execute();
  const reservation = await db.selectFrom('reservations').select(['status']).where('request_id', '=', requestId).executeTakeFirstOrThrow();
  const request = await db.selectFrom('requests').select(['status', 'result', 'error', 'pool', 'failure_type']).where('id', '=', requestId).executeTakeFirstOrThrow();
  const audit = await db.selectFrom('audit_log').select(['action', 'data', 'actor']).where('target', '=', `request:${requestId}`).execute();
  return { usage, reservation, request, audit: audit.map((r) => ({ ...r, actor: r.actor.replace(/key_\w+/, 'key') })) };
}

async function spend(tenantId: string) {
  return db.selectFrom('tenant_spend').select(['spent_micros', 'reserved_micros']).where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
}

describe('complete in one statement', () => {
  it('writes what the separate steps write, and a retry writes nothing more', async () => {
    const a = await tenantKey();
    const b = await tenantKey();
    const one = await admitted(a, 'req_one');
    const old = await admitted(b, 'req_old');
    const r1 = await acts.complete(one);
    expect(await acts.complete(one)).toEqual(r1);
    const r2 = await separate.complete(old);
    expect(r1).toEqual(r2);
    expect(r1.costMicros).toBe(10); // 10 tokens at 1 micro-USD each
    const w1 = await written('req_one');
    expect(w1).toEqual(await written('req_old'));
    expect(w1.usage).toHaveLength(1);
    expect(w1.audit).toHaveLength(1);
    expect(w1.audit[0]?.data).toMatchObject({ cost_micros: 10 });
    expect(w1.request).toMatchObject({ status: 'succeeded', pool: 'local', result: { text: 'a\u0000b' } });
    expect(w1.reservation.status).toBe('settled');
    expect(await spend(a.tenantId)).toEqual(await spend(b.tenantId));
    expect(await spend(a.tenantId)).toEqual({ spent_micros: 10, reserved_micros: 0 });
    expect(await verifyAudit(db, { full: true })).toMatchObject({ ok: true });
  });

  it("prices at the tenant's negotiated rate, and a cache hit at the model's cache price", async () => {
    const t = await tenantKey();
    await addPrice(db, { deploymentId: 'm-local', tenantId: t.tenantId, inputMicrosPerMtok: 3_000_000, outputMicrosPerMtok: 5_000_000, requestMicros: 2, batchDiscountBps: 0, effectiveFrom: new Date(Date.now() - 1000) });
    const priced = await admitted(t, 'req_negotiated');
    expect(await acts.complete(priced)).toEqual({ costMicros: 7 * 3 + 3 * 5 + 2 });
    expect((await written('req_negotiated')).usage[0]?.tenant_price_id).not.toBeNull();
    await db.updateTable('models').set({ cache_micros_per_mtok: 1_500_000 }).where('id', '=', 'm').execute();
    const hit = await admitted(t, 'req_cached', { cached: true });
    expect(await acts.complete(hit)).toEqual({ costMicros: 15 }); // 10 tokens at 1.5 micro-USD
    expect((await written('req_cached')).usage[0]).toMatchObject({ cached: true, price_id: null, tenant_price_id: null, cost_micros: 15 });
    await db.updateTable('models').set({ cache_micros_per_mtok: 0 }).where('id', '=', 'm').execute();
    expect(await verifyAudit(db, { full: true })).toMatchObject({ ok: true });
  });

  it("closes a half-open circuit on its probe's success", async () => {
    const t = await tenantKey();
    const input = await admitted(t, 'req_probe');
    await db.updateTable('circuit_state').set({ state: 'half_open', failures: 3, opened_at: new Date(Date.now() - 60_000), probe_started_at: new Date() })
      .where('deployment_id', '=', 'm-local').execute();
    await acts.complete(input);
    expect(await db.selectFrom('circuit_state').select(['state', 'failures']).where('deployment_id', '=', 'm-local').executeTakeFirstOrThrow())
      .toEqual({ state: 'closed', failures: 0 });
  });

  it('refuses a negative token count before anything is written', async () => {
    const t = await tenantKey();
    const input = await admitted(t, 'req_negative', { completionTokens: -1 });
    await expect(acts.complete(input)).rejects.toThrow(RangeError);
    expect((await written('req_negative')).usage).toHaveLength(0);
  });

  it('computes the cost in SQL as usageCostMicros does', async () => {
    const quotes: PriceQuote[] = [];
    for (const rate of [0, 1, 999_999, 1_000_000, 2_500_001, 123_456_789_012]) {
      for (const [requestMicros, bps] of [[0, 0], [7, 0], [3, 2500], [0, 10_000], [11, 1]] as const) {
        quotes.push({ priceId: 1, tenantPriceId: null, inputMicrosPerMtok: rate, outputMicrosPerMtok: (rate * 3) % 9_999_991, requestMicros, batchDiscountBps: bps });
      }
    }
    for (const q of quotes) {
      for (const kind of ['sync', 'batch'] as const) {
        for (const [tin, tout] of [[0, 0], [1, 0], [0, 1], [333, 77], [2_000_000_000, 1_999_999_999]] as const) {
          const { rows } = await sql<{ cost: number }>`select sluice_usage_cost(${q.inputMicrosPerMtok}, ${q.outputMicrosPerMtok}, ${q.requestMicros}, ${q.batchDiscountBps}, ${kind}, ${tin}, ${tout}) as cost`.execute(db);
          expect(rows[0]?.cost, JSON.stringify({ q, kind, tin, tout })).toBe(usageCostMicros(q, kind, tin, tout));
        }
      }
    }
  });

  it('completes a cache hit in one statement: what settle (cached) then recordOutcome wrote, once, no circuit touched', async () => {
    const a = await tenantKey();
    const b = await tenantKey();
    await db.updateTable('models').set({ cache_micros_per_mtok: 1_500_000 }).where('id', '=', 'm').execute();
    const hit = await admitted(a, 'req_hit_one', { cached: true, latencyMs: 0 });
    const old = await admitted(b, 'req_hit_old', { cached: true, latencyMs: 0 });
    await db.updateTable('circuit_state').set({ state: 'half_open', failures: 3, opened_at: new Date(Date.now() - 60_000), probe_started_at: new Date() })
      .where('deployment_id', '=', 'm-local').execute();
    const circuit = () => db.selectFrom('circuit_state').select(['state', 'failures']).where('deployment_id', '=', 'm-local').executeTakeFirstOrThrow();
    const before = await circuit();
    // Statements sent while the hit completes (pg's Client.query, as bench/round-trips.ts counts them).
    const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
    let statements = 0;
    pg.Client.prototype.query = function counted(this: pg.Client, ...args: unknown[]) {
      statements += 1;
      return query.apply(this, args);
    } as typeof pg.Client.prototype.query;
    let r1: { costMicros: number };
    try {
      r1 = await acts.completeFromCache(hit);
    } finally {
      pg.Client.prototype.query = query as typeof pg.Client.prototype.query;
    }
    expect(statements).toBe(1);
    expect(r1).toEqual({ costMicros: 15 }); // 10 tokens at 1.5 micro-USD
    expect(await acts.completeFromCache(hit)).toEqual(r1);
    // The steps it replaces, as the activity ran them before.
    const { costMicros } = await acts.settle({ ...old.settle, cached: true });
    await acts.recordOutcome({ ...old.outcome, summary: { ...old.outcome.summary, cost_micros: costMicros, cached: true } });
    expect(costMicros).toBe(15);
    const w1 = await written('req_hit_one');
    expect(w1).toEqual(await written('req_hit_old'));
    expect(w1.usage).toEqual([expect.objectContaining({ cached: true, billable: true, price_id: null, tenant_price_id: null, cost_micros: 15 })]);
    expect(w1.audit).toHaveLength(1);
    expect(w1.audit[0]?.data).toMatchObject({ cached: true, cost_micros: 15 });
    expect(w1.request).toMatchObject({ status: 'succeeded', pool: 'local' });
    expect(w1.reservation.status).toBe('settled');
    expect(await spend(a.tenantId)).toEqual({ spent_micros: 15, reserved_micros: 0 });
    expect(await spend(a.tenantId)).toEqual(await spend(b.tenantId));
    expect(await circuit()).toEqual(before);
    await db.updateTable('circuit_state').set({ state: 'closed', failures: 0, opened_at: null, probe_started_at: null }).where('deployment_id', '=', 'm-local').execute();
    await db.updateTable('models').set({ cache_micros_per_mtok: 0 }).where('id', '=', 'm').execute();
    expect(await verifyAudit(db, { full: true })).toMatchObject({ ok: true });
  });
});
