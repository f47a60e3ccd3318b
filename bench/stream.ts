/**
 * Streaming through Sluice (issue 13), side by side in one run, with the instant backend streaming
 * N one-token chunks at a fixed interval (`stream-interval-ms:<ms>`):
 *  - time to first token (first content event at the client) through Sluice vs the direct backend
 *    call (first delta), p50/p99, next to the one-activity floor of the same dev server;
 *  - added latency per chunk: how much later than the backend's pace each chunk reaches the
 *    client, relative to the first (Sluice and direct), p50/p99;
 *  - streams/s at concurrency 1, 8 and 32 (the fast instant reply, streamed) next to non-streamed
 *    sync requests/s of the same run.
 * Then the same measures on the tiny llama.cpp model (`--llama-streams`, 0 to skip), with its own
 * stack of 2 slots: time to first token through Sluice vs the backend called directly, the gaps
 * between content events vs between the backend's own deltas, and streams/s vs sync req/s at the
 * same concurrencies (the slots bound both).
 * Real embedded PostgreSQL and Temporal dev server in a temp dir; everything stops at the end.
 *
 * Run: `npx tsx bench/stream.ts [--streams 40] [--chunks 20] [--interval 10] [--seconds 5] [--llama-streams 20] [--llama-tokens 32] [--threads 1]`
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../runtime/config.js';
import { createInstantBackend } from '../activities/backends/instant.js';
import { getLlama } from 'node-llama-cpp';
import { createLlamaCppBackend } from '../activities/backends/llama-cpp.js';
import { createModel } from '../db/repositories/models.js';
import { TINY_GGUF_FILE_NAME, ensureTinyGguf } from '../workers/llama/tiny-gguf.js';
import { readEvents } from '../test/support/sse.js';
import { measureLoad, percentile } from './stats.js';
import { measureFloor } from './temporal-floor.js';
import { machine, addInstantModel, addTenantKey, printResults, runBench, syncChat, withBenchInfra, withStack, type BenchInfra } from './setup.js';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '40' }, chunks: { type: 'string', default: '20' }, interval: { type: 'string', default: '10' }, seconds: { type: 'string', default: '5' },
    'llama-streams': { type: 'string', default: '20' }, 'llama-tokens': { type: 'string', default: '32' }, threads: { type: 'string', default: '1' },
  },
});
const LLAMA_STREAMS = Number(values['llama-streams']);
const LLAMA_TOKENS = Number(values['llama-tokens']);
const THREADS = values.threads;
const LLAMA_CONTEXT = 1024;
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
  await readEvents(res, (event) => {
    if (!/"content":"[^"]/.test(event.data)) return;
    // A chunk may carry several tokens when they came while an insert was in flight.
    const n = /"content":"(x+)"/.exec(event.data)?.[1]?.length ?? 1;
    const now = performance.now() - t;
    for (let i = 0; i < n; i++) arrivals.push(now);
  });
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

/** Gaps between successive arrivals. */
function gaps(arrivals: number[]): number[] {
  return arrivals.slice(1).map((a, i) => a - (arrivals[i] ?? a));
}

const summary = (xs: number[]) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99) });

/**
 * The tiny llama.cpp model streamed through a stack of its own (2 slots, `THREADS` threads) vs the
 * backend called directly in this process with the same settings, one at a time; then streams/s
 * against sync req/s at each concurrency.
 */
