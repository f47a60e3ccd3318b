/**
 * The response cache (issue 15), side by side in one run on one dev server and PostgreSQL:
 *  - the floor (`temporal-floor.ts`): workflows that do nothing, one activity, request-shaped;
 *  - sync `POST /v1/chat/completions` of the instant model (no model time, so what is left is the
 *    pipeline) as a cache miss (a fresh deterministic prompt: lookup, infer, settle and store),
 *    as a hit (the same prompt again: lookup, settle; no infer activity), and not consulted
 *    (temperature 1: the pipeline as it was), p50/p99 each;
 *  - hit and miss throughput at concurrency 32 (and 1), against the one-activity floor at the same.
 * A hit skips the inference activity, so it should beat the one-activity floor's latency.
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
  });
  printResults(results);
}

runBench(main);
