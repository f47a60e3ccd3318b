/**
 * Throughput of the llama.cpp backend on the generated tiny model: 1 sequence vs N parallel
 * sequences in one context (batched decoding), through `createLlamaCppBackend` so the backend's own
 * overhead (queueing, stop checks, detokenizing) is included.
 *
 * Run: `npx tsx bench/llama-throughput.ts [--threads 2] [--parallel 4] [--tokens 64] [--runs 5] [--warmup 2]`
 * Prints a JSON result, then a markdown table.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { getLlama, type Llama } from 'node-llama-cpp';

import { createLlamaCppBackend, type LlamaCppBackend } from '../activities/backends/llama-cpp.js';
import type { GenerateRequest } from '../activities/backends/types.js';
import { ensureTinyGguf } from '../workers/llama/tiny-gguf.js';

/** Benchmark settings, from the command line. */
interface BenchConfig {
  /** llama.cpp threads. @default 2 */
  threads: number;
  /** Sequences run at once in the parallel case. @default 4 */
  parallel: number;
  /** maxTokens of every request. @default 64 */
  tokens: number;
  /** Measured runs per case. @default 5 */
  runs: number;
  /** Unmeasured runs per case before measuring. @default 2 */
  warmup: number;
}

/** One measured run: every request of the case started together. */
interface RunResult {
  completionTokens: number;
  ms: number;
  tokensPerSecond: number;
}

/** All runs of one case (a number of sequences). */
interface CaseResult {
  sequences: number;
  runs: RunResult[];
  medianTokensPerSecond: number;
  medianMs: number;
}

/** Reads the command line into a {@link BenchConfig}. */
function readConfig(argv: string[]): BenchConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      threads: { type: 'string', default: '2' },
      parallel: { type: 'string', default: '4' },
      tokens: { type: 'string', default: '64' },
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '2' },
    },
  });
  const int = (name: keyof typeof values, min: number): number => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return value;
  };
  return {
    threads: int('threads', 1),
    parallel: int('parallel', 1),
    tokens: int('tokens', 1),
    runs: int('runs', 1),
    warmup: int('warmup', 0),
  };
}

/** A greedy request for `maxTokens` tokens, without stop strings. */
function benchRequest(maxTokens: number, index: number): GenerateRequest {
  return {
    messages: [{ role: 'user', content: `Request ${index}: tell me about the durable queue worker.` }],
    params: { maxTokens, temperature: 0, topP: null, seed: null, stop: null },
    signal: new AbortController().signal,
  };
}

/** Runs `sequences` requests at once and measures wall time and generated tokens. */
async function runOnce(backend: LlamaCppBackend, sequences: number, tokens: number): Promise<RunResult> {
  const start = performance.now();
  const results = await Promise.all(
    Array.from({ length: sequences }, (_, index) => backend.generate(benchRequest(tokens, index))),
  );
  const ms = performance.now() - start;
  const completionTokens = results.reduce((sum, result) => sum + result.completionTokens, 0);
  return { completionTokens, ms, tokensPerSecond: (completionTokens / ms) * 1000 };
}

/** Median of a non-empty list. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Benchmarks one case on a fresh backend with `sequences` slots. */
async function runCase(llama: Llama, modelPath: string, config: BenchConfig, sequences: number): Promise<CaseResult> {
  const contextSize = config.tokens + 256;
  const backend = await createLlamaCppBackend({ modelPath, slots: sequences, threads: config.threads, contextSize, llama });
  try {
    for (let i = 0; i < config.warmup; i++) await runOnce(backend, sequences, config.tokens);
    const runs: RunResult[] = [];
    for (let i = 0; i < config.runs; i++) runs.push(await runOnce(backend, sequences, config.tokens));
    return {
      sequences,
      runs,
      medianTokensPerSecond: median(runs.map((run) => run.tokensPerSecond)),
      medianMs: median(runs.map((run) => run.ms)),
    };
  } finally {
    await backend.close();
  }
}

/** The markdown summary of the cases. */
function markdownTable(config: BenchConfig, cases: CaseResult[]): string {
  const rows = cases.map(
    (result) =>
      `| ${result.sequences} | ${config.tokens} | ${result.medianMs.toFixed(1)} | ${result.medianTokensPerSecond.toFixed(0)} |`,
  );
  return [
    `llama.cpp tiny model, threads ${config.threads}, ${config.runs} runs (median), ${config.warmup} warm-up`,
    '',
    '| sequences | max tokens each | wall ms | tokens/s |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** Generates the model, runs both cases, prints JSON and the table. */
async function main(): Promise<void> {
  const config = readConfig(process.argv.slice(2));
  const modelPath = await ensureTinyGguf(join(tmpdir(), 'sluice-bench'));
  const llama = await getLlama({ build: 'never', gpu: false });
  try {
    const cases = [await runCase(llama, modelPath, config, 1), await runCase(llama, modelPath, config, config.parallel)];
    const [single, parallel] = cases;
    const speedup = single && parallel ? parallel.medianTokensPerSecond / single.medianTokensPerSecond : null;
    console.log(JSON.stringify({ benchmark: 'llama-throughput', modelPath, config, cases, speedup }, null, 2));
    console.log();
    console.log(markdownTable(config, cases));
    if (speedup !== null) console.log(`\nspeedup ${config.parallel} vs 1 sequence: ${speedup.toFixed(2)}x`);
  } finally {
    await llama.dispose();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
