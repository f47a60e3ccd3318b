/**
 * `sluice_reserve_many` / `sluice_settle_many` (migration 0831: each shared counter row written
 * once per call with the chunk's sums) decide and write what one `sluice_reserve` /
 * `sluice_settle` call per item, in order, decides and writes: the same answer per item, the same
 * counters, spend, reservations and usage rows, the same budget thresholds named after the same
 * items. Two tenants with the same limits get the same items, one through each path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant, type TenantLimits } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { reserve, reserveMany, settle, settleMany, type ReserveInput, type UsageInput } from '../../db/repositories/quota.js';
import { createInstantTestModel } from '../support/db-models.js';

let db: Db;

beforeAll(async () => {
  const url = await createDatabase();
  db = createDb({ connectionString: url, max: 4 }).db;
  await migrateToLatest(db);
  await createInstantTestModel(db, 16);
});
afterAll(async () => {
  await db.destroy();
});

interface Twin { tenantId: string; keyId: string; prefix: string }

async function twins(limits: TenantLimits): Promise<[Twin, Twin]> {
  const make = async (side: string): Promise<Twin> => {
    const tenantId = (await createTenant(db, { name: `many-${side}-${Math.random()}`, plan: 'default', limits })).id;
    const keyId = (await createKey(db, { tenantId, role: 'developer', name: null, scopes: null, expiresAt: null })).key.id;
    return { tenantId, keyId, prefix: `${side}-${tenantId}-` };
  };
  return [await make('one'), await make('many')];
}

const limits = (l: Partial<TenantLimits>): TenantLimits => ({
  requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: null, allowed_models: null, ...l,
});

/** Everything the functions write for a tenant, with its request IDs stripped of the side's prefix. */
async function state(t: Twin) {
  const strip = (id: string | null) => id?.slice(t.prefix.length) ?? null;
  const counters = await db.selectFrom('quota_counters').select(['window_start', 'requests', 'tokens']).where('tenant_id', '=', t.tenantId).orderBy('window_start').execute();
  const spend = await db.selectFrom('tenant_spend').select(['period', 'spent_micros', 'reserved_micros']).where('tenant_id', '=', t.tenantId).execute();
  const reservations = await db.selectFrom('reservations').select(['request_id', 'status', 'est_tokens', 'est_cost_micros', 'window_start', 'period'])
    .where('tenant_id', '=', t.tenantId).orderBy('request_id').execute();
  const usage = await db.selectFrom('usage').select(['request_id', 'step', 'input_tokens', 'output_tokens', 'cost_micros', 'billable'])
    .where('tenant_id', '=', t.tenantId).orderBy('request_id').orderBy('step').execute();
  const events = await db.selectFrom('budget_events').select(['period', 'threshold_pct', 'committed_micros', 'request_id'])
    .where('tenant_id', '=', t.tenantId).orderBy('threshold_pct').execute();
  return {
    counters: counters.map((c) => ({ ...c, requests: Number(c.requests), tokens: Number(c.tokens) })),
    spend: spend.map((s) => ({ ...s, spent_micros: Number(s.spent_micros), reserved_micros: Number(s.reserved_micros) })),
    reservations: reservations.map((r) => ({ ...r, request_id: strip(r.request_id), est_tokens: Number(r.est_tokens), est_cost_micros: Number(r.est_cost_micros) })),
    usage: usage.map((u) => ({ ...u, request_id: strip(u.request_id), cost_micros: Number(u.cost_micros) })),
    events: events.map((e) => ({ ...e, request_id: strip(e.request_id), committed_micros: Number(e.committed_micros) })),
  };
}

const at = new Date();
const reserveInput = (t: Twin, id: string, estTokens: number, estCostMicros: number): ReserveInput =>
  ({ requestId: t.prefix + id, tenantId: t.tenantId, estTokens, estCostMicros, at });
const usageInput = (t: Twin, id: string, step: string, tokens: number, costMicros: number): UsageInput => ({
  requestId: t.prefix + id, step, tenantId: t.tenantId, keyId: t.keyId, kind: 'batch', model: 'm', deploymentId: 'm-local', pool: 'local',
  variant: null, promptTokens: tokens - 1, completionTokens: 1, latencyMs: 3, priceId: null, costMicros, at,
});

type Item = [id: string, estTokens: number, estCost: number];
type Usage = [id: string, step: string, tokens: number, cost: number];

/** Runs the same reserves and settles per item on `one` and per chunk on `many`; each answer and the end state must match. */
async function compare(l: TenantLimits, reserves: Item[][], settles: Usage[][]) {
  const [one, many] = await twins(l);
  for (const chunk of reserves) {
    const perItem = [];
    for (const [id, tokens, cost] of chunk) perItem.push(await reserve(db, reserveInput(one, id, tokens, cost)));
    const together = await reserveMany(db, chunk.map(([id, tokens, cost]) => reserveInput(many, id, tokens, cost)));
    expect(together).toEqual(perItem);
  }
  for (const chunk of settles) {
    const perItem = [];
    for (const [id, step, tokens, cost] of chunk) perItem.push(await settle(db, usageInput(one, id, step, tokens, cost)));
    const together = await settleMany(db, chunk.map(([id, step, tokens, cost]) => usageInput(many, id, step, tokens, cost)));
    expect(together).toEqual(perItem);
  }
  const [a, b] = [await state(one), await state(many)];
  expect(b).toEqual(a);
  return b;
}

