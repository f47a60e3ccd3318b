/**
 * Where the Temporal dev server's CPU per sync request beyond the request-shaped floor goes
 * (issue 18 target 1): the request-shaped floor (`floor-workflows.ts`: LA, activity on another
 * queue, LA) plus one of Sluice's costs at a time — its payload sizes, its 4 search attributes at
 * the start, its upsert at the end, all three, its activity options (`infer`'s timeouts and
 * retries), the start's priority and conflict policy, the workers' CPU per step — and all of them, each run at one
 * concurrency for a few seconds, in rotated order in each round (the machine drifts). Reports
 * the dev server's CPU per request (`/proc`), this process's (the workers', workflow threads
 * included) and req/s per variant and round, each against the plain floor of the same round, and
 * the dev server's persistence calls and task dispatches per request (its Prometheus counters).
 * Not a test; nothing is asserted.
 *
 * Run: `npx tsx bench/floor-decompose.ts [--rounds 3] [--seconds 8] [--concurrency 32] [--sa-refresh-on-read default|true|false]`
 * (`npm run bench -- floor-decompose`).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Client, type WorkflowStartOptions } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { SearchAttributes } from '../contracts/ids.js';
import { measureLoad, percentile, type Load } from './stats.js';
import { FLOOR_QUEUE, startFloorWorkers } from './temporal-floor.js';
import { SLUICE_PAYLOAD_BYTES } from './floor-workflows.js';
import { machine, printResults, runBench, withBenchInfra } from './setup.js';
import { freePort } from '../scripts/lib/free-port.js';
import { countersPer, temporalCounters } from './temporal-counters.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '8' }, concurrency: { type: 'string', default: '32' },
    /** The dev server's `system.forceSearchAttributesCacheRefreshOnRead` (`default`: what scripts/lib/temporal-dev-server.ts sets). */
    'sa-refresh-on-read': { type: 'string', default: 'default' },
  },
});
const SA_REFRESH = values['sa-refresh-on-read'];
if (!['default', 'true', 'false'].includes(SA_REFRESH)) throw new Error('--sa-refresh-on-read must be default, true or false');
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);

/** The start's search attributes as the API writes them for a sync request (`api/workflow-start.ts`). */
const START_ATTRIBUTES: NonNullable<WorkflowStartOptions['typedSearchAttributes']> = [
  { key: SearchAttributes.kind, value: 'sync' },
  { key: SearchAttributes.tenant, value: 'ten_0mx4tna0m7fa328b5187a44a0ffce' },
  { key: SearchAttributes.model, value: 'instant' },
  { key: SearchAttributes.status, value: 'running' },
];

interface Variant {
  workflow: string;
  input?: string;
  attributes?: boolean;
  /** The start's other options as the API sends them (priority key 1, `USE_EXISTING`). */
  sluiceStart?: boolean;
}

const BIG_INPUT = 'x'.repeat(SLUICE_PAYLOAD_BYTES.input);
const VARIANTS: Record<string, Variant> = {
  'request-shaped': { workflow: 'requestShapedWorkflow' },
  '+payloads (a)': { workflow: 'requestShapedPayloadsWorkflow', input: BIG_INPUT },
  '+start attributes (b)': { workflow: 'requestShapedWorkflow', attributes: true },
  '+end upsert (c)': { workflow: 'requestShapedUpsertWorkflow' },
  '+all three (d)': { workflow: 'requestShapedAllWorkflow', input: BIG_INPUT, attributes: true },
  '+infer options (e)': { workflow: 'requestShapedOptionsWorkflow' },
  '+start options (f)': { workflow: 'requestShapedWorkflow', sluiceStart: true },
  '+workers\' CPU (g)': { workflow: 'requestShapedBusyWorkflow' },
  'all of (a)-(g)': { workflow: 'requestShapedSluiceWorkflow', input: BIG_INPUT, attributes: true, sluiceStart: true },
};

async function main() {
  const metricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const results = await withBenchInfra('floor-decompose', {}, async ({ config, infra, temporalPid }) => {
    const connection = await NativeConnection.connect({ address: infra.temporalAddress });
    const namespace = config.temporalNamespace;
    const client = new Client({ connection, namespace });
    const workers = await startFloorWorkers(connection, namespace);
    const rows: Record<string, Array<Load & { round: number; loadavg: number; server_per_request: Record<string, number> }>> = {};
    let n = 0;
    try {
      const names = Object.keys(VARIANTS);
      for (let round = 0; round < ROUNDS; round++) {
        for (let i = 0; i < names.length; i++) {
          const name = names[(i + round) % names.length] as string;
          const v = VARIANTS[name] as Variant;
          const call = async () => {
            const t = performance.now();
            const handle = await client.workflow.start(v.workflow, {
              taskQueue: FLOOR_QUEUE, workflowId: `floor-${Date.now()}-${n++}`, args: [v.input ?? 'x'], requestEagerStart: true,
              ...(v.attributes ? { typedSearchAttributes: START_ATTRIBUTES } : {}),
              ...(v.sluiceStart ? { priority: { priorityKey: 1 }, workflowIdConflictPolicy: 'USE_EXISTING' as const } : {}),
            });
            await handle.result();
            return performance.now() - t;
          };
          for (let w = 0; w < 20; w++) await call(); // warm-up
          const before = await temporalCounters(metricsUrl);
          const load = await measureLoad(call, CONCURRENCY, SECONDS, temporalPid);
          const server = countersPer(before, await temporalCounters(metricsUrl), load.requests);
          const row = { ...load, round: round + 1, loadavg: Math.round((os.loadavg()[0] ?? 0) * 10) / 10, server_per_request: server };
          (rows[name] ??= []).push(row);
          process.stderr.write(`round ${round + 1} ${name}: ${JSON.stringify(row)}\n`);
        }
      }
    } finally {
      await workers.stop();
      await connection.close();
    }
    const base = rows['request-shaped'] ?? [];
    const summary = Object.fromEntries(Object.entries(rows).map(([name, rs]) => {
      const temporal = rs.map((r) => r.cpu_ms_per_request.temporal ?? Number.NaN);
      const deltas = rs.map((r) => (r.cpu_ms_per_request.temporal ?? Number.NaN) - (base.find((b) => b.round === r.round)?.cpu_ms_per_request.temporal ?? Number.NaN));
      const round1 = (x: number) => Math.round(x * 10) / 10;
      return [name, {
        temporal_ms_per_request: temporal,
        temporal_minus_floor_ms: deltas.map(round1),
        temporal_minus_floor_median_ms: round1(percentile(deltas, 50)),
        node_ms_per_request: rs.map((r) => r.cpu_ms_per_request.node),
        rps: rs.map((r) => r.rps),
        loadavg: rs.map((r) => r.loadavg),
        server_per_request_last_round: rs[rs.length - 1]?.server_per_request,
      }];
    }));
    return { machine: machine(), sa_refresh_on_read: SA_REFRESH, rounds: ROUNDS, seconds: SECONDS, concurrency: CONCURRENCY, payload_bytes: SLUICE_PAYLOAD_BYTES, summary, rows };
  }, {
    devServerArgs: [
      '--metrics-port', String(metricsPort),
      ...(SA_REFRESH === 'default' ? [] : ['--dynamic-config-value', `system.forceSearchAttributesCacheRefreshOnRead=${SA_REFRESH}`]),
    ],
  });
  printResults(results);
}

runBench(main);
