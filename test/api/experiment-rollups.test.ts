/**
 * The experiment rollups (migration 2026-12-01-0641) on a real PostgreSQL: after any mix of
 * writes to exposures, requests, the ledger and feedback — in the pipeline's order or not, one
 * row or many per statement, inserts, updates (a replaced thumbs, a request finishing, a TTFT
 * written later) and deletes — `experimentSums` (which reads only the rollups) equals the same
 * sums computed from the base tables by a join, for the whole experiment and for one tenant's
 * view. An exposure written concurrently with its request's outcome is counted once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pg from 'pg';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { createExperiment, experimentSums } from '../../db/repositories/experiments.js';
import type { RequestStatus } from '../../db/tables/requests.js';

let db: Db;
let url: string;
const tenants: Array<{ id: string; keyId: string }> = [];
let expId: string;

/** A deterministic generator (mulberry32), so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The sums from the base tables, by joining them (what the results read before the rollups). */
async function reference(tenantId: string | null) {
  const filter = tenantId === null ? sql`` : sql`and x.tenant_id = ${tenantId}`;
  const totals = await sql<Record<string, string>>`
    select x.variant, count(*) as exposures,
      count(*) filter (where r.status = 'succeeded') as succeeded, count(*) filter (where r.status = 'failed') as failed,
      count(*) filter (where r.status = 'cancelled') as cancelled, count(u.request_id) as served,
      coalesce(sum(u.cost_micros), 0)::float8 as cost, coalesce(sum(u.cost_micros::numeric ^ 2), 0)::float8 as cost_sq,
      coalesce(sum(u.input_tokens), 0)::float8 as pt, coalesce(sum(u.input_tokens::numeric ^ 2), 0)::float8 as pt_sq,
      coalesce(sum(u.output_tokens), 0)::float8 as ct, coalesce(sum(u.output_tokens::numeric ^ 2), 0)::float8 as ct_sq
    from experiment_exposures x
    left join requests r on r.id = x.request_id
    left join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')
    where x.experiment_id = ${expId} ${filter}
    group by 1 order by 1`.execute(db);
  const histogram = await sql<{ variant: string; metric: string; bucket: number; n: string }>`
    select variant, metric, bucket, count(*) as n from (
      select x.variant, 'latency' as metric,
        case when u.latency_ms < 1000 then u.latency_ms else round(u.latency_ms::numeric, 3 - length(u.latency_ms::text))::int end as bucket
      from experiment_exposures x join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')
      where x.experiment_id = ${expId} ${filter}
      union all
      select x.variant, 'ttft', case when r.ttft_ms < 1000 then r.ttft_ms else round(r.ttft_ms::numeric, 3 - length(r.ttft_ms::text))::int end
      from experiment_exposures x join requests r on r.id = x.request_id and r.status = 'succeeded' and r.ttft_ms is not null
      where x.experiment_id = ${expId} ${filter}
    ) b group by 1, 2, 3 order by 1, 2, 3`.execute(db);
  const feedback = await sql<Record<string, string>>`
    select x.variant, f.metric, f.kind, count(*) as n, count(*) filter (where f.value_bool) as trues,
      coalesce(sum(f.value_num::numeric), 0)::float8 as s, coalesce(sum(f.value_num::numeric ^ 2), 0)::float8 as sq
    from experiment_exposures x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id
    where x.experiment_id = ${expId} ${filter}
    group by 1, 2, 3 order by f.metric, f.kind, x.variant`.execute(db);
  const n = (v: string | number | undefined) => Number(v ?? 0);
  return {
    variants: totals.rows.map((r) => ({
      variant: r.variant, exposures: n(r.exposures), succeeded: n(r.succeeded), failed: n(r.failed), cancelled: n(r.cancelled),
      costMicros: { n: n(r.exposures), sum: n(r.cost), sumSquares: n(r.cost_sq) },
      promptTokens: { n: n(r.served), sum: n(r.pt), sumSquares: n(r.pt_sq) },
      completionTokens: { n: n(r.served), sum: n(r.ct), sumSquares: n(r.ct_sq) },
      latencyN: histogram.rows.filter((h) => h.variant === r.variant && h.metric === 'latency').reduce((a, h) => a + n(h.n), 0),
      latencyHistogram: histogram.rows.filter((h) => h.variant === r.variant && h.metric === 'latency').map((h) => [h.bucket, n(h.n)]),
      ttftN: histogram.rows.filter((h) => h.variant === r.variant && h.metric === 'ttft').reduce((a, h) => a + n(h.n), 0),
      ttftHistogram: histogram.rows.filter((h) => h.variant === r.variant && h.metric === 'ttft').map((h) => [h.bucket, n(h.n)]),
    })),
    feedback: feedback.rows.map((r) => ({ variant: r.variant, metric: r.metric, kind: r.kind, n: n(r.n), trues: n(r.trues), sum: n(r.s), sumSquares: n(r.sq) })),
  };
}

