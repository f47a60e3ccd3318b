/**
 * Experiment results at volume (issue 15): N exposures (default 1,000,000) of one two-variant
 * experiment, each with its request row and ledger row, a TTFT on one in five, and feedback on one
 * in five, bulk-inserted with generate_series into a real (embedded) PostgreSQL; the rollup
 * triggers (migration 2026-12-01-0641) run on every insert, as they do in production. Then, side
 * by side in alternating rounds on the same data:
 *  - `before`: the results' SQL as it was before the rollups (kept here for the comparison only):
 *    one pass joining the exposures to their requests and ledger rows, grouped per variant and
 *    latency bucket, and a second joining them to the feedback, with `work_mem` at 64 MB;
 *  - `after`: `experimentSums` (reads the rollups);
 * each followed by `experimentResults` in TypeScript; wall time of each part, and whether both
 * give the same sums. Also the writers' cost of the triggers: the same bulk insert of `--write-rows`
 * requests, exposures, ledger rows and final statuses with the triggers on and off
 * (`session_replication_role = replica`), alternating, each round's rows deleted after it.
 *
 * Run: `npx tsx bench/experiment-results.ts [--exposures 1000000] [--runs 3] [--write-rows 50000]`
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { startEmbeddedPostgres } from '../scripts/lib/embedded-postgres.js';
import { createDb, type Db } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { createExperiment, experimentSums, type FeedbackSums, type VariantSums } from '../db/repositories/experiments.js';
import { experimentResults, latencyValues } from '../domain/experiment-results.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench } from './setup.js';

const { values } = parseArgs({ options: { exposures: { type: 'string', default: '1000000' }, runs: { type: 'string', default: '3' }, 'write-rows': { type: 'string', default: '50000' } } });
const N = Number(values.exposures);
const RUNS = Number(values.runs);
const WRITE_ROWS = Number(values['write-rows']);
const ms = (t: number) => Math.round((performance.now() - t) * 10) / 10;
const load = () => os.loadavg().map((l) => Math.round(l * 100) / 100);

/** The results' SQL before migration 0641 (joins at read time), for the side-by-side comparison. */
async function joinedSums(db: Db, experimentId: string, tenantId: string): Promise<{ variants: VariantSums[]; feedback: FeedbackSums[] }> {
  return db.transaction().execute(async (trx) => {
    await sql`set local work_mem = '64MB'`.execute(trx);
    const rows = await sql<Record<string, number | string | null>>`
      select x.variant,
        case when u.latency_ms < 1000 then u.latency_ms else round(u.latency_ms::numeric, 3 - length(u.latency_ms::text))::int end as bucket,
        count(*)::float8 as exposures, (count(*) filter (where r.status = 'succeeded'))::float8 as succeeded,
        (count(*) filter (where r.status = 'failed'))::float8 as failed, (count(*) filter (where r.status = 'cancelled'))::float8 as cancelled,
        sum(coalesce(u.cost_micros, 0)::float8) as cost_sum, sum(coalesce(u.cost_micros, 0)::float8 ^ 2) as cost_sq,
        count(u.request_id)::float8 as served, sum(u.input_tokens::float8) as pt_sum, sum(u.input_tokens::float8 ^ 2) as pt_sq,
        sum(u.output_tokens::float8) as ct_sum, sum(u.output_tokens::float8 ^ 2) as ct_sq, count(u.latency_ms)::float8 as latency_n
      from experiment_exposures x
      left join requests r on r.id = x.request_id
      left join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')
      where x.experiment_id = ${experimentId} and x.tenant_id = ${tenantId}
      group by 1, 2`.execute(trx);
    const ttft = await sql<{ variant: string; bucket: number; n: number }>`
      select x.variant, case when r.ttft_ms < 1000 then r.ttft_ms else round(r.ttft_ms::numeric, 3 - length(r.ttft_ms::text))::int end as bucket, count(*)::float8 as n
      from experiment_exposures x join requests r on r.id = x.request_id and r.status = 'succeeded' and r.ttft_ms is not null
      where x.experiment_id = ${experimentId} and x.tenant_id = ${tenantId}
      group by 1, 2`.execute(trx);
    const feedback = await sql<{ variant: string; metric: string; kind: FeedbackSums['kind']; n: string; trues: string; s: number | null; sq: number | null }>`
      select x.variant, f.metric, f.kind, count(*) as n, count(*) filter (where f.value_bool) as trues, sum(f.value_num) as s, sum(f.value_num ^ 2) as sq
      from experiment_exposures x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id
      where x.experiment_id = ${experimentId} and x.tenant_id = ${tenantId}
      group by x.variant, f.metric, f.kind
      order by f.metric, f.kind, x.variant`.execute(trx);
    const by = new Map<string, VariantSums>();
    const num = (v: unknown) => (v === null || v === undefined ? 0 : Number(v));
    for (const r of rows.rows) {
      const name = String(r.variant);
      const v = by.get(name) ?? {
        variant: name, exposures: 0, succeeded: 0, failed: 0, cancelled: 0, costMicros: { n: 0, sum: 0, sumSquares: 0 },
        promptTokens: { n: 0, sum: 0, sumSquares: 0 }, completionTokens: { n: 0, sum: 0, sumSquares: 0 }, latencyN: 0, latencyHistogram: [], ttftN: 0, ttftHistogram: [],
      };
      by.set(name, v);
      v.exposures += num(r.exposures); v.succeeded += num(r.succeeded); v.failed += num(r.failed); v.cancelled += num(r.cancelled);
      v.costMicros = { n: v.exposures, sum: v.costMicros.sum + num(r.cost_sum), sumSquares: v.costMicros.sumSquares + num(r.cost_sq) };
      v.promptTokens = { n: v.promptTokens.n + num(r.served), sum: v.promptTokens.sum + num(r.pt_sum), sumSquares: v.promptTokens.sumSquares + num(r.pt_sq) };
      v.completionTokens = { n: v.completionTokens.n + num(r.served), sum: v.completionTokens.sum + num(r.ct_sum), sumSquares: v.completionTokens.sumSquares + num(r.ct_sq) };
      v.latencyN += num(r.latency_n);
      if (r.bucket !== null && num(r.latency_n) > 0) v.latencyHistogram.push([Number(r.bucket), num(r.latency_n)]);
    }
    for (const t of ttft.rows) {
      const v = by.get(t.variant);
      if (v) {
        v.ttftN += num(t.n);
        v.ttftHistogram.push([Number(t.bucket), num(t.n)]);
      }
    }
    for (const v of by.values()) {
      v.latencyHistogram.sort((a, b) => a[0] - b[0]);
      v.ttftHistogram.sort((a, b) => a[0] - b[0]);
    }
    return {
      variants: [...by.values()].sort((a, b) => (a.variant < b.variant ? -1 : 1)),
      feedback: feedback.rows.map((r) => ({ variant: r.variant, metric: r.metric, kind: r.kind, n: num(r.n), trues: num(r.trues), sum: num(r.s), sumSquares: num(r.sq) })),
    };
  });
}

