/**
 * Experiment results at volume (issue 15): N exposures (default 1,000,000) of one two-variant
 * experiment, each with its request row and ledger row, and feedback on one in five, bulk-inserted
 * with generate_series into a real (embedded) PostgreSQL; then the results as the route computes
 * them (`experimentSums` in SQL, one pass; `experimentResults` in TypeScript): wall time of
 * each part over a few runs, and this process's heap growth (nothing per exposure reaches Node).
 *
 * Run: `npx tsx bench/experiment-results.ts [--exposures 1000000] [--runs 3]`
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { startEmbeddedPostgres } from '../scripts/lib/embedded-postgres.js';
import { createDb } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { createExperiment, experimentSums } from '../db/repositories/experiments.js';
import { experimentResults, latencyValues } from '../domain/experiment-results.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench } from './setup.js';

const { values } = parseArgs({ options: { exposures: { type: 'string', default: '1000000' }, runs: { type: 'string', default: '3' } } });
const N = Number(values.exposures);
const RUNS = Number(values.runs);
const ms = (t: number) => Math.round((performance.now() - t) * 10) / 10;

async function main() {
  const { dir, env } = await benchEnv('experiment-results');
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: Number(env.SLUICE_PG_PORT) });
  const { db } = createDb({ connectionString: pg.url, max: 4 });
  const results: Record<string, unknown> = { machine: machine(), exposures: N, note: 'measured on a loaded shared machine' };
  try {
    await migrateToLatest(db);
    await addInstantModel(db, { id: 'instant' });
    const { tenantId, keyId } = await addTenantKey(db);
    const exp = await createExperiment(db, {
      name: 'bench', model: 'instant', tenantId, status: 'running', startsAt: null, endsAt: null, trafficAllocation: 1,
      targetKeyIds: null, targetMetadata: null, controlVariant: 'a', variants: [{ name: 'a', weight: 1, overrides: {} }, { name: 'b', weight: 1, overrides: { max_tokens: 8 } }],
    });
    const t = performance.now();
    await sql`
      insert into requests (id, tenant_id, key_id, kind, model, body_hash, status, created_at, finished_at)
      select 'req_b_' || g, ${tenantId}, ${keyId}, 'sync', 'instant', 'h', case when g % 50 = 0 then 'failed' else 'succeeded' end, now(), now()
      from generate_series(1, ${N}) g`.execute(db);
    await sql`
      insert into experiment_exposures (request_id, experiment_id, tenant_id, subject, variant)
      select 'req_b_' || g, ${exp.id}, ${tenantId}, 'user-' || g, case when g % 2 = 0 then 'a' else 'b' end
      from generate_series(1, ${N}) g`.execute(db);
    await sql`
      insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant, input_tokens, output_tokens, cost_micros, latency_ms)
      select 'req_b_' || g, 'infer', ${tenantId}, ${keyId}, 'sync', 'instant', 'instant-bench', 'bench', case when g % 2 = 0 then 'a' else 'b' end,
        20 + g % 17, 5 + g % 11, 3 + g % 5, 40 + (g::bigint * 7919) % 200
      from generate_series(1, ${N}) g where g % 50 <> 0`.execute(db);
    await sql`
      insert into feedback (id, tenant_id, request_id, key_id, metric, kind, value_bool)
      select 'fb_' || g, ${tenantId}, 'req_b_' || g, ${keyId}, 'thumbs', 'boolean', (g * 31) % 10 < 7
      from generate_series(1, ${N}) g where g % 5 = 0`.execute(db);
    await sql`analyze`.execute(db);
    results.insert_s = Math.round(ms(t) / 100) / 10;

    const runs: Array<{ sql_ms: number; stats_ms: number; total_ms: number; histogram_rows: number }> = [];
    const heapBefore = process.memoryUsage().heapUsed;
    let last: ReturnType<typeof experimentResults> | null = null;
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const sums = await experimentSums(db, exp.id, tenantId);
      const sumsMs = ms(t0);
      const inputs = exp.variants.map((v) => {
        const s = sums.variants.find((x) => x.variant === v.name);
        if (!s) throw new Error(`no sums for ${v.name}`);
        return { name: v.name, weight: v.weight, exposures: s.exposures, succeeded: s.succeeded, failed: s.failed, cancelled: s.cancelled, costMicros: s.costMicros, promptTokens: s.promptTokens, completionTokens: s.completionTokens, latencyN: s.latencyN };
      });
      const t2 = performance.now();
      const latencies = new Map(sums.variants.map((s) => [s.variant, latencyValues(s.latencyHistogram)]));
      last = experimentResults({ experiment: { id: exp.id, status: exp.status, control: 'a', variants: exp.variants }, sums: inputs, feedback: sums.feedback, latencies });
      runs.push({ sql_ms: sumsMs, stats_ms: ms(t2), total_ms: ms(t0), histogram_rows: sums.variants.reduce((a, v) => a + v.latencyHistogram.length, 0) });
    }
    results.runs = runs;
    results.heap_growth_mib = Math.round((process.memoryUsage().heapUsed - heapBefore) / 2 ** 20);
    results.check = { exposures: last?.variants.map((v) => v.exposures), trustworthy: last?.trustworthy };
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
