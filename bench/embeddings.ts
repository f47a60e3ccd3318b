/**
 * Embeddings throughput on the generated tiny model: inputs/s per request size (inputs per
 * request), through Sluice (`POST /v1/embeddings`: admit → embed activity → complete, on the
 * Temporal dev server and PostgreSQL) vs the llama.cpp backend's `embed` called directly, with the
 * same threads, side by side in one run. Real embedded PostgreSQL and Temporal dev server in a
 * temp dir; everything stops at the end.
 *
 * Run: `npx tsx bench/embeddings.ts [--sizes 1,8,32,128] [--requests 20] [--threads 1]`
 * Prints a JSON result.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama } from 'node-llama-cpp';
import { createLlamaCppBackend } from '../activities/backends/llama-cpp.js';
import { createModel } from '../db/repositories/models.js';
import { TINY_GGUF_FILE_NAME, ensureTinyGguf } from '../workers/llama/tiny-gguf.js';
import { percentile } from './stats.js';
import { addTenantKey, machine, runBench, withBenchInfra, withStack, printResults } from './setup.js';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '1,8,32,128' }, requests: { type: 'string', default: '20' }, threads: { type: 'string', default: '1' } },
});
const SIZES = values.sizes.split(',').map(Number);
const REQUESTS = Number(values.requests);
const THREADS = values.threads;
const CONTEXT = 512;

/** `size` distinct short texts (distinct so nothing is cached anywhere). */
function inputsOf(size: number, round: number): string[] {
  return Array.from({ length: size }, (_, i) => `benchmark input ${round} ${i} of the embeddings throughput run`);
}

/** Inputs per second of `n` sequential calls of `call(inputs)`, and the latency percentiles. */
async function measure(size: number, call: (inputs: string[]) => Promise<void>) {
  for (let i = 0; i < 3; i++) await call(inputsOf(size, -1 - i)); // warm-up
  const latencies: number[] = [];
  const started = performance.now();
  for (let r = 0; r < REQUESTS; r++) {
    const t = performance.now();
    await call(inputsOf(size, r));
    latencies.push(performance.now() - t);
  }
  const seconds = (performance.now() - started) / 1000;
  return { size, inputs_per_s: Math.round((size * REQUESTS) / seconds), p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99) };
}

async function main() {
  const results: Record<string, unknown> = { machine: machine(), requests: REQUESTS, threads: Number(THREADS), sizes: SIZES };
  await withBenchInfra('embeddings', { SLUICE_THREADS: THREADS, SLUICE_CONTEXT_SIZE: String(CONTEXT), SLUICE_SLOTS: '2' }, async (bench) => {
    const modelPath = await ensureTinyGguf(path.join(bench.dir, 'models'));
    const llama = await getLlama({ build: 'never', gpu: false });
    const backend = await createLlamaCppBackend({ modelPath, slots: 1, threads: Number(THREADS), contextSize: CONTEXT, llama });
    try {
      await withStack(bench, {}, async (stack) => {
        await createModel(stack.db, {
          id: 'bench-embed', ownedBy: 'sluice', contextLength: CONTEXT, maxOutputTokens: 1, kind: 'embeddings',
          deployments: [{
            id: 'bench-embed-bench', pool: 'bench', provider: 'llama-cpp', ggufPath: TINY_GGUF_FILE_NAME, baseUrl: null, apiKeyRef: null,
            upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 0,
          }],
        }, new Date());
        const key = (await addTenantKey(stack.db)).secret;
        const url = stack.url;
        const signal = new AbortController().signal;
        const direct = async (inputs: string[]) => {
          await backend.embed?.({ inputs, dimensions: null, maxPromptTokens: Number.MAX_SAFE_INTEGER, signal });
        };
        const viaSluice = async (inputs: string[]) => {
          const res = await fetch(`${url}/v1/embeddings`, {
            method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({ model: 'bench-embed', input: inputs, encoding_format: 'base64' }),
          });
          if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
          await res.arrayBuffer();
        };
        const rows = [];
        for (const size of SIZES) {
          const d = await measure(size, direct);
          const s = await measure(size, viaSluice);
          rows.push({ size, direct: d, sluice: s, sluice_share: Math.round((s.inputs_per_s / d.inputs_per_s) * 100) / 100 });
          process.stderr.write(`size ${size}: direct ${d.inputs_per_s}/s, sluice ${s.inputs_per_s}/s\n`);
        }
        results.rows = rows;
      });
    } finally {
      await backend.close();
      await llama.dispose();
    }
  });
  printResults(results);
}

runBench(main);
