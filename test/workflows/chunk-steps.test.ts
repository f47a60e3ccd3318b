/**
 * A batch's chunk of lines through `admitLines` and `completeLines` on real PostgreSQL (the
 * control activities as the worker builds them, `createChunkSteps` inside): each line is reserved
 * or refused on its own inside one `sluice_reserve_many` call (a line over the budget fails alone,
 * the ones after it still fit), a retried activity reserves and settles nothing twice, the ledger
 * gets one usage row per line, the spend adds up, the audit chain verifies, and the number of
 * queries a chunk issues does not grow with its lines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type KyselyPlugin } from 'kysely';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { verifyAudit } from '../../db/repositories/audit.js';
import { createControlActivities } from '../../activities/index.js';
import type { AdmitInput, CompleteInput } from '../../activities/admission.js';
import { createInstantTestModel } from '../support/db-models.js';

let db: Db;
let counted: Db;
let queries = 0;

/** Counts every query that reaches the database through `counted`. */
const counter: KyselyPlugin = {
  transformQuery(args) {
    queries += 1;
    return args.node;
  },
  async transformResult(args) {
    return args.result;
  },
};

beforeAll(async () => {
  const url = await createDatabase();
  db = createDb({ connectionString: url, max: 4 }).db;
  await migrateToLatest(db);
  counted = db.withPlugin(counter);
  await createInstantTestModel(db, 16);
});
afterAll(async () => {
  await db.destroy();
});

async function tenantWithBudget(budget: number | null) {
  const tenantId = (await createTenant(db, {
    name: `chunk-${Math.random()}`, plan: 'default',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: budget, allowed_models: null },
  })).id;
  const keyId = (await createKey(db, { tenantId, role: 'developer', name: null, scopes: null, expiresAt: null })).key.id;
  return { tenantId, keyId };
}

function line(t: { tenantId: string; keyId: string }, requestId: string, promptTokensEstimate: number): AdmitInput {
  return { requestId, tenantId: t.tenantId, keyId: t.keyId, model: 'm', subject: 's', promptTokensEstimate, maxTokens: 2 };
}

function completion(t: { tenantId: string; keyId: string }, requestId: string): CompleteInput {
  return {
    settle: {
      requestId, step: 'infer', tenantId: t.tenantId, keyId: t.keyId, kind: 'batch', model: 'm', deploymentId: 'm-local', pool: 'local',
      variant: null, promptTokens: 10, completionTokens: 1, latencyMs: 1,
    },
    outcome: {
      requestId, tenantId: t.tenantId, keyId: t.keyId, kind: 'batch', model: 'm', status: 'succeeded', result: { id: requestId }, error: null,
      summary: { deployment: 'm-local', pool: 'local', variant: null, prompt_tokens: 10, completion_tokens: 1 },
    },
  };
}

async function spend(tenantId: string) {
  const row = await db.selectFrom('tenant_spend').select(['spent_micros', 'reserved_micros']).where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
  return { spent: Number(row.spent_micros), reserved: Number(row.reserved_micros) };
}

describe('a chunk of batch lines on PostgreSQL', () => {
  // Pipeline only (docs/testing.md): admission and settlement; nothing is generated.
  it('reserves each line on its own in one call, settles each exactly once, and a retry changes nothing', async () => {
    // Estimates: prompt + max_tokens (2) at 1 micro a token. Budget 50: 12 fits, 42 more does not
    // (54), then 12, 12, 12 fit (48) and the last 12 does not (60).
    const t = await tenantWithBudget(50);
    const acts = createControlActivities({ db });
    const items = [line(t, 'c1', 10), line(t, 'c2', 40), line(t, 'c3', 10), line(t, 'c4', 10), line(t, 'c5', 10), line(t, 'c6', 10)];
    const first = await acts.admitLines({ items });
    expect(first.map((r) => r.ok)).toEqual([true, false, true, true, true, false]);
    expect(first[1]).toMatchObject({ ok: false, failure: { type: 'QuotaExceeded', details: [{ code: 'insufficient_quota' }] } });
    expect(first[0]).toMatchObject({ ok: true, value: { estCostMicros: 12, acquired: 0 } });
    expect(await spend(t.tenantId)).toEqual({ spent: 0, reserved: 48 });

    // The activity retried: the held lines find their reservations, nothing more is held.
    const again = await acts.admitLines({ items });
    expect(again.map((r) => r.ok)).toEqual([true, false, true, true, true, false]);
    expect(await spend(t.tenantId)).toEqual({ spent: 0, reserved: 48 });

    const admitted = ['c1', 'c3', 'c4', 'c5'];
    const done = await acts.completeLines({ items: admitted.map((id) => completion(t, id)) });
    expect(done).toEqual(admitted.map(() => ({ ok: true, value: { costMicros: 11 } })));
    const retried = await acts.completeLines({ items: admitted.map((id) => completion(t, id)) });
    expect(retried).toEqual(done);

    const usage = await db.selectFrom('usage').select(['request_id', 'cost_micros']).where('tenant_id', '=', t.tenantId).orderBy('request_id').execute();
    expect(usage.map((u) => [u.request_id, Number(u.cost_micros)])).toEqual(admitted.map((id) => [id, 11]));
    expect(await spend(t.tenantId)).toEqual({ spent: 44, reserved: 0 });
    const reservations = await db.selectFrom('reservations').select(['request_id', 'status']).where('tenant_id', '=', t.tenantId).orderBy('request_id').execute();
    expect(reservations.map((r) => [r.request_id, r.status])).toEqual(admitted.map((id) => [id, 'settled']));
    const audited = await db.selectFrom('audit_log').select('target').where('tenant_id', '=', t.tenantId).where('action', '=', 'request.succeeded').execute();
    expect(audited.map((a) => a.target).sort()).toEqual(admitted.map((id) => `request:${id}`));
    expect(await verifyAudit(db, { full: true })).toMatchObject({ ok: true });
  });

  it('issues as many queries for a chunk of 64 lines as for a chunk of 4', async () => {
    const acts = createControlActivities({ db: counted });
    const rounds = async (n: number) => {
      const t = await tenantWithBudget(null);
      const ids = Array.from({ length: n }, (_, i) => `q${n}-${i}-${t.tenantId}`);
      queries = 0;
      const admitted = await acts.admitLines({ items: ids.map((id) => line(t, id, 10)) });
      const admitQueries = queries;
      queries = 0;
      const completed = await acts.completeLines({ items: ids.map((id) => completion(t, id)) });
      expect([...admitted, ...completed].every((r) => r.ok)).toBe(true);
      const rows = await sql<{ n: string }>`select count(*) as n from usage where tenant_id = ${t.tenantId}`.execute(db);
      expect(Number(rows.rows[0]?.n)).toBe(n);
      return { admit: admitQueries, complete: queries };
    };
    const small = await rounds(4);
    const large = await rounds(64);
    expect(large).toEqual(small);
    // Before chunk steps, each line cost ~5 queries to admit and ~3 to complete.
    expect(large.admit + large.complete).toBeLessThan(64);
  });
});
