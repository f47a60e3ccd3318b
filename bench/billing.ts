/**
 * Billing at volume, on the real parts (embedded PostgreSQL, Temporal dev server, control worker, API):
 *  - a month of N usage rows (default 1,000,000) for T tenants (default 100), bulk-inserted with
 *    generate_series, billed by one `billingRun` workflow (a `billing` child per tenant: close,
 *    claim, aggregate, write, reconcile): wall time, and peak RSS of this process (workers + API);
 *  - a CSV export of every row of that month through `GET /v1/admin/usage/export`, read by a
 *    client that counts lines: wall time, rows/s, and the API process's heap and RSS growth.
 * PostgreSQL runs in its own processes; its memory is not in these numbers.
 *
 * Run: `npx tsx bench/billing.ts [--rows 1000000] [--tenants 100]`
 */
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { ensureAdminKey } from '../scripts/lib/bootstrap.js';
import { CONTROL_TASK_QUEUE, billingRunWorkflowId } from '../contracts/ids.js';
import type { billingRun } from '../workflows/billing.js';
import { machine, addInstantModel, addTenant, runBench, withBenchInfra, withStack, printResults } from './setup.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, tenants: { type: 'string', default: '100' } } });
const ROWS = Number(values.rows);
const TENANTS = Number(values.tenants);
const PERIOD = '2026-10';

const mib = (n: number) => Math.round(n / 2 ** 20);

/** Samples RSS and heap every 50 ms; `stop()` returns the peaks since `start`. */
function memorySampler() {
  let rss = 0;
  let heap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heap = Math.max(heap, m.heapUsed);
  };
  sample();
  const timer = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peak_rss_mib: mib(rss), peak_heap_mib: mib(heap) };
    },
  };
}

async function main() {
  const results: Record<string, unknown> = {
    machine: machine(),
    rows: ROWS, tenants: TENANTS, period: PERIOD,
  };
  await withBenchInfra('billing', {}, async (bench) => {
    await withStack(bench, { pools: [] }, async (stack) => {
      const admin = (await ensureAdminKey(stack.db, null)).secret as string;
      await addInstantModel(stack.db, { id: 'bench-model', deploymentId: 'bench-dep', effectiveFrom: new Date('2026-01-01T00:00:00Z') });
      const tenantIds: string[] = [];
      for (let i = 0; i < TENANTS; i++) {
        tenantIds.push(await addTenant(stack.db, `bench-${i}`));
      }

      // A month of usage: rows spread evenly over October (UTC), round-robin over tenants, 4 keys,
      // 2 variants, 1 in 10 a batch row.
      let t = performance.now();
      await sql`
        insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant, price_id,
                           input_tokens, output_tokens, cost_micros, latency_ms, created_at)
        select 'req_bench_' || g, 'infer', (${sql.val(tenantIds)}::text[])[1 + g % ${TENANTS}], 'key_' || (g % 4),
               case when g % 10 = 0 then 'batch' else 'sync' end, 'bench-model', 'bench-dep', 'bench',
               case when g % 2 = 0 then 'A' else 'B' end, 1, 100 + g % 50, 20 + g % 30, 30 + g % 7, 5,
               '2026-10-01T00:00:00Z'::timestamptz + (g::double precision / ${ROWS}) * interval '31 days'
        from generate_series(0, ${ROWS - 1}) g`.execute(stack.db);
      await sql`analyze usage`.execute(stack.db);
      results.insert_s = Math.round((performance.now() - t) / 10) / 100;
      const ledger = await sql<{ micros: number }>`select sum(cost_micros)::bigint as micros from usage`.execute(stack.db);

      // Bill the month: one run, a child per tenant.
      let mem = memorySampler();
      t = performance.now();
      const run = await stack.client.workflow.execute<typeof billingRun>('billingRun', {
        taskQueue: CONTROL_TASK_QUEUE, workflowId: billingRunWorkflowId(PERIOD), args: [{ period: PERIOD, tenantIds: null }],
      });
      const billSeconds = (performance.now() - t) / 1000;
      const invoiced = run.invoices.reduce((s, i) => s + i.totalMicros, 0);
      results.billing = {
        seconds: Math.round(billSeconds * 100) / 100, rows_per_s: Math.round(ROWS / billSeconds), invoices: run.invoices.length, failures: run.failures.length,
        invoiced_micros: invoiced, ledger_micros: ledger.rows[0]?.micros, reconciled: invoiced === ledger.rows[0]?.micros, ...mem.stop(),
      };
      process.stderr.write(`billing: ${JSON.stringify(results.billing)}\n`);

      // Re-run: finds every invoice, writes nothing, reconciles all again.
      t = performance.now();
      const again = await stack.client.workflow.execute<typeof billingRun>('billingRun', {
        taskQueue: CONTROL_TASK_QUEUE, workflowId: `${billingRunWorkflowId(PERIOD)}-again`, args: [{ period: PERIOD, tenantIds: null }],
      });
      results.rerun = { seconds: Math.round((performance.now() - t) / 10) / 100, created: again.invoices.filter((i) => i.created).length, failures: again.failures.length };
      process.stderr.write(`rerun: ${JSON.stringify(results.rerun)}\n`);

      // Export every row of the month as CSV, streamed; the client only counts lines.
      const baseHeap = process.memoryUsage().heapUsed;
      const baseRss = process.memoryUsage().rss;
      mem = memorySampler();
      t = performance.now();
      const res = await fetch(`${stack.url}/v1/admin/usage/export?period=${PERIOD}&format=csv`, { headers: { Authorization: `Bearer ${admin}` } });
      if (!res.ok || !res.body) throw new Error(`export failed: ${res.status}`);
      let lines = 0;
      let bytes = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.length;
        for (const b of chunk) if (b === 10) lines += 1;
      }
      const exportSeconds = (performance.now() - t) / 1000;
      const peaks = mem.stop();
      results.csv_export = {
        seconds: Math.round(exportSeconds * 100) / 100, rows: lines - 1, mib: mib(bytes), rows_per_s: Math.round((lines - 1) / exportSeconds),
        ...peaks, heap_growth_mib: mib(Math.max(0, process.memoryUsage().heapUsed - baseHeap)), peak_rss_growth_mib: peaks.peak_rss_mib - mib(baseRss),
      };
      process.stderr.write(`export: ${JSON.stringify(results.csv_export)}\n`);
    });
  });
  printResults(results);
}

runBench(main);
