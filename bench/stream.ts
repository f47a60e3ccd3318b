/**
 * Streaming through Sluice (issue 13), side by side in one run, with the instant backend streaming
 * N one-token chunks at a fixed interval (`stream-interval-ms:<ms>`):
 *  - time to first token (first content event at the client) through Sluice vs the direct backend
 *    call (first delta), p50/p99, next to the one-activity floor of the same dev server;
 *  - added latency per chunk: how much later than the backend's pace each chunk reaches the
 *    client, relative to the first (Sluice and direct), p50/p99;
 *  - streams/s at concurrency 1, 8 and 32 (the fast instant reply, streamed) next to non-streamed
 *    sync requests/s of the same run.
 * Real embedded PostgreSQL and Temporal dev server in a temp dir; everything stops at the end.
 *
 * Run: `npx tsx bench/stream.ts [--streams 40] [--chunks 20] [--interval 10] [--seconds 5]`
 */
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startInfra, startStack } from '../scripts/lib/system.js';
import { createInstantBackend } from '../activities/backends/instant.js';
import { createModel } from '../db/repositories/models.js';
import { measureLoad, percentile } from './stats.js';
import { measureFloor } from './temporal-floor.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench, syncChat } from './setup.js';

const { values } = parseArgs({
  options: { streams: { type: 'string', default: '40' }, chunks: { type: 'string', default: '20' }, interval: { type: 'string', default: '10' }, seconds: { type: 'string', default: '5' } },
});
const STREAMS = Number(values.streams);
const CHUNKS = Number(values.chunks);
const INTERVAL = Number(values.interval);
const SECONDS = Number(values.seconds);
const CONCURRENCIES = [1, 8, 32];

/** Arrival times (ms since the call) of each content chunk, from an SSE body. */
async function streamArrivals(url: string, key: string, body: Record<string, unknown>): Promise<number[]> {
  const t = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  const arrivals: number[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let at: number;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      if (/"content":"[^"]/.test(event)) {
        // A chunk may carry several tokens when they came while an insert was in flight.
        const n = /"content":"(x+)"/.exec(event)?.[1]?.length ?? 1;
        const now = performance.now() - t;
        for (let i = 0; i < n; i++) arrivals.push(now);
      }
    }
  }
  return arrivals;
}

async function directArrivals(): Promise<number[]> {
  const backend = createInstantBackend({ chunkIntervalMs: INTERVAL });
  const t = performance.now();
  const arrivals: number[] = [];
  await backend.generate({
    messages: [{ role: 'user', content: 'benchmark' }], params: { maxTokens: CHUNKS, temperature: 0, topP: null, seed: null, stop: null },
    signal: new AbortController().signal, onDelta: () => arrivals.push(performance.now() - t),
  });
  return arrivals;
}

/** Per chunk after the first: how much later than the pace it arrived, relative to the first. */
function lateness(arrivals: number[]): number[] {
  const first = arrivals[0] ?? 0;
  return arrivals.slice(1).map((a, i) => a - first - (i + 1) * INTERVAL);
}

async function main() {
  const { dir, env } = await benchEnv('stream', { SLUICE_SLOTS: '64' });
  const log = createLogger('warn');
  const config = loadConfig(env);
  const infra = await startInfra(config, log);
  const results: Record<string, unknown> = { machine: machine(), streams: STREAMS, chunks: CHUNKS, interval_ms: INTERVAL, seconds: SECONDS };
  const temporalPid = infra.temporal?.process.pid;
  try {
    const connection = await NativeConnection.connect({ address: infra.temporalAddress });
    try {
      const client = new Client({ connection, namespace: config.temporalNamespace });
      const floor = await measureFloor({ connection, client, namespace: config.temporalNamespace, temporalPid, requests: STREAMS, seconds: 1, concurrencies: [1] });
      results.floor_p50_ms = Object.fromEntries(Object.entries(floor).map(([k, v]) => [k, (v as { p50_ms: number }).p50_ms]));
    } finally {
      await connection.close();
    }
    const stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: ['bench'], log });
    try {
      await addInstantModel(stack.db);
      await createModel(stack.db, {
        id: 'paced', ownedBy: 'sluice', contextLength: 4096, maxOutputTokens: 1000,
        deployments: [{
          id: 'paced-bench', pool: 'bench', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null,
          upstreamModel: `stream-interval-ms:${INTERVAL}`, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 200_000,
        }],
      }, new Date(Date.now() - 60_000));
      const key = (await addTenantKey(stack.db)).secret;
      const url = stack.url as string;
      const paced = { model: 'paced', messages: [{ role: 'user', content: 'benchmark' }], max_tokens: CHUNKS };
      for (let i = 0; i < 10; i++) await streamArrivals(url, key, paced); // warm-up
      const sluiceTtft: number[] = [];
      const directTtft: number[] = [];
      const sluiceLate: number[] = [];
      const directLate: number[] = [];
      for (let i = 0; i < STREAMS; i++) {
        const s = await streamArrivals(url, key, paced);
        const d = await directArrivals();
        sluiceTtft.push(s[0] ?? Number.NaN);
        directTtft.push(d[0] ?? Number.NaN);
        sluiceLate.push(...lateness(s));
        directLate.push(...lateness(d));
      }
      results.ttft_ms = {
        sluice: { p50: percentile(sluiceTtft, 50), p99: percentile(sluiceTtft, 99) },
        direct: { p50: percentile(directTtft, 50), p99: percentile(directTtft, 99) },
      };
      results.chunk_lateness_ms = {
        sluice: { p50: percentile(sluiceLate, 50), p99: percentile(sluiceLate, 99) },
        direct: { p50: percentile(directLate, 50), p99: percentile(directLate, 99) },
      };
      const fast = { model: 'instant', messages: [{ role: 'user', content: 'benchmark' }], max_tokens: 2 };
      const streamCall = async () => {
        const t = performance.now();
        await streamArrivals(url, key, fast);
        return performance.now() - t;
      };
      const throughput: Array<Record<string, unknown>> = [];
      for (const c of CONCURRENCIES) {
        const sync = await measureLoad(() => syncChat(url, key), c, SECONDS, temporalPid);
        const streamed = await measureLoad(streamCall, c, SECONDS, temporalPid);
        throughput.push({ concurrency: c, sync_rps: sync.rps, stream_rps: streamed.rps, stream_p50_ms: streamed.p50_ms, stream_errors: streamed.errors, ratio: Math.round((streamed.rps / sync.rps) * 100) / 100 });
        process.stderr.write(`c=${c}: ${JSON.stringify(throughput.at(-1))}\n`);
      }
      results.throughput = throughput;
    } finally {
      await stack.stop();
    }
  } finally {
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