async function expectRollupsMatch(): Promise<void> {
  for (const scope of [null, ...tenants.map((t) => t.id)]) {
    const got = await experimentSums(db, expId, scope);
    const want = await reference(scope);
    // Variants whose every contribution was removed stay as zero rows in the rollup: compare the non-empty ones.
    expect(got.variants.filter((v) => v.exposures > 0)).toEqual(want.variants);
    expect(got.feedback).toEqual(want.feedback);
  }
}

async function insertRequests(ids: readonly string[], tenant: { id: string; keyId: string }, status: RequestStatus = 'queued'): Promise<void> {
  if (ids.length === 0) return;
  await db.insertInto('requests').values(ids.map((id) => ({ id, tenant_id: tenant.id, key_id: tenant.keyId, kind: 'sync', model: 'm', body_hash: 'h', status }))).execute();
}

beforeAll(async () => {
  url = await createDatabase();
  db = createDb({ connectionString: url, max: 6 }).db;
  await migrateToLatest(db);
  await db.insertInto('models').values({ id: 'm', owned_by: 'sluice', context_length: 4096, max_output_tokens: 16 }).execute();
  for (const name of ['one', 'two']) {
    const t = await createTenant(db, { name, plan: 'standard', limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: null, allowed_models: null } });
    const { key } = await createKey(db, { tenantId: t.id, role: 'developer', name, scopes: null, expiresAt: null });
    tenants.push({ id: t.id, keyId: key.id });
  }
  // A global experiment: both tenants' requests enter it, and each tenant has its own view.
  const exp = await createExperiment(db, {
    name: 'rollups', model: 'm', tenantId: null, status: 'running', startsAt: null, endsAt: null, trafficAllocation: 1, targetKeyIds: null,
    targetMetadata: null, controlVariant: 'a', variants: [{ name: 'a', weight: 1, overrides: {} }, { name: 'b', weight: 1, overrides: {} }, { name: 'c', weight: 1, overrides: {} }],
  });
  expId = exp.id;
});
afterAll(async () => {
  await db?.destroy();
});

