/**
 * The durable pipeline's own cost, with the instant in-process backend (no model time):
 *  - per-request overhead of a sync `POST /v1/chat/completions` (auth → quota → experiment →
 *    infer activity on the pool queue → settle → audit, on the Temporal dev server and PostgreSQL)
 *    over a direct backend call, p50/p99, side by side in one run;
 *  - sync requests/s at concurrency 1, 8 and 32;
 *  - with the database steps as local activities (the regular-activities mode went with
 *    SLUICE_LOCAL_ACTIVITIES: the workflow code decides; its numbers stay in BENCHMARKS.md);
 *  - first, on the same dev server, the floor: workflows that do nothing (`temporal-floor.ts`);
 *  - CPU time per request of this process (the API and the workers), of the dev server, of
 *    PostgreSQL and of the load generator, at each concurrency: the HTTP client runs in its own
 *    process (`load-client.ts`), for the pipeline and for the floor's extra `oneActivityHttp` row.
 *  - `--modes early`: the pipeline with `SLUICE_EARLY_ANSWER` on (`api/answer.ts`, the default), as
 *    `early_answer`; `--modes local` with it off, as `local_activities`.
 * Real embedded PostgreSQL and Temporal dev server in a temp dir; everything stops at the end.
 *
 * Run: `npx tsx bench/pipeline.ts [--requests 300] [--seconds 10] [--modes floor,local[,early]] [--floors W,…]`
 * (`--floors`: which floor rows, of `FLOOR_WORKFLOWS` and `oneActivityHttp`; default all: e.g.
 * `--floors requestShapedWorkflow` to profile that floor alone).
 */
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startInfra, startStack } from '../scripts/lib/system.js';
import { createInstantBackend } from '../activities/backends/instant.js';
import path from 'node:path';
import { percentile } from './stats.js';
import { FLOOR_WORKFLOWS, measureFloor } from './temporal-floor.js';
import { measureRemoteLoad, startLoadClient } from './load-client.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench, syncChatTarget } from './setup.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' }, seconds: { type: 'string', default: '10' }, modes: { type: 'string', default: 'floor,local' },
    floors: { type: 'string', default: [...FLOOR_WORKFLOWS, 'oneActivityHttp'].join(',') },
  },
});
const FLOORS = values.floors.split(',').map((f) => f.trim());
for (const f of FLOORS) if (f !== 'oneActivityHttp' && !(FLOOR_WORKFLOWS as readonly string[]).includes(f)) throw new Error(`unknown floor '${f}'`);
const MODES = values.modes.split(',').map((m) => m.trim());
if (MODES.includes('regular')) throw new Error('--modes regular was removed with SLUICE_LOCAL_ACTIVITIES (docs/versioning.md)');
const REQUESTS = Number(values.requests);
const SECONDS = Number(values.seconds);
const CONCURRENCIES = [1, 8, 32];

async function directLatencies(n: number): Promise<number[]> {
  const backend = createInstantBackend();
  const signal = new AbortController().signal;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await backend.generate({ messages: [{ role: 'user', content: 'benchmark' }], params: { maxTokens: 2, temperature: 0, topP: null, seed: null, stop: null }, signal });
    out.push(performance.now() - t);
  }
  return out;
}

async function main() {
  const { dir, env } = await benchEnv('pipeline', { SLUICE_SLOTS: '64' });
  const log = createLogger('warn');
  const baseConfig = loadConfig(env);
  const infra = await startInfra(baseConfig, log);
  const results: Record<string, unknown> = { machine: machine(), requests: REQUESTS, seconds: SECONDS };
  const temporalPid = infra.temporal?.process.pid;
  const pgDir = path.join(dir, 'postgres');
  const loadClient = startLoadClient();
  try {
    if (MODES.includes('floor')) {
      const connection = await NativeConnection.connect({ address: infra.temporalAddress });
      try {
        const namespace = baseConfig.temporalNamespace;
        const client = new Client({ connection, namespace });
        results.floor = await measureFloor({
          connection, client, namespace, temporalPid, requests: REQUESTS, seconds: SECONDS, concurrencies: CONCURRENCIES,
          workflows: FLOOR_WORKFLOWS.filter((w) => FLOORS.includes(w)),
          ...(FLOORS.includes('oneActivityHttp') ? { httpClient: loadClient } : {}),
        });
      } finally {
        await connection.close();
      }
    }
    let key = '';
    // `local` and `early` (`SLUICE_EARLY_ANSWER` on) in the order given, a mode named again measured
    // again (e.g. `local,early,early,local`: each side both first and second on the same dev server).
    const seen = new Map<string, number>();
    for (const name of MODES.filter((m) => m === 'local' || m === 'early')) {
      const config = { ...baseConfig, earlyAnswer: name === 'early' };
      const stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: ['bench'], log });
      try {
        if (!key) {
          await addInstantModel(stack.db);
          key = (await addTenantKey(stack.db)).secret;
        }
        const target = syncChatTarget(stack.url as string, key);
        await loadClient.sequential(target, 50); // warm-up: bundles, caches, connections
        const direct: number[] = [];
        const pipeline: number[] = [];
        // Side by side: each pipeline request is paired with a direct call in the same loop.
        for (let i = 0; i < REQUESTS; i++) {
          direct.push(...(await directLatencies(1)));
          pipeline.push(...(await loadClient.sequential(target, 1)));
        }
        const n = (seen.get(name) ?? 0) + 1;
        seen.set(name, n);
        const mode = `${name === 'early' ? 'early_answer' : 'local_activities'}${n > 1 ? `_${n}` : ''}`;
        results[mode] = {
          direct_p50_ms: percentile(direct, 50), direct_p99_ms: percentile(direct, 99),
          pipeline_p50_ms: percentile(pipeline, 50), pipeline_p99_ms: percentile(pipeline, 99),
          overhead_p50_ms: Math.round((percentile(pipeline, 50) - percentile(direct, 50)) * 100) / 100,
          overhead_p99_ms: Math.round((percentile(pipeline, 99) - percentile(direct, 99)) * 100) / 100,
          throughput: [] as unknown[],
        };
        for (const c of CONCURRENCIES) (results[mode] as { throughput: unknown[] }).throughput.push(await measureRemoteLoad(loadClient, target, c, SECONDS, { temporalPid, pgDir }));
        process.stderr.write(`${mode}: ${JSON.stringify(results[mode])}\n`);
      } finally {
        await stack.stop();
      }
    }
  } finally {
    await loadClient.close();
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
