/**
 * The experiment rollups (migration 2026-12-01-0641) on a real PostgreSQL: after any mix of
 * writes to exposures, requests, the ledger and feedback — in the pipeline's order or not, one
 * row or many per statement, inserts, updates (a replaced thumbs, a request finishing, a TTFT
 * written later) and deletes — `experimentSums` (which reads only the rollups) equals the same
 * sums computed from the base tables by a join, for the whole experiment and for one tenant's
 * view. An exposure written concurrently with its request's outcome is counted once; a request's
 * serving is its billable infer/embed/infer:<i> rows summed (migration 0801), also on the real
 * stack for a completion with several prompts, one of which fell back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pg from 'pg';
import OpenAI from 'openai';
import { addModel, createDatabase, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { createExperiment, experimentSums } from '../../db/repositories/experiments.js';
import type { RequestStatus } from '../../db/tables/requests.js';
import * as servingPerRequest from '../../db/migrations/2026-12-02-0801-experiment-serving-per-request.js';

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

/**
 * A request's serving as the rollups define it (README "Experiments"): its billable rows of step
 * `infer`, `embed` or `infer:<i>` (a legacy completion's prompt i), summed; a failed or cancelled
 * attempt's row (`…:failed:…`, `…:cancelled:…`) and any other step never count.
 */
const SERVING = sql`(
  select request_id, sum(cost_micros) as cost, sum(input_tokens) as pt, sum(output_tokens) as ct, sum(latency_ms) as latency
  from usage where billable and (step = 'infer' or step = 'embed' or step ~ '^infer:[0-9]+$') group by request_id)`;

