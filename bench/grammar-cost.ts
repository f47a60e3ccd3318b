/**
 * Cost of grammar enforcement (`response_format`) on the generated tiny model: tokens/s of the
 * llama.cpp backend with no format, with `json_object` (node-llama-cpp's JSON grammar) and with a
 * `json_schema` (its JSON-schema grammar), through `createLlamaCppBackend` so the backend's own work
 * (grammar cache, UTF-8-only token bias, stop checks) is included. A schema's output ends when its
 * grammar completes, so the rate (tokens/s) is compared, not wall time; the first request of a
 * schema also builds its grammar, measured apart.
 *
 * Run (alone on the machine): `npx tsx bench/grammar-cost.ts [--threads 1] [--tokens 128] [--runs 5] [--warmup 2]`
 * Prints a JSON result, then a markdown table.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { getLlama } from 'node-llama-cpp';

import { createLlamaCppBackend, type LlamaCppBackend } from '../activities/backends/llama-cpp.js';
import type { ChatExtras } from '../contracts/chat.js';
import { ensureTinyGguf } from '../workers/llama/tiny-gguf.js';

interface BenchConfig {
  /** llama.cpp threads. @default 1 */
  threads: number;
  /** maxTokens of every request. @default 128 */
  tokens: number;
  /** Measured runs per case. @default 5 */
  runs: number;
  /** Unmeasured runs per case before measuring. @default 2 */
  warmup: number;
}

/** A bounded schema (no numbers: the JSON grammar lets a number run on). */
const SCHEMA = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    level: { type: 'string', enum: ['low', 'medium', 'high'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 4 },
    note: { type: 'string', maxLength: 32 },
  },
  required: ['ok', 'level', 'tags', 'note'],
  additionalProperties: false,
};

const CASES: Array<{ name: string; extras: ChatExtras | undefined }> = [
  { name: 'no format', extras: undefined },
  { name: 'json_object', extras: { response_format: { type: 'json_object' } } },
  { name: 'json_schema', extras: { response_format: { type: 'json_schema', json_schema: { name: 'bench', strict: true, schema: SCHEMA } } } },
];

function readConfig(argv: string[]): BenchConfig {
  const { values } = parseArgs({
    args: argv,
    options: { threads: { type: 'string', default: '1' }, tokens: { type: 'string', default: '128' }, runs: { type: 'string', default: '5' }, warmup: { type: 'string', default: '2' } },
  });
  const int = (name: keyof typeof values, min: number): number => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return value;
  };
  return { threads: int('threads', 1), tokens: int('tokens', 1), runs: int('runs', 1), warmup: int('warmup', 0) };
}

/** One request at temperature 1 (a fixed seed per run, so every case sees the same seeds). */
async function runOnce(backend: LlamaCppBackend, tokens: number, extras: ChatExtras | undefined, seed: number) {
  const start = performance.now();
  const result = await backend.generate({
    messages: [{ role: 'user', content: 'Describe the durable queue worker as JSON.' }],
    params: { maxTokens: tokens, temperature: 1, topP: null, seed, stop: null, ...(extras ? { extras } : {}) },
    signal: new AbortController().signal,
  });
  const ms = performance.now() - start;
  return { completionTokens: result.completionTokens, ms, tokensPerSecond: (result.completionTokens / ms) * 1000 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const config = readConfig(process.argv.slice(2));
  const modelPath = await ensureTinyGguf(join(tmpdir(), 'sluice-bench'));
  const llama = await getLlama({ build: 'never', gpu: false });
  const backend = await createLlamaCppBackend({ modelPath, slots: 1, threads: config.threads, contextSize: config.tokens + 256, llama });
  try {
    const results = [];
    for (const c of CASES) {
      const first = await runOnce(backend, config.tokens, c.extras, 0); // builds (and caches) the grammar
      for (let i = 0; i < config.warmup; i++) await runOnce(backend, config.tokens, c.extras, i + 1);
      const runs = [];
      for (let i = 0; i < config.runs; i++) runs.push(await runOnce(backend, config.tokens, c.extras, 100 + i));
      results.push({
        case: c.name, firstMs: first.ms, runs,
        medianTokensPerSecond: median(runs.map((r) => r.tokensPerSecond)),
        medianCompletionTokens: median(runs.map((r) => r.completionTokens)),
      });
    }
    console.log(JSON.stringify({ benchmark: 'grammar-cost', modelPath, config, results }, null, 2));
    const base = results[0]?.medianTokensPerSecond ?? Number.NaN;
    console.log(`\nllama.cpp tiny model, threads ${config.threads}, max ${config.tokens} tokens, ${config.runs} runs (median), ${config.warmup} warm-up\n`);
    console.log('| response_format | tokens/s | vs none | completion tokens | first request (grammar built) ms |');
    console.log('|---|---|---|---|---|');
    for (const r of results) {
      console.log(`| ${r.case} | ${r.medianTokensPerSecond.toFixed(0)} | ${(r.medianTokensPerSecond / base).toFixed(2)}× | ${r.medianCompletionTokens} | ${r.firstMs.toFixed(1)} |`);
    }
  } finally {
    await backend.close();
    await llama.dispose();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