describe('experiment rollups', () => {
  it('equal the joined base tables after random writes in any order, one row or many per statement', async () => {
    const random = rng(15);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const ids: string[] = [];
    for (let round = 0; round < 6; round++) {
      const tenant = pick(tenants);
      const batch = Array.from({ length: 40 }, (_, i) => `req_r${round}_${i}`);
      ids.push(...batch);
      // Half the rounds expose first (the pipeline's order), half write the facts first.
      const exposeFirst = round % 2 === 0;
      const expose = async () => {
        const rows = batch.filter(() => random() < 0.9).map((id) => ({ request_id: id, experiment_id: expId, tenant_id: tenant.id, subject: id, variant: pick(['a', 'b', 'c']) }));
        // One statement for many rows, or one per row.
        if (round % 3 === 0) for (const r of rows) await db.insertInto('experiment_exposures').values(r).execute();
        else if (rows.length > 0) await db.insertInto('experiment_exposures').values(rows).execute();
      };
      await insertRequests(batch, tenant);
      if (exposeFirst) await expose();
      await db.updateTable('requests').set({ status: 'running' }).where('id', 'in', batch).execute();
      const usage = batch.filter(() => random() < 0.8).map((id, i) => ({
        request_id: id, step: pick(['infer', 'infer', 'infer', 'embed', 'other']), tenant_id: tenant.id, key_id: tenant.keyId, kind: 'sync' as const,
        model: 'm', deployment_id: 'd', pool: 'p', variant: null, input_tokens: Math.floor(random() * 50), output_tokens: Math.floor(random() * 20),
        cost_micros: Math.floor(random() * 1000) + i % 2, latency_ms: pick([Math.floor(random() * 900), 1000 + Math.floor(random() * 20000)]), billable: random() < 0.9,
      }));
      if (usage.length > 0) await db.insertInto('usage').values(usage as never).execute();
      for (const id of batch) {
        const status = pick<RequestStatus>(['succeeded', 'succeeded', 'failed', 'cancelled', 'running']);
        await db.updateTable('requests').set({ status, ...(random() < 0.4 ? { ttft_ms: Math.floor(random() * 3000) } : {}) }).where('id', '=', id).execute();
      }
      const fb = batch.filter(() => random() < 0.5).map((id, i) => {
        const kind = pick(['boolean', 'score', 'comment'] as const);
        return {
          id: `fb_${round}_${i}`, tenant_id: tenant.id, request_id: id, key_id: tenant.keyId, metric: pick(['thumbs', 'rating']), kind,
          value_bool: kind === 'boolean' ? random() < 0.6 : null, value_num: kind === 'score' ? Math.round(random() * 50) / 10 : null, comment: kind === 'comment' ? 'ok' : null,
        };
      });
      const unique = [...new Map(fb.map((f) => [`${f.request_id}/${f.metric}`, f])).values()];
      if (unique.length > 0) await db.insertInto('feedback').values(unique).execute();
      if (!exposeFirst) await expose();
      await expectRollupsMatch();
    }
    // Thumbs replaced (last write wins), scores changed, comments erased.
    await db.updateTable('feedback').set({ value_bool: sql`not value_bool` }).where('kind', '=', 'boolean').execute();
    await db.updateTable('feedback').set({ value_num: sql`value_num + 1.5` }).where('kind', '=', 'score').execute();
    await db.deleteFrom('feedback').where('kind', '=', 'comment').execute();
    await expectRollupsMatch();
    // A TTFT written after the request finished; a status moved back and forth; one request's ledger row deleted.
    await db.updateTable('requests').set({ ttft_ms: 42 }).where('status', '=', 'succeeded').where('ttft_ms', 'is', null).where('id', 'like', 'req_r1_%').execute();
    await db.updateTable('requests').set({ status: 'failed' }).where('id', 'like', 'req_r2_1%').execute();
    await db.deleteFrom('usage').where('request_id', 'like', 'req_r3_%').execute();
    await db.updateTable('usage').set({ billable: false }).where('request_id', 'like', 'req_r4_1%').execute();
    await expectRollupsMatch();
    // The erase rewrites subjects (allowed); exposures and requests deleted; exposures of requests that do not exist.
    await db.updateTable('experiment_exposures').set({ subject: 'erased' }).where('tenant_id', '=', (tenants[0] as { id: string }).id).execute();
    await db.deleteFrom('experiment_exposures').where('request_id', 'like', 'req_r5_%').execute();
    await db.deleteFrom('feedback').where('request_id', 'like', 'req_r0_2%').execute();
    await sql`delete from usage where request_id like 'req_r0_2%'`.execute(db);
    await db.deleteFrom('requests').where('id', 'like', 'req_r0_2%').execute();
    await sql`
      insert into experiment_exposures (request_id, experiment_id, tenant_id, subject, variant)
      select 'req_ghost_' || g, ${expId}, ${(tenants[1] as { id: string }).id}, 'ghost', 'a' from generate_series(1, 7) g`.execute(db);
    await expectRollupsMatch();
    expect(ids.length).toBe(240);
  });

  it('refuses to change an exposure\'s variant (its contributions would move unseen)', async () => {
    const row = await db.selectFrom('experiment_exposures').select('request_id').where('experiment_id', '=', expId).executeTakeFirstOrThrow();
    await expect(db.updateTable('experiment_exposures').set({ variant: 'zz' }).where('request_id', '=', row.request_id).execute()).rejects.toThrow(/do not change/);
    await expectRollupsMatch();
  });

  it('an exposure and its request\'s outcome written concurrently are counted once, whichever commits first', async () => {
    const tenant = tenants[0] as { id: string; keyId: string };
    for (const [i, exposureFirst] of [[0, true], [1, false]] as const) {
      const id = `req_race_${i}`;
      await insertRequests([id], tenant, 'running');
      const a = new pg.Client({ connectionString: url });
      const b = new pg.Client({ connectionString: url });
      await a.connect();
      await b.connect();
      try {
        const [first, second] = exposureFirst ? [a, b] : [b, a];
        await first.query('begin');
        await second.query('begin');
        const expose = (c: pg.Client) => c.query(`insert into experiment_exposures (request_id, experiment_id, tenant_id, subject, variant) values ($1, $2, $3, 'race', 'b')`, [id, expId, tenant.id]);
        const finish = (c: pg.Client) => c.query(`update requests set status = 'succeeded', ttft_ms = 7 where id = $1`, [id]);
        await (exposureFirst ? expose(first) : finish(first));
        // The second writer waits for the first's row lock; it must be waiting before the first commits.
        const pending = exposureFirst ? finish(second) : expose(second);
        const deadline = Date.now() + 30_000;
        for (;;) {
          const waiting = await db.selectFrom(sql`pg_stat_activity`.as('s') as never).select(sql<number>`count(*)`.as('n')).where(sql`wait_event_type`, '=', 'Lock').where(sql`datname`, '=', sql`current_database()`).executeTakeFirstOrThrow() as { n: string | number };
          if (Number(waiting.n) > 0) break;
          if (Date.now() > deadline) throw new Error('the second writer never waited');
          await new Promise((r) => setTimeout(r, 20));
        }
        await first.query('commit');
        await pending;
        await second.query('commit');
      } finally {
        await a.end();
        await b.end();
      }
      await expectRollupsMatch();
      const sums = await experimentSums(db, expId, tenant.id);
      const want = await reference(tenant.id);
      expect(sums.variants.find((v) => v.variant === 'b')?.succeeded).toBe(want.variants.find((v) => v.variant === 'b')?.succeeded);
    }
  });
});