/** The sums from the base tables, by joining them (what the results read before the rollups). */
async function reference(tenantId: string | null) {
  const filter = tenantId === null ? sql`` : sql`and x.tenant_id = ${tenantId}`;
  const totals = await sql<Record<string, string>>`
    select x.variant, count(*) as exposures,
      count(*) filter (where r.status = 'succeeded') as succeeded, count(*) filter (where r.status = 'failed') as failed,
      count(*) filter (where r.status = 'cancelled') as cancelled, count(u.request_id) as served,
      coalesce(sum(u.cost), 0)::float8 as cost, coalesce(sum(u.cost::numeric ^ 2), 0)::float8 as cost_sq,
      coalesce(sum(u.pt), 0)::float8 as pt, coalesce(sum(u.pt::numeric ^ 2), 0)::float8 as pt_sq,
      coalesce(sum(u.ct), 0)::float8 as ct, coalesce(sum(u.ct::numeric ^ 2), 0)::float8 as ct_sq
    from experiment_exposures x
    left join requests r on r.id = x.request_id
    left join ${SERVING} u on u.request_id = x.request_id
    where x.experiment_id = ${expId} ${filter}
    group by 1 order by 1`.execute(db);
  const histogram = await sql<{ variant: string; metric: string; bucket: number; n: string }>`
    select variant, metric, bucket, count(*) as n from (
      select x.variant, 'latency' as metric,
        case when u.latency < 1000 then u.latency else round(u.latency::numeric, 3 - length(u.latency::text))::int end as bucket
      from experiment_exposures x join ${SERVING} u on u.request_id = x.request_id
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

/** Resolves once a session of this database waits for a lock (a second writer queued behind a first); throws after 30 s. */
async function waitForLockWaiter(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const waiting = await db.selectFrom(sql`pg_stat_activity`.as('s') as never).select(sql<number>`count(*)`.as('n')).where(sql`wait_event_type`, '=', 'Lock').where(sql`datname`, '=', sql`current_database()`).executeTakeFirstOrThrow() as { n: string | number };
    if (Number(waiting.n) > 0) return;
    if (Date.now() > deadline) throw new Error('the second writer never waited');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Two sessions, each in a transaction; `run` gets them and they end (committed or not) after it. */
async function inTwoSessions(run: (a: pg.Client, b: pg.Client) => Promise<void>): Promise<void> {
  const a = new pg.Client({ connectionString: url });
  const b = new pg.Client({ connectionString: url });
  await a.connect();
  await b.connect();
  try {
    await a.query('begin');
    await b.query('begin');
    await run(a, b);
  } finally {
    await a.end();
    await b.end();
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
      // Later prompts of several-prompt completions, and failed or cancelled attempts (never
      // counted, even if marked billable): in the same statement for some requests, one
      // statement each for others (the request's sums move from what they were).
      const later = usage.filter(() => random() < 0.4).flatMap((u) => ['infer:1', 'infer:2', 'infer:1:failed:d', 'infer:failed:d', 'infer:2:cancelled:d', 'infer:x']
        .filter(() => random() < 0.5).map((step) => ({ ...u, step, input_tokens: Math.floor(random() * 50), cost_micros: Math.floor(random() * 1000), billable: random() < 0.85 })));
      if (round % 2 === 0) {
        if (later.length > 0) await db.insertInto('usage').values(later as never).execute();
      } else {
        for (const row of later) await db.insertInto('usage').values(row as never).execute();
      }
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
    // A later prompt's row removed, another's cost changed, a failed attempt's row made billable (still not counted).
    await db.deleteFrom('usage').where('step', '=', 'infer:1').where('request_id', 'like', 'req_r2_%').execute();
    await db.updateTable('usage').set({ cost_micros: sql`cost_micros + 7`, latency_ms: sql`latency_ms + 1` }).where('step', '=', 'infer:2').execute();
    await db.updateTable('usage').set({ billable: true }).where('step', 'like', '%:failed:%').execute();
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
      await inTwoSessions(async (a, b) => {
        const [first, second] = exposureFirst ? [a, b] : [b, a];
        const expose = (c: pg.Client) => c.query(`insert into experiment_exposures (request_id, experiment_id, tenant_id, subject, variant) values ($1, $2, $3, 'race', 'b')`, [id, expId, tenant.id]);
        const finish = (c: pg.Client) => c.query(`update requests set status = 'succeeded', ttft_ms = 7 where id = $1`, [id]);
        await (exposureFirst ? expose(first) : finish(first));
        // The second writer waits for the first's row lock; it must be waiting before the first commits.
        const pending = exposureFirst ? finish(second) : expose(second);
        await waitForLockWaiter();
        await first.query('commit');
        await pending;
        await second.query('commit');
      });
      await expectRollupsMatch();
      const sums = await experimentSums(db, expId, tenant.id);
      const want = await reference(tenant.id);
      expect(sums.variants.find((v) => v.variant === 'b')?.succeeded).toBe(want.variants.find((v) => v.variant === 'b')?.succeeded);
    }
  });

  it('two serving rows of one exposed request written concurrently are summed as one request (the second waits for the first)', async () => {
    const tenant = tenants[1] as { id: string; keyId: string };
    const id = 'req_serving_race';
    await insertRequests([id], tenant, 'running');
    await db.insertInto('experiment_exposures').values({ request_id: id, experiment_id: expId, tenant_id: tenant.id, subject: 'race', variant: 'c' }).execute();
    const row = (step: string, cost: number) => [id, step, tenant.id, tenant.keyId, cost];
    const insert = (c: pg.Client, values: unknown[]) => c.query(`insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool,
      input_tokens, output_tokens, cost_micros, latency_ms) values ($1, $2, $3, $4, 'sync', 'm', 'd', 'p', 10, 5, $5, 100)`, values);
    await inTwoSessions(async (a, b) => {
      await insert(a, row('infer', 300));
      const pending = insert(b, row('infer:1', 400));
      await waitForLockWaiter();
      await a.query('commit');
      await pending;
      await b.query('commit');
    });
    await expectRollupsMatch();
  });

  it('migration 0801 corrects the rollups of requests written before it; its down goes back to 0641\'s row-by-row sums', async () => {
    // The rollups as 0641 kept them (rebuilt by 0641's own code), then more several-prompt requests under its triggers.
    await db.transaction().execute((trx) => servingPerRequest.down(trx));
    expect((await experimentSums(db, expId, null)).variants.filter((v) => v.exposures > 0)).not.toEqual((await reference(null)).variants);
    const tenant = tenants[0] as { id: string; keyId: string };
    const ids = Array.from({ length: 12 }, (_, i) => `req_before_${i}`);
    await insertRequests(ids, tenant, 'succeeded');
    await db.insertInto('experiment_exposures').values(ids.map((id, i) => ({ request_id: id, experiment_id: expId, tenant_id: tenant.id, subject: id, variant: ['a', 'b', 'c'][i % 3] as string }))).execute();
    const steps = ['infer', 'infer:1', 'infer:2', 'infer:1:failed:d'];
    await db.insertInto('usage').values(ids.flatMap((id, i) => steps.slice(0, 1 + (i % 4)).map((step, j) => ({
      request_id: id, step, tenant_id: tenant.id, key_id: tenant.keyId, kind: 'sync' as const, model: 'm', deployment_id: 'd', pool: 'p', variant: null,
      input_tokens: 3 + i + j, output_tokens: 2 * j + 1, cost_micros: 10 * i + j, latency_ms: 900 + 50 * j, billable: !step.includes(':failed:'),
    })))).execute();
    await db.transaction().execute((trx) => servingPerRequest.up(trx));
    await expectRollupsMatch();
  });
});

describe('a completion with several prompts under an experiment, on the real stack', () => {
  let stack: TestStack;
  let upstream: FakeUpstream;
  /** Every prompt token costs 1 micro-USD, every completion token 2. */
  const price = { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 };
  const deployment = (id: string, priority: number) => ({ id, provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: id, priority, price });

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    stack = await startTestStack();
    await addModel(stack, { id: 'exp-prompts', context_length: 1024, max_output_tokens: 64, deployments: [deployment('exp-prompts-a', 0), deployment('exp-prompts-b', 1)] });
  });
  afterAll(async () => {
    await stack?.stop();
    await upstream?.close();
  });

  it('counts one exposure whose tokens and cost are its prompts\' ledger rows summed; a failed attempt\'s row is not counted', async () => {
    const { tenantId, key } = await stack.createTenantKey();
    const created = await stack.admin('POST', '/v1/admin/experiments', {
      name: 'prompts', model: 'exp-prompts', tenant_id: tenantId, status: 'running', variants: [{ name: 'a' }, { name: 'b' }],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // Prompt 0 served by A; prompt 1's three attempts on A spend tokens but answer no choice (it
    // falls back to B); prompt 2 served by A again.
    const spent = { kind: 'succeed', choices: 'omit', usage: { promptTokens: 7, completionTokens: 3 } } as const;
    upstream.setBehaviour([{ kind: 'succeed' }, spent, spent, spent, { kind: 'succeed' }]);
    const client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const completion = await client.completions.create({ model: 'exp-prompts', prompt: ['one two', 'three four five', 'six'], max_tokens: 4, user: 'subject-1' });
    expect(completion.choices).toHaveLength(3);
    const requestId = completion.id.replace(/^cmpl-/, '');
    const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).orderBy('id').execute();
    expect(rows.map((r) => [r.step, r.deployment_id, r.billable])).toEqual([
      ['infer', 'exp-prompts-a', true], ['infer:1:failed:exp-prompts-a', 'exp-prompts-a', false], ['infer:1', 'exp-prompts-b', true], ['infer:2', 'exp-prompts-a', true],
    ]);
    const billed = rows.filter((r) => r.billable);
    const total = (f: (r: (typeof rows)[number]) => number) => billed.reduce((n, r) => n + f(r), 0);
    const [cost, pt, ct] = [total((r) => Number(r.cost_micros)), total((r) => r.input_tokens), total((r) => r.output_tokens)];

    const results = await stack.admin('GET', `/v1/admin/experiments/${created.body.id}/results`);
    expect(results.status).toBe(200);
    const variants = results.body.variants as Array<{ exposures: number; completions: number; metrics: Record<string, { n: number; estimate: number | null }> }>;
    expect(variants.reduce((n, v) => n + v.exposures, 0)).toBe(1);
    const served = variants.find((v) => v.exposures === 1);
    expect(served?.completions).toBe(1);
    expect(served?.metrics.cost_micros_per_request).toMatchObject({ n: 1, estimate: cost });
    expect(served?.metrics.prompt_tokens).toMatchObject({ n: 1, estimate: pt });
    expect(served?.metrics.completion_tokens).toMatchObject({ n: 1, estimate: ct });
    // One request: its sums' squares, not the rows' squares summed.
    const sums = (await experimentSums(stack.db, created.body.id as string, tenantId)).variants.find((v) => v.exposures === 1);
    expect(sums?.costMicros).toEqual({ n: 1, sum: cost, sumSquares: cost * cost });
    expect(sums?.promptTokens).toEqual({ n: 1, sum: pt, sumSquares: pt * pt });
    expect(sums?.latencyN).toBe(1);
  });
});