async function llamaPhase(bench: BenchInfra): Promise<Record<string, unknown>> {
  const modelPath = await ensureTinyGguf(path.join(bench.dir, 'models'));
  const config = loadConfig({ ...bench.env, SLUICE_SLOTS: '2', SLUICE_THREADS: THREADS, SLUICE_CONTEXT_SIZE: String(LLAMA_CONTEXT) });
  const { temporalPid } = bench;
  const llama = await getLlama({ build: 'never', gpu: false });
  const backend = await createLlamaCppBackend({ modelPath, slots: 1, threads: Number(THREADS), contextSize: LLAMA_CONTEXT, llama });
  try {
    return await withStack(bench, { config }, async (stack) => {
      await createModel(stack.db, {
        id: 'tiny-bench', ownedBy: 'sluice', contextLength: LLAMA_CONTEXT, maxOutputTokens: LLAMA_TOKENS,
        deployments: [{
          id: 'tiny-bench-bench', pool: 'bench', provider: 'llama-cpp', ggufPath: TINY_GGUF_FILE_NAME, baseUrl: null, apiKeyRef: null,
          upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 200_000,
        }],
      }, new Date(Date.now() - 60_000));
      const key = (await addTenantKey(stack.db, null, 'bench-llama')).secret;
      const url = stack.url;
      const prompt = 'Tell me about the durable queue worker.';
      // `stop: null` and greedy: the tiny model runs to max_tokens, so every stream has the same length.
      const body = { model: 'tiny-bench', messages: [{ role: 'user', content: prompt }], max_tokens: LLAMA_TOKENS, temperature: 0 };
      const direct = async () => {
        const t = performance.now();
        const arrivals: number[] = [];
        await backend.generate({
          messages: [{ role: 'user', content: prompt }], params: { maxTokens: LLAMA_TOKENS, temperature: 0, topP: null, seed: null, stop: null },
          signal: new AbortController().signal, onDelta: () => arrivals.push(performance.now() - t),
        });
        return { arrivals, total: performance.now() - t };
      };
      const viaSluice = async () => {
        const t = performance.now();
        const arrivals = await streamArrivals(url, key, body);
        return { arrivals, total: performance.now() - t };
      };
      for (let i = 0; i < 3; i++) {
        await viaSluice();
        await direct();
      }
      const s = { ttft: [] as number[], gaps: [] as number[], total: [] as number[], events: [] as number[] };
      const d = { ttft: [] as number[], gaps: [] as number[], total: [] as number[], events: [] as number[] };
      for (let i = 0; i < LLAMA_STREAMS; i++) {
        for (const [side, run] of [[s, viaSluice], [d, direct]] as const) {
          const r = await run();
          side.ttft.push(r.arrivals[0] ?? Number.NaN);
          side.gaps.push(...gaps(r.arrivals));
          side.total.push(r.total);
          side.events.push(r.arrivals.length);
        }
      }
      const side = (x: typeof s) => ({ ttft_ms: summary(x.ttft), gap_ms: summary(x.gaps), total_ms: summary(x.total), content_events_p50: percentile(x.events, 50) });
      const throughput: Array<Record<string, unknown>> = [];
      const sync = async () => {
        const t = performance.now();
        const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        await res.arrayBuffer();
        return performance.now() - t;
      };
      const streamed = async () => (await viaSluice()).total;
      for (const c of CONCURRENCIES) {
        const a = await measureLoad(sync, c, SECONDS, temporalPid);
        const b = await measureLoad(streamed, c, SECONDS, temporalPid);
        throughput.push({ concurrency: c, sync_rps: a.rps, stream_rps: b.rps, sync_errors: a.errors, stream_errors: b.errors, ratio: Math.round((b.rps / a.rps) * 100) / 100 });
        process.stderr.write(`llama c=${c}: ${JSON.stringify(throughput.at(-1))}\n`);
      }
      return { streams: LLAMA_STREAMS, max_tokens: LLAMA_TOKENS, threads: Number(THREADS), slots: 2, sluice: side(s), direct: side(d), throughput };
    });
  } finally {
    await backend.close();
    await llama.dispose();
  }
}

async function main() {
  const results: Record<string, unknown> = { machine: machine(), streams: STREAMS, chunks: CHUNKS, interval_ms: INTERVAL, seconds: SECONDS };
  await withBenchInfra('stream', { SLUICE_SLOTS: '64' }, async (bench) => {
    const { config, infra, temporalPid } = bench;
    const connection = await NativeConnection.connect({ address: infra.temporalAddress });
    try {
      const client = new Client({ connection, namespace: config.temporalNamespace });
      const floor = await measureFloor({ connection, client, namespace: config.temporalNamespace, temporalPid, requests: STREAMS, seconds: 1, concurrencies: [1] });
      results.floor_p50_ms = Object.fromEntries(Object.entries(floor).map(([k, v]) => [k, (v as { p50_ms: number }).p50_ms]));
    } finally {
      await connection.close();
    }
    await withStack(bench, {}, async (stack) => {
      await addInstantModel(stack.db);
      await createModel(stack.db, {
        id: 'paced', ownedBy: 'sluice', contextLength: 4096, maxOutputTokens: 1000,
        deployments: [{
          id: 'paced-bench', pool: 'bench', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null,
          upstreamModel: `stream-interval-ms:${INTERVAL}`, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 200_000,
        }],
      }, new Date(Date.now() - 60_000));
      const key = (await addTenantKey(stack.db)).secret;
      const url = stack.url;
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
    });
    if (LLAMA_STREAMS > 0) results.llama = await llamaPhase(bench);
  });
  printResults(results);
}

runBench(main);
