/**
 * SLO queries at volume, on the real parts (embedded PostgreSQL, Temporal dev server, API):
 * N finished request rows (default 1,000,000) over the 30 days before now, for T tenants
 * (default 100) on 4 plans, bulk-inserted with generate_series (1 in 100 failed against us, 1 in
 * 50 the client's own 400, 1 in 200 cancelled, 1 in 5 a stream with a TTFT), then timed through
 * the API: `GET /v1/admin/slos` (4 objectives over their 30-day window: availability by model,
 * p95 latency by model, availability by plan, p99 TTFT by pool) and
 * `GET /v1/admin/slos/{id}/report?period=` (per tenant, for the month holding most rows), and
 * the control worker's burn-rate measurement (`measureSloWindows`, what workers/ops-metrics.ts runs
 * per objective every refresh: 7 windows up to 3 days) of the same 4 objectives, one after another
 * as the loop runs them. 1 in 1,000 requests also has a failed workflow start
 * (`request_start_failures`, which availability reads next to the request rows).
 * Each timed `--runs` times after one warm-up; min and median reported. The stack's own ops loop
 * is held off (`SLUICE_OPS_METRICS_INTERVAL_MS` at its maximum) so that it does not run beside the
 * timings.
 *
 * Run: `npx tsx bench/slo-report.ts [--rows 1000000] [--tenants 100] [--runs 5]`
 */
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { ensureAdminKey } from '../scripts/lib/bootstrap.js';
import { periodOf } from '../domain/billing-calendar.js';
import { SLO_BURN_WINDOWS } from '../domain/slo.js';
import { getSlo, measureSloWindows, sloDefinitionOf } from '../db/repositories/slos.js';
import { machine, addTenantKey, runBench, withBenchInfra, withStack, printResults } from './setup.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, tenants: { type: 'string', default: '100' }, runs: { type: 'string', default: '5' } } });
const ROWS = Number(values.rows);
const TENANTS = Number(values.tenants);
const RUNS = Number(values.runs);

async function timed(runs: number, fn: () => Promise<void>): Promise<{ min_ms: number; median_ms: number }> {
  await fn();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  ms.sort((x, y) => x - y);
  const r = (n: number) => Math.round(n * 10) / 10;
  return { min_ms: r(ms[0] ?? 0), median_ms: r(ms[Math.floor(ms.length / 2)] ?? 0) };
}