/** Paths where two JSON-like values differ (numbers within 1e-9 relative are equal: float sums). */
function differencesOf(a: unknown, b: unknown, at = ''): string[] {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b)) ? [] : [`${at}: ${a} vs ${b}`];
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return a === b ? [] : [`${at}: ${String(a)} vs ${String(b)}`];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) => differencesOf((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`));
}

/** `count` requests (ids `<prefix><g>`) with their exposure, ledger row and final status, in bulk statements. */
async function writeRequests(db: Db, prefix: string, count: number, ids: { tenantId: string; keyId: string; experimentId: string }): Promise<void> {
  const { tenantId, keyId, experimentId } = ids;
  await sql`
    insert into requests (id, tenant_id, key_id, kind, model, body_hash, status, created_at)
    select ${prefix} || g, ${tenantId}, ${keyId}, 'sync', 'instant', 'h', 'running', now() from generate_series(1, ${count}) g`.execute(db);
  await sql`
    insert into experiment_exposures (request_id, experiment_id, tenant_id, subject, variant)
    select ${prefix} || g, ${experimentId}, ${tenantId}, 'user-' || g, case when g % 2 = 0 then 'a' else 'b' end from generate_series(1, ${count}) g`.execute(db);
  await sql`
    insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant, input_tokens, output_tokens, cost_micros, latency_ms)
    select ${prefix} || g, 'infer', ${tenantId}, ${keyId}, 'sync', 'instant', 'instant-bench', 'bench', case when g % 2 = 0 then 'a' else 'b' end,
      20 + g % 17, 5 + g % 11, 3 + g % 5, 40 + (g::bigint * 7919) % 200
    from generate_series(1, ${count}) g where g % 50 <> 0`.execute(db);
  await sql`
    update requests set status = case when substr(id, length(${prefix}) + 1)::int % 50 = 0 then 'failed' else 'succeeded' end, finished_at = now(),
      ttft_ms = case when substr(id, length(${prefix}) + 1)::int % 5 = 1 then 30 + (substr(id, length(${prefix}) + 1)::bigint * 104729) % 400 end
    where id like ${prefix + '%'}`.execute(db);
}

async function main() {
  const { dir, env } = await benchEnv('experiment-results');
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: Number(env.SLUICE_PG_PORT) });
  const { db } = createDb({ connectionString: pg.url, max: 4 });
  const results: Record<string, unknown> = { machine: machine(), exposures: N, load_average_start: load() };
  try {
    await migrateToLatest(db);
    await addInstantModel(db, { id: 'instant' });
    const { tenantId, keyId } = await addTenantKey(db);
    const variants = [{ name: 'a', weight: 1, overrides: {} }, { name: 'b', weight: 1, overrides: { max_tokens: 8 } }];
    const newExperiment = (name: string) => createExperiment(db, {
      name, model: 'instant', tenantId, status: 'running', startsAt: null, endsAt: null, trafficAllocation: 1,
      targetKeyIds: null, targetMetadata: null, controlVariant: 'a', variants,
    });

    // The writers' cost of the triggers, side by side: on, off, on, off.
    const scratch = await newExperiment('scratch');
    const writes: Array<{ triggers: 'on' | 'off'; rows: number; ms: number; us_per_request: number }> = [];
    for (let round = 0; round < 4; round++) {
      const on = round % 2 === 0;
      const prefix = `req_w${round}_`;
      const t = performance.now();
      if (on) await writeRequests(db, prefix, WRITE_ROWS, { tenantId, keyId, experimentId: scratch.id });
      else {
        await db.transaction().execute(async (trx) => {
          await sql`set local session_replication_role = replica`.execute(trx);
          await writeRequests(trx, prefix, WRITE_ROWS, { tenantId, keyId, experimentId: scratch.id });
        });
      }
      const took = ms(t);
      writes.push({ triggers: on ? 'on' : 'off', rows: WRITE_ROWS, ms: took, us_per_request: Math.round((took * 1000) / WRITE_ROWS) });
      await db.transaction().execute(async (trx) => {
        await sql`set local session_replication_role = replica`.execute(trx);
        await sql`delete from usage where request_id like ${prefix + '%'}`.execute(trx);
        await sql`delete from experiment_exposures where request_id like ${prefix + '%'}`.execute(trx);
        await sql`delete from requests where id like ${prefix + '%'}`.execute(trx);
      });
    }
    await sql`delete from experiment_rollups where experiment_id = ${scratch.id}`.execute(db);
    await sql`delete from experiment_histograms where experiment_id = ${scratch.id}`.execute(db);
    await sql`vacuum analyze`.execute(db);
    results.writes = writes;

    const exp = await newExperiment('bench');
    const t = performance.now();
    await writeRequests(db, 'req_b_', N, { tenantId, keyId, experimentId: exp.id });
    await sql`
      insert into feedback (id, tenant_id, request_id, key_id, metric, kind, value_bool)
      select 'fb_' || g, ${tenantId}, 'req_b_' || g, ${keyId}, 'thumbs', 'boolean', (g * 37) % 10 < 7
      from generate_series(1, ${N}) g where g % 5 = 0`.execute(db);
    await sql`vacuum analyze`.execute(db);
    results.insert_s = Math.round(ms(t) / 100) / 10;

    const compute = (sums: { variants: VariantSums[]; feedback: FeedbackSums[] }) => {
      const inputs = exp.variants.map((v) => {
        const s = sums.variants.find((x) => x.variant === v.name);
        if (!s) throw new Error(`no sums for ${v.name}`);
        return { name: v.name, weight: v.weight, exposures: s.exposures, succeeded: s.succeeded, failed: s.failed, cancelled: s.cancelled, costMicros: s.costMicros, promptTokens: s.promptTokens, completionTokens: s.completionTokens, latencyN: s.latencyN, ttftN: s.ttftN };
      });
      const latencies = new Map(sums.variants.map((s) => [s.variant, latencyValues(s.latencyHistogram)]));
      const ttfts = new Map(sums.variants.map((s) => [s.variant, latencyValues(s.ttftHistogram)]));
      return experimentResults({ experiment: { id: exp.id, status: exp.status, control: 'a', variants: exp.variants }, sums: inputs, feedback: sums.feedback, latencies, ttfts });
    };
    const runs: Array<{ method: 'before' | 'after'; sql_ms: number; stats_ms: number; total_ms: number; load_1m: number }> = [];
    let sameSums: boolean | null = null;
    let differences: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Alternating, the order swapped every round.
      for (const method of i % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const)) {
        const t0 = performance.now();
        const sums = method === 'after' ? await experimentSums(db, exp.id, tenantId) : await joinedSums(db, exp.id, tenantId);
        const sqlMs = ms(t0);
        const t2 = performance.now();
        compute(sums);
        runs.push({ method, sql_ms: sqlMs, stats_ms: ms(t2), total_ms: ms(t0), load_1m: load()[0] as number });
      }
      if (i === 0) {
        const a = await experimentSums(db, exp.id, tenantId);
        const b = await joinedSums(db, exp.id, tenantId);
        differences = differencesOf({ variants: a.variants, feedback: a.feedback }, { variants: b.variants, feedback: b.feedback });
        sameSums = differences.length === 0;
      }
    }
    results.runs = runs;
    results.same_sums = sameSums;
    if (differences.length > 0) results.differences = differences.slice(0, 10);
    const last = compute(await experimentSums(db, exp.id, tenantId));
    results.check = {
      exposures: last.variants.map((v) => v.exposures),
      ttft_p50_ms: last.variants.map((v) => v.metrics['ttft_p50_ms']?.estimate),
      ttft_n: last.variants.map((v) => v.metrics['ttft_p50_ms']?.n),
      trustworthy: last.trustworthy,
    };
    results.load_average_end = load();
    const out = JSON.stringify(results, null, 2);
    process.stdout.write(`${out}\n`);
    await fs.writeFile(path.join(dir, 'result.json'), out);
  } finally {
    await db.destroy();
    await pg.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

runBench(main);
