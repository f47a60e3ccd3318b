/**
 * The response cache (issue 15), side by side in one run on one dev server and PostgreSQL:
 *  - the floor (`temporal-floor.ts`): workflows that do nothing, one activity, request-shaped;
 *  - sync `POST /v1/chat/completions` of the instant model (no model time, so what is left is the
 *    pipeline) as a cache miss (a fresh deterministic prompt: lookup, infer, settle and store),
 *    as a hit (the same prompt again: lookup, settle; no infer activity), and not consulted
 *    (temperature 1: the pipeline as it was), p50/p99 each;
 *  - hit and miss throughput at concurrency 32 (and 1), against the one-activity floor at the same.
 * A hit skips the inference activity, so it should beat the one-activity floor's latency.
 * `vs_floor` states each comparison (hit p50 against the one-activity and request-shaped floors'
 * p50, hit req/s at c=32 against the floors' at c=32). The machine may be shared: the floor is
 * measured once before the stack and the one-activity floor once more after it (`floor_after`),
 * and the comparison uses the slower of the two, so a floor measured in a quieter moment does not
 * make the hit look worse than it is (and the drift between the two is printed).
 *
 * Run: `npx tsx bench/cache.ts [--requests 200] [--seconds 5]`
 */
import { parseArgs } from 'node:util';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { measureLoad, percentile } from './stats.js';
import { measureFloor } from './temporal-floor.js';
import { addInstantModel, addTenantKey, machine, runBench, withBenchInfra, withStack, printResults } from './setup.js';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '200' }, seconds: { type: 'string', default: '5' } } });
const REQUESTS = Number(values.requests);
const SECONDS = Number(values.seconds);
const CONCURRENCIES = [1, 32];

let fresh = 0;

/** One sync completion; `prompt` null = a fresh one (a miss). Returns ms; throws unless 200 with the expected header. */
async function chat(url: string, key: string, body: { prompt: string | null; temperature: number }, expect: string | null): Promise<number> {
  const content = body.prompt ?? `miss ${process.pid} ${fresh++}`;
  const t = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content }], max_tokens: 2, temperature: body.temperature }),
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
  const ms = performance.now() - t;
  if (res.headers.get('x-sluice-cache') !== expect) throw new Error(`x-sluice-cache ${res.headers.get('x-sluice-cache')}, expected ${expect}`);
  return ms;
}

interface FloorRun {
  p50_ms: number;
  throughput: Array<{ concurrency: number; rps: number }>;
}

/** The hit against the floors (see the top of this file): ratios < 1 (latency) and > 1 (req/s) favour the hit. */
function versusFloor(results: Record<string, unknown>) {
  const floor = results.floor as Record<string, FloorRun>;
  const after = (results.floor_after as Record<string, FloorRun>).oneActivityWorkflow as FloorRun;
  const hit = (results.latency as { hit: { p50_ms: number } }).hit;
  const hitLoad = (results.throughput as { hit: Array<{ concurrency: number; rps: number }> }).hit;
  const rpsAt = (runs: FloorRun['throughput'], c: number) => runs.find((t) => t.concurrency === c)?.rps ?? Number.NaN;
  const oneBefore = floor.oneActivityWorkflow as FloorRun;
  const shaped = floor.requestShapedWorkflow as FloorRun;
  const oneP50 = Math.max(oneBefore.p50_ms, after.p50_ms);
  const oneRps = Math.min(rpsAt(oneBefore.throughput, 32), rpsAt(after.throughput, 32));
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    one_activity_floor: { p50_ms_before: oneBefore.p50_ms, p50_ms_after: after.p50_ms, rps_c32_before: rpsAt(oneBefore.throughput, 32), rps_c32_after: rpsAt(after.throughput, 32) },
    hit_p50_ms: hit.p50_ms,
    hit_p50_over_one_activity_floor_p50: round(hit.p50_ms / oneP50),
    hit_p50_over_request_shaped_floor_p50: round(hit.p50_ms / shaped.p50_ms),
    hit_rps_c32: rpsAt(hitLoad, 32),
    hit_rps_c32_over_one_activity_floor: round(rpsAt(hitLoad, 32) / oneRps),
    hit_rps_c32_over_request_shaped_floor: round(rpsAt(hitLoad, 32) / rpsAt(shaped.throughput, 32)),
    hit_beats_one_activity_floor: hit.p50_ms < oneP50 && rpsAt(hitLoad, 32) > oneRps,
  };
}

async function main() {
  const results: Record<string, unknown> = { machine: machine(), requests: REQUESTS, seconds: SECONDS };
  await withBenchInfra('cache', { SLUICE_SLOTS: '64' }, async (bench) => {
    const { config, infra, temporalPid } = bench;
    const connection = await NativeConnection.connect({ address: infra.temporalAddress });
    try {
      const client = new Client({ connection, namespace: config.temporalNamespace });
      results.floor = await measureFloor({ connection, client, namespace: config.temporalNamespace, temporalPid, requests: REQUESTS, seconds: SECONDS, concurrencies: CONCURRENCIES });
    } finally {
      await connection.close();
    }
    await withStack(bench, {}, async (stack) => {
      await addInstantModel(stack.db);
      const { tenantId, secret: key } = await addTenantKey(stack.db);
      await stack.db.updateTable('tenants').set({ cache_enabled: true }).where('id', '=', tenantId).execute();
      const url = stack.url;
      const hitBody = { prompt: 'cached benchmark', temperature: 0 };
      await chat(url, key, hitBody, 'miss');
      for (let i = 0; i < 50; i++) {
        await chat(url, key, hitBody, 'hit');
        await chat(url, key, { prompt: null, temperature: 0 }, 'miss');
        await chat(url, key, { prompt: 'x', temperature: 1 }, null);
      }
      const miss: number[] = [];
      const hit: number[] = [];
      const uncached: number[] = [];
      // Side by side: each loop takes one of each.
      for (let i = 0; i < REQUESTS; i++) {
        miss.push(await chat(url, key, { prompt: null, temperature: 0 }, 'miss'));
        hit.push(await chat(url, key, hitBody, 'hit'));
        uncached.push(await chat(url, key, { prompt: 'x', temperature: 1 }, null));
      }
      const lat = (v: number[]) => ({ p50_ms: percentile(v, 50), p99_ms: percentile(v, 99) });
      results.latency = { miss: lat(miss), hit: lat(hit), not_consulted: lat(uncached) };
      const throughput: Record<string, unknown[]> = { hit: [], miss: [] };
      for (const c of CONCURRENCIES) {
        throughput.hit!.push(await measureLoad(() => chat(url, key, hitBody, 'hit'), c, SECONDS, temporalPid));
        throughput.miss!.push(await measureLoad(() => chat(url, key, { prompt: null, temperature: 0 }, 'miss'), c, SECONDS, temporalPid));
      }
      results.throughput = throughput;
      process.stderr.write(`cache: ${JSON.stringify({ latency: results.latency, throughput })}\n`);
    });
    const again = await NativeConnection.connect({ address: infra.temporalAddress });
    try {
      const client = new Client({ connection: again, namespace: config.temporalNamespace });
      results.floor_after = await measureFloor({
        connection: again, client, namespace: config.temporalNamespace, temporalPid, requests: REQUESTS, seconds: SECONDS, concurrencies: CONCURRENCIES, workflows: ['oneActivityWorkflow'],
      });
    } finally {
      await again.close();
    }
    results.vs_floor = versusFloor(results);
  });
  printResults(results);
}

runBench(main);