async function main() {
  const results: Record<string, unknown> = { machine: machine(), rows: ROWS, tenants: TENANTS, runs: RUNS };
  await withBenchInfra('slo-report', { SLUICE_OPS_METRICS_INTERVAL_MS: '3600000' }, async (bench) => {
    await withStack(bench, { pools: [] }, async (stack) => {
      const admin = (await ensureAdminKey(stack.db, null)).secret as string;
      const tenantIds: string[] = [];
      const keyIds: string[] = [];
      for (let i = 0; i < TENANTS; i++) {
        const t = await addTenantKey(stack.db, null, `bench-${i}`);
        tenantIds.push(t.tenantId);
        keyIds.push(t.keyId);
      }
      await sql`update tenants set plan = 'plan-' || (abs(hashtext(id)) % 4) where id = any(${tenantIds}::text[])`.execute(stack.db);

      const now = new Date();
      const t = performance.now();
      await sql`
        insert into requests (id, tenant_id, key_id, kind, model, body_hash, status, created_at, finished_at,
                              latency_ms, ttft_ms, failure_type, pool)
        select 'req_bench_' || g, (${sql.val(tenantIds)}::text[])[1 + g % ${TENANTS}], (${sql.val(keyIds)}::text[])[1 + g % ${TENANTS}], 'sync',
               'model-' || (g % 3), 'h',
               case when g % 100 = 0 then 'failed' when g % 50 = 1 then 'failed' when g % 200 = 3 then 'cancelled' else 'succeeded' end,
               c.at, c.at + (50 + (g::bigint * 7919) % 2000) * interval '1 millisecond',
               50 + (g::bigint * 7919) % 2000,
               case when g % 5 = 2 then 10 + (g::bigint * 7919) % 500 end,
               case when g % 100 = 0 then 'NoDeploymentAvailable' when g % 50 = 1 then 'BadRequest' when g % 200 = 3 then 'Cancelled' end,
               'pool-' || (g % 2)
        from generate_series(0, ${ROWS - 1}) g,
             lateral (select ${now}::timestamptz - interval '30 days' + (g::double precision / ${ROWS}) * interval '30 days' - interval '1 minute' as at) c`.execute(stack.db);
      await sql`
        insert into request_start_failures (request_id, tenant_id, kind, model, code, status, created_at)
        select 'req_bench_start_' || g, (${sql.val(tenantIds)}::text[])[1 + g % ${TENANTS}], 'sync', 'model-' || (g % 3),
               'temporal_unavailable', 503, ${now}::timestamptz - interval '30 days' + (g::double precision / ${Math.max(1, Math.floor(ROWS / 1000))}) * interval '30 days' - interval '1 minute'
        from generate_series(0, ${Math.max(1, Math.floor(ROWS / 1000)) - 1}) g`.execute(stack.db);
      await sql`vacuum analyze requests`.execute(stack.db);
      await sql`vacuum analyze request_start_failures`.execute(stack.db);
      results.insert_s = Math.round((performance.now() - t) / 10) / 100;

      const call = async (method: string, path: string, body?: unknown) => {
        const res = await fetch(`${stack.url}${path}`, {
          method, headers: { Authorization: `Bearer ${admin}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        const json = (await res.json()) as any;
        if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
        return json;
      };
      const defs = [
        { name: 'availability model-0', kind: 'availability', scope: { type: 'model', value: 'model-0' }, target: 0.99 },
        { name: 'p95 model-1', kind: 'latency_p95', scope: { type: 'model', value: 'model-1' }, target: 0.95, threshold_ms: 1900 },
        { name: 'availability plan-1', kind: 'availability', scope: { type: 'plan', value: 'plan-1' }, target: 0.995 },
        { name: 'ttft p99 pool-0', kind: 'ttft_p99', scope: { type: 'pool', value: 'pool-0' }, target: 0.99, threshold_ms: 400 },
      ];
      const ids: string[] = [];
      for (const d of defs) ids.push(((await call('POST', '/v1/admin/slos', d)) as { id: string }).id);

      let list: any = null;
      results.list_4_slos = await timed(RUNS, async () => {
        list = await call('GET', '/v1/admin/slos');
      });
      results.list_status = (list.data as any[]).map((s) => ({ name: s.name, eligible: s.status.eligible, attainment: s.status.attainment, remaining_budget: s.status.error_budget.remaining, percentile_ms: s.status.percentile_ms }));
      const period = periodOf(new Date(now.getTime() - 15 * 86_400_000));
      let report: any = null;
      results.report_period = period;
      results.report_by_model = await timed(RUNS, async () => {
        report = await call('GET', `/v1/admin/slos/${ids[0]}/report?period=${period}`);
      });
      results.report_rows = (report.data as unknown[]).length;
      results.report_by_plan = await timed(RUNS, async () => {
        await call('GET', `/v1/admin/slos/${ids[2]}/report?period=${period}`);
      });
      const objectives = await Promise.all(ids.map(async (id) => sloDefinitionOf((await getSlo(stack.db, id))!)));
      let windows: unknown = null;
      results.ops_burn_windows_4_slos = await timed(RUNS, async () => {
        const measured = [];
        for (const d of objectives) measured.push(await measureSloWindows(stack.db, d, new Date(), SLO_BURN_WINDOWS));
        windows = measured;
      });
      for (const [i, d] of objectives.entries()) {
        results[`ops_burn_windows_${d.kind}_${d.scopeType}`] = await timed(RUNS, async () => {
          await measureSloWindows(stack.db, d, new Date(), SLO_BURN_WINDOWS);
        });
        if (i === 0) results.ops_burn_windows_example = (windows as unknown[])[0];
      }
      process.stderr.write(`${JSON.stringify(results)}\n`);
    });
  });
  printResults(results);
}

runBench(main);
