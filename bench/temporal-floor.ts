/**
 * The floor under the pipeline benchmark: workflows that do nothing (`floor-workflows.ts`), run
 * the way the API runs a request's workflow (eager start on the shared native connection, then
 * the result's long poll) against the same dev server, with their workers in this process.
 * What they cost is what one workflow per request costs here before any of Sluice's work.
 */
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { measureLoad, percentile, type Load } from './stats.js';
import { FLOOR_POOL_QUEUE } from './floor-workflows.js';

const FLOOR_QUEUE = 'floor-control';
export const FLOOR_WORKFLOWS = ['emptyWorkflow', 'oneActivityWorkflow', 'requestShapedWorkflow'] as const;

export interface FloorOptions {
  connection: NativeConnection;
  client: Client;
  namespace: string;
  temporalPid: number | undefined;
  requests: number;
  seconds: number;
  concurrencies: readonly number[];
  /** Which floors to measure. @default all of {@link FLOOR_WORKFLOWS} */
  workflows?: ReadonlyArray<(typeof FLOOR_WORKFLOWS)[number]>;
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
    for (const workflow of options.workflows ?? FLOOR_WORKFLOWS) {
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
