/**
 * The floor under the pipeline benchmark: workflows that do nothing (`floor-workflows.ts`), run
 * the way the API runs a request's workflow (eager start on the shared native connection, then
 * the result's long poll) against the same dev server, with their workers in this process.
 * What they cost is what one workflow per request costs here before any of Sluice's work.
 */
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type { Client } from '@temporalio/client';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { measureLoad, percentile, type Load } from './stats.js';
import { FLOOR_POOL_QUEUE } from './floor-workflows.js';
import { measureRemoteLoad, type LoadClient } from './load-client.js';

/** The floor's control queue (workflows and local activities). */
export const FLOOR_QUEUE = 'floor-control';
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
  /**
   * Also the one-activity floor behind a minimal HTTP route (`oneActivityHttp`: Express, a JSON
   * body parsed, the workflow started and its result awaited, a JSON answer), called by this load
   * client as the pipeline's sync requests are: how much of the gap to the floor is HTTP itself.
   * An extra row; the floors above stay as they are. @default none
   */
  httpClient?: LoadClient;
}

/**
 * The floor's two workers in this process (the control queue's workflows and local activities,
 * the pool queue's activity), with the slot counts of Sluice's workers in the pipeline benchmark.
 * `stop` shuts both down and waits for them.
 */
export async function startFloorWorkers(connection: NativeConnection, namespace: string): Promise<{ stop: () => Promise<void> }> {
  const activities = {
    noop: async (x: string) => x,
    sized: async (_x: string, bytes: number, burnMs = 0) => {
      const until = process.cpuUsage().user + burnMs * 1000;
      while (burnMs > 0 && process.cpuUsage().user < until); // the worker's CPU, as a step's work spends it
      return 'x'.repeat(bytes);
    },
  };
  const control = await Worker.create({
    connection, namespace, taskQueue: FLOOR_QUEUE, activities,
    workflowsPath: fileURLToPath(new URL('./floor-workflows.ts', import.meta.url)),
    maxConcurrentWorkflowTaskExecutions: 64, maxConcurrentLocalActivityExecutions: 64,
  });
  const pool = await Worker.create({ connection, namespace, taskQueue: FLOOR_POOL_QUEUE, activities, maxConcurrentActivityTaskExecutions: 64 });
  const running = [control.run(), pool.run()];
  return {
    stop: async () => {
      control.shutdown();
      pool.shutdown();
      await Promise.all(running);
    },
  };
}

export async function measureFloor(options: FloorOptions): Promise<Record<string, unknown>> {
  const { connection, client, namespace } = options;
  const workers = await startFloorWorkers(connection, namespace);
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
    if (options.httpClient) {
      results.oneActivityHttp = await measureBehindHttp(options, options.httpClient, () => `floor-http-${Date.now()}-${n++}`);
      process.stderr.write(`floor oneActivityHttp: ${JSON.stringify(results.oneActivityHttp)}\n`);
    }
  } finally {
    await workers.stop();
  }
  return results;
}

/** The one-activity floor behind one Express route (see {@link FloorOptions.httpClient}). */
async function measureBehindHttp(options: FloorOptions, loadClient: LoadClient, workflowId: () => string): Promise<Record<string, unknown>> {
  const app = express();
  app.post('/floor', express.json(), async (req, res) => {
    try {
      const handle = await options.client.workflow.start('oneActivityWorkflow', { taskQueue: FLOOR_QUEUE, workflowId: workflowId(), args: [String(req.body?.x ?? 'x')], requestEagerStart: true });
      res.json({ out: await handle.result() });
    } catch (err) {
      res.status(500).json({ error: err instanceof Error ? err.message : String(err) });
    }
  });
  const server = await new Promise<ReturnType<typeof app.listen>>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  try {
    const target = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/floor`, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ x: 'x' }) };
    await loadClient.sequential(target, 50); // warm-up
    const sequential = await loadClient.sequential(target, options.requests);
    const throughput: Load[] = [];
    for (const c of options.concurrencies) throughput.push(await measureRemoteLoad(loadClient, target, c, options.seconds, { temporalPid: options.temporalPid }));
    return { p50_ms: percentile(sequential, 50), p99_ms: percentile(sequential, 99), throughput };
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
