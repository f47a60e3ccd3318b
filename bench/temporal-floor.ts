/**
 * The floor under the pipeline benchmark: workflows that do nothing (`floor-workflows.ts`), run
 * the way the API runs a request's workflow (eager start on the shared native connection, then
 * the result's long poll) against the same dev server, with their workers in this process.
 * What they cost is what one workflow per request costs here before any of Sluice's work.
 */
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { cpuMs, percentile } from './stats.js';
import { FLOOR_POOL_QUEUE } from './floor-workflows.js';

const FLOOR_QUEUE = 'floor-control';
export const FLOOR_WORKFLOWS = ['emptyWorkflow', 'oneActivityWorkflow', 'requestShapedWorkflow'] as const;

export interface Load {
  concurrency: number;
  requests: number;
  /** Calls that failed (not counted in requests). */
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** CPU time per request of this process (API, workers, load generator) and of the Temporal dev server. */
  cpu_ms_per_request: { node: number; temporal: number | null };
}

/** Runs `call` from `concurrency` loops for `seconds`, with the CPU both processes spent per call. */
export async function measureLoad(call: () => Promise<number>, concurrency: number, seconds: number, temporalPid: number | undefined): Promise<Load> {
  const latencies: number[] = [];
  let errors = 0;
  const node0 = process.cpuUsage();
  const temporal0 = cpuMs(temporalPid);
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      try {
        latencies.push(await call());
      } catch {
        errors += 1;
      }
    }
  }));
  const node = process.cpuUsage(node0);
  const temporal1 = cpuMs(temporalPid);
  const per = (ms: number) => Math.round((ms / latencies.length) * 10) / 10;
  return {
    concurrency, requests: latencies.length, errors, rps: Math.round((latencies.length / seconds) * 10) / 10,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99),
    cpu_ms_per_request: { node: per((node.user + node.system) / 1000), temporal: temporal0 !== null && temporal1 !== null ? per(temporal1 - temporal0) : null },
  };
}

export interface FloorOptions {
  connection: NativeConnection;
  client: Client;
  namespace: string;
  temporalPid: number | undefined;
  requests: number;
  seconds: number;
  concurrencies: readonly number[];
}

export async function measureFloor(options: FloorOptions): Promise<Record<string, unknown>> {
  const { connection, client, namespace } = options;
  const activities = { noop: async (x: string) => x };
  // Same slot counts as Sluice's control and inference workers in the pipeline benchmark.
  const control = await Worker.create({
    connection, namespace, taskQueue: FLOOR_QUEUE, activities,
    workflowsPath: fileURLToPath(new URL('./floor-workflows.ts', import.meta.url)),
    maxConcurrentWorkflowTaskExecutions: 64, maxConcurrentLocalActivityExecutions: 64,
  });
  const pool = await Worker.create({ connection, namespace, taskQueue: FLOOR_POOL_QUEUE, activities, maxConcurrentActivityTaskExecutions: 64 });
  const running = [control.run(), pool.run()];
  const results: Record<string, unknown> = {};
  let n = 0;
  try {
    for (const workflow of FLOOR_WORKFLOWS) {
      const call = async () => {
        const t = performance.now();
        const handle = await client.workflow.start(workflow, { taskQueue: FLOOR_QUEUE, workflowId: `floor-${Date.now()}-${n++}`, args: ['x'], requestEagerStart: true });
        await handle.result();
        return performance.now() - t;
      };
      for (let i = 0; i < 50; i++) await call(); // warm-up
      const sequential: number[] = [];
      for (let i = 0; i < options.requests; i++) sequential.push(await call());
      const throughput: Load[] = [];
      for (const c of options.concurrencies) throughput.push(await measureLoad(call, c, options.seconds, options.temporalPid));
      results[workflow] = { p50_ms: percentile(sequential, 50), p99_ms: percentile(sequential, 99), throughput };
      process.stderr.write(`floor ${workflow}: ${JSON.stringify(results[workflow])}\n`);
    }
  } finally {
    control.shutdown();
    pool.shutdown();
    await Promise.all(running);
  }
  return results;
}