describe('reserve and settle many: the per-item answers and writes, with one write per counter row', () => {
  it('refuses each item over a limit alone, counts the ones before it, and answers a held request with its hold', async () => {
    const end = await compare(
      limits({ requests_per_minute: 7, tokens_per_minute: 100, max_concurrent: 5 }),
      [
        [['a', 10, 10], ['b', 60, 60], ['c', 40, 40], ['a', 10, 10], ['d', 5, 5], ['e', 5, 5]],
        // 'a' again (held), then concurrency: 5 held at most.
        [['a', 10, 10], ['f', 1, 1], ['g', 1, 1], ['h', 1, 1]],
      ],
      [
        // 'a' twice with the same step (the second answers with the stored cost), 'c' had been refused (no reservation).
        [['a', 'infer', 8, 8], ['d', 'infer', 9, 9], ['a', 'infer', 8, 8], ['c', 'infer', 3, 3], ['e', 'infer', 2, 2]],
        [['d', 'infer', 9, 9], ['f', 'infer', 4, 4], ['f', 'infer:retry', 2, 2]],
      ],
    );
    expect(end.reservations.map((r) => [r.request_id, r.status])).toEqual([['a', 'settled'], ['b', 'held'], ['d', 'settled'], ['e', 'settled'], ['f', 'settled']]);
    // 'c' over the tokens per minute, 'g' and 'h' over the concurrency (a, b, d, e, f held).
    expect(end.counters).toHaveLength(1);
  });

  it('records each budget threshold once, named after the item that reached it, with the spend just after it', async () => {
    const end = await compare(
      limits({ monthly_budget_micros: 100 }),
      [[['a', 30, 30], ['b', 30, 30], ['c', 25, 25], ['d', 30, 30], ['e', 10, 10], ['f', 5, 5]]],
      [[['a', 'infer', 40, 40], ['b', 'infer', 10, 10], ['c', 'infer', 25, 25], ['e', 'infer', 12, 12]]],
    );
    expect(end.events.map((e) => e.threshold_pct)).toEqual([80, 100]);
    expect(end.spend[0]).toMatchObject({ spent_micros: 87, reserved_micros: 5 });
  });

  it('handles several tenants in one call and a tenant that does not exist', async () => {
    const [x, y] = await twins(limits({ requests_per_minute: 2 }));
    const missing: Twin = { tenantId: 'no-such-tenant', keyId: x.keyId, prefix: 'm-' };
    const inputs = [reserveInput(y, '1', 1, 1), reserveInput(x, '1', 1, 1), reserveInput(missing, '1', 1, 1), reserveInput(y, '2', 1, 1),
      reserveInput(y, '3', 1, 1), reserveInput(x, '2', 1, 1)];
    const got = await reserveMany(db, inputs);
    expect(got.map((r) => (r.ok ? 'ok' : r.limit))).toEqual(['ok', 'ok', 'tenant_missing', 'ok', 'requests_per_minute', 'ok']);
    const settled = await settleMany(db, [usageInput(x, '1', 'infer', 2, 2), usageInput(y, '2', 'infer', 3, 3), usageInput(y, '1', 'infer', 1, 1)]);
    expect(settled.map((s) => [s.costMicros, s.inserted])).toEqual([[2, true], [3, true], [1, true]]);
    expect((await state(x)).spend[0]).toMatchObject({ spent_micros: 2, reserved_micros: 1 });
    expect((await state(y)).spend[0]).toMatchObject({ spent_micros: 4, reserved_micros: 0 });
  });

  it('writes each counter row once per call, whatever the number of items', async () => {
    const [t] = await twins(limits({ requests_per_minute: 1000, tokens_per_minute: 100_000, max_concurrent: 1000, monthly_budget_micros: 1_000_000 }));
    const ids = Array.from({ length: 50 }, (_, i) => `w${i}`);
    /**
     * Rows inserted and updated per table by `run`: the growth of pg_stat_xact_user_tables (the
     * backend's counts not yet flushed, which no flush changes inside a transaction) across it.
     */
    const writes = (run: (trx: Db) => Promise<unknown>) => db.transaction().execute(async (trx) => {
      const counts = async () => {
        const rows = await sql<{ relname: string; n: string }>`
          select relname, n_tup_ins + n_tup_upd as n from pg_stat_xact_user_tables
          where relname in ('reservations', 'quota_counters', 'tenant_spend', 'usage')`.execute(trx);
        return new Map(rows.rows.map((r) => [r.relname, Number(r.n)]));
      };
      const before = await counts();
      await run(trx);
      const after = await counts();
      return Object.fromEntries([...after].map(([table, n]) => [table, n - (before.get(table) ?? 0)]));
    });
    const reserved = await writes((trx) => reserveMany(trx, ids.map((id) => reserveInput(t, id, 10, 10))));
    expect(reserved).toMatchObject({ reservations: 50, quota_counters: 1, tenant_spend: 1 });
    const settled = await writes((trx) => settleMany(trx, ids.map((id) => usageInput(t, id, 'infer', 5, 5))));
    expect(settled).toMatchObject({ reservations: 50, quota_counters: 1, tenant_spend: 1, usage: 50 });
    expect((await state(t)).spend[0]).toMatchObject({ spent_micros: 250, reserved_micros: 0 });
  });
});
