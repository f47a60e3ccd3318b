/**
 * Batched decoding on a model big enough to show it (issue 18 target 3): the generated
 * ~100M-parameter random llama model (`ensureBenchGguf`, Q8_0, ~106 MB, made on demand in the
 * bench's temp dir), tokens/s at 1, 2, 4 and 8 parallel sequences, in up to four modes:
 *  - `evaluate`: node-llama-cpp's sequence API (`LlamaContextSequence.evaluate`, the call Sluice's
 *    sampling loop makes), one context of `width` sequences with node-llama-cpp's default batching,
 *    on the chat-templated prompt tokens the worker renders;
 *  - `full`: the same on a context with the backend's batching strategy
 *    (activities/backends/llama-cpp/full-batches.ts: every generating sequence in every decode
 *    step): the ceiling of the worker's backend without the pipeline;
 *  - `completion`: node-llama-cpp's `LlamaCompletion` on the default context, the same prompt tokens
 *    and sampling (greedy, no repeat penalty), tokens read from the sequence's token meter;
 *  - `worker`: sync chat requests through Sluice (API, workflow, the inference worker's slot queue,
 *    the activity and its heartbeats) with `SLUICE_SLOTS = width` and the default settings
 *    (node-llama-cpp's default batching since the fifth session);
 *  - `worker-full-steps`: the same through a second inference worker (its own pool and model, same
 *    stack) with `SLUICE_LLAMA_FULL_STEPS=true`: the worker-side A/B of the backend's full-step
 *    strategy.
 * Noise: this VM drifts ±2× within minutes, so the modes are interleaved: for each width, both
 * direct contexts and the stack are up at once, and each round runs every mode once, in an order
 * rotated by one each round. What to read is the per-round ratio worker / direct mode (same
 * minutes), with its median and range over the rounds; each mode's median tokens/s is printed too.
 * `depth`: generations per sequence per round (direct: in a row on each sequence; worker:
 * `depth × width` requests at once, so at depth ≥ 2 a slot's next request is already queued, as
 * on a loaded server). Rate = all tokens of a round / the round's wall time.
 *
 * Run: `npx tsx bench/llama-batched.ts [--widths 1,2,4,8] [--depth 2] [--tokens 128] [--rounds 5]
 * [--threads 2] [--modes evaluate,full,completion,worker,worker-full-steps]`
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama, LlamaCompletion, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { createFullBatchStrategy } from '../activities/backends/llama-cpp/full-batches.js';
import { createPromptPreparer } from '../activities/backends/llama-cpp/prompt-preparer.js';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startInferenceOnly, startInfra, startStack } from '../scripts/lib/system.js';
import { createModel } from '../db/repositories/models.js';
import { BENCH_GGUF_FILE_NAME, ensureBenchGguf } from '../workers/llama/tiny-gguf.js';
import { percentile } from './stats.js';
import { addTenantKey, benchEnv, machine, runBench } from './setup.js';

const MODES = ['evaluate', 'full', 'completion', 'worker', 'worker-full-steps'] as const;
type Mode = (typeof MODES)[number];

const { values } = parseArgs({
  options: {
    widths: { type: 'string', default: '1,2,4,8' },
    depth: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '128' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    modes: { type: 'string', default: 'evaluate,full,completion,worker' },
  },
});
const WIDTHS = values.widths.split(',').map(Number);
const DEPTH = Number(values.depth);
const TOKENS = Number(values.tokens);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
const WANTED = values.modes.split(',') as Mode[];
for (const m of WANTED) if (!MODES.includes(m)) throw new Error(`unknown mode '${m}' (have: ${MODES.join(', ')})`);
/** Per sequence: the prompt, the completion and the chat template's few tokens fit. */
const CONTEXT = 256;
/** Tokens of each warm-up generation. */
const WARM_TOKENS = 8;
const prompt = (i: number) => `Request ${i}: tell me about the durable queue worker.`;

interface Round { tokens: number; ms: number }
const rate = (r: Round) => Math.round((r.tokens / r.ms) * 10_000) / 10;

/** `depth` generations in a row on each sequence, all sequences at once; `one` runs one and returns its tokens. */
async function directRound(sequences: readonly LlamaContextSequence[], round: number, one: (s: LlamaContextSequence, prompt: Token[]) => Promise<number>, prepare: (i: number) => Token[]): Promise<Round> {
  const t = performance.now();
  const counts = await Promise.all(sequences.map(async (sequence, i) => {
    let tokens = 0;
    for (let d = 0; d < DEPTH; d++) {
      tokens += await one(sequence, prepare(round * 100 + i * DEPTH + d));
      await sequence.clearHistory();
    }
    return tokens;
  }));
  return { tokens: counts.reduce((a, b) => a + b, 0), ms: performance.now() - t };
}

/** Greedy generation on the sequence API, up to TOKENS (or its end token). */
async function evaluateOne(sequence: LlamaContextSequence, promptTokens: Token[], tokens = TOKENS): Promise<number> {
  let generated = 0;
  for await (const _token of sequence.evaluate(promptTokens, { temperature: 0 })) {
    if (++generated >= tokens) break;
  }
  return generated;
}

/** Greedy generation through `LlamaCompletion`; its tokens as the sequence's meter counts them. */
async function completionOne(completions: Map<LlamaContextSequence, LlamaCompletion>, sequence: LlamaContextSequence, promptTokens: Token[]): Promise<number> {
  const before = sequence.tokenMeter.usedOutputTokens;
  await (completions.get(sequence) as LlamaCompletion).generateCompletion(promptTokens, { maxTokens: TOKENS, temperature: 0, repeatPenalty: false });
  return sequence.tokenMeter.usedOutputTokens - before;
}

/** `depth × width` sync chat requests at once through Sluice. */
async function workerRound(url: string, key: string, width: number, round: number, depth = DEPTH, tokens = TOKENS, model = 'bench-100m'): Promise<Round> {
  const t = performance.now();
  const counts = await Promise.all(Array.from({ length: width * depth }, async (_, i) => {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt(round * 100 + i) }], max_tokens: tokens, temperature: 0 }),
    });
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
    const body = await res.json() as { usage: { completion_tokens: number } };
    return body.usage.completion_tokens;
  }));
  return { tokens: counts.reduce((a, b) => a + b, 0), ms: performance.now() - t };
}

/** Median and range of `xs`, rounded. */
function spread(xs: readonly number[]) {
  const r = (x: number) => Math.round(x * 100) / 100;
  return { median: r(percentile(xs, 50)), min: r(Math.min(...xs)), max: r(Math.max(...xs)) };
}

async function main() {
  const started = performance.now();
  const log = createLogger('warn');
  const rows: Array<Record<string, unknown>> = [];
  const { dir, env } = await benchEnv('llama-batched');
  const generatedAt = performance.now();
  const modelPath = await ensureBenchGguf(path.join(dir, 'models'));
  const results: Record<string, unknown> = {
    machine: machine(), load_average_start: os.loadavg().map((x) => Math.round(x * 100) / 100), at: new Date().toISOString(),
    model: { file: BENCH_GGUF_FILE_NAME, bytes: (await fs.stat(modelPath)).size, generated_ms: Math.round(performance.now() - generatedAt) },
    tokens: TOKENS, rounds: ROUNDS, threads: THREADS, depth: DEPTH, modes: WANTED,
  };
  const infra = await startInfra(loadConfig(env), log);
  const llama = await getLlama({ build: 'never', gpu: false });
  try {
    const model: LlamaModel = await llama.loadModel({ modelPath });
    const prepareChat = createPromptPreparer(model);
    const prepare = (i: number) => prepareChat([{ role: 'user', content: prompt(i) }]).tokens;
    for (const width of WIDTHS) {
      // Direct: node-llama-cpp's default batching, and the backend's full steps (its own count of generating sequences).
      let generating = 0;
      const plain = await model.createContext({ sequences: width, contextSize: CONTEXT, threads: THREADS });
      const full = await model.createContext({
        sequences: width, contextSize: CONTEXT, threads: THREADS,
        batching: { itemPrioritizationStrategy: createFullBatchStrategy({ generating: () => generating }) },
      });
      const plainSequences = Array.from({ length: width }, () => plain.getSequence());
      const fullSequences = Array.from({ length: width }, () => full.getSequence());
      const completions = new Map(plainSequences.map((contextSequence) => [contextSequence, new LlamaCompletion({ contextSequence })]));
      // Worker: a stack whose inference worker has `width` slots, same threads and context.
      const config = loadConfig({ ...env, SLUICE_SLOTS: String(width), SLUICE_THREADS: String(THREADS), SLUICE_CONTEXT_SIZE: String(CONTEXT) });
      const workers = WANTED.includes('worker') || WANTED.includes('worker-full-steps');
      // Started inside the try: whatever started before a failure is stopped by its finally.
      let stack: Awaited<ReturnType<typeof startStack>> | null = null;
      let fullSteps: Awaited<ReturnType<typeof startInferenceOnly>> | null = null;
      try {
        if (workers) {
          stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: WANTED.includes('worker') ? ['bench'] : [], log });
        }
        if (WANTED.includes('worker-full-steps')) {
          fullSteps = await startInferenceOnly(loadConfig({ ...env, SLUICE_SLOTS: String(width), SLUICE_THREADS: String(THREADS), SLUICE_CONTEXT_SIZE: String(CONTEXT), SLUICE_LLAMA_FULL_STEPS: 'true' }), { temporalAddress: infra.temporalAddress, pools: ['bench-full-steps'], log });
        }
        let key = '';
        if (stack !== null) {
          if (width === WIDTHS[0]) {
            for (const [id, pool] of [['bench-100m', 'bench'], ['bench-100m-full-steps', 'bench-full-steps']] as const) {
              await createModel(stack.db, {
                id, ownedBy: 'sluice', contextLength: CONTEXT, maxOutputTokens: TOKENS,
                deployments: [{
                  id: `${id}-${pool}`, pool, provider: 'llama-cpp', ggufPath: BENCH_GGUF_FILE_NAME, baseUrl: null, apiKeyRef: null,
                  upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 200_000,
                }],
              }, new Date(Date.now() - 60_000));
            }
          }
          key = (await addTenantKey(stack.db, null, `bench-w${width}`)).secret;
        }
        const run: Record<Mode, (round: number) => Promise<Round>> = {
          evaluate: (round) => directRound(plainSequences, round, evaluateOne, prepare),
          full: (round) => directRound(fullSequences, round, async (s, p) => {
            generating++;
            try {
              return await evaluateOne(s, p);
            } finally {
              generating--;
            }
          }, prepare),
          completion: (round) => directRound(plainSequences, round, (s, p) => completionOne(completions, s, p), prepare),
          worker: (round) => workerRound(stack?.url as string, key, width, round),
          'worker-full-steps': (round) => workerRound(stack?.url as string, key, width, round, DEPTH, TOKENS, 'bench-100m-full-steps'),
        };
        // Warm-up, a short round of each mode (the worker's loads the model).
        await Promise.all(plainSequences.map(async (s) => evaluateOne(s, prepare(-1), WARM_TOKENS).then(() => s.clearHistory())));
        await Promise.all(fullSequences.map(async (s) => evaluateOne(s, prepare(-1), WARM_TOKENS).then(() => s.clearHistory())));
        if (stack !== null && WANTED.includes('worker')) await workerRound(stack.url as string, key, width, -1, 1, WARM_TOKENS);
        if (fullSteps !== null) await workerRound(stack?.url as string, key, width, -1, 1, WARM_TOKENS, 'bench-100m-full-steps');
        const rounds: Array<{ order: Mode[] } & Partial<Record<Mode, Round & { tokens_per_s: number }>>> = [];
        for (let r = 0; r < ROUNDS; r++) {
          const order = WANTED.map((_, i) => WANTED[(i + r) % WANTED.length] as Mode);
          const round: (typeof rounds)[number] = { order };
          for (const mode of order) {
            const result = await run[mode](r);
            round[mode] = { ...result, ms: Math.round(result.ms), tokens_per_s: rate(result) };
          }
          rounds.push(round);
          process.stderr.write(`width ${width} round ${r + 1}: ${order.map((m) => `${m} ${round[m]?.tokens_per_s}`).join(', ')} tok/s\n`);
        }
        const tokensPerS = Object.fromEntries(WANTED.map((m) => [m, spread(rounds.map((x) => x[m]?.tokens_per_s ?? Number.NaN))]));
        // Per round: the worker over each direct mode of the same round.
        const workerOver = WANTED.includes('worker')
          ? Object.fromEntries(WANTED.filter((m) => m !== 'worker').map((m) => [m, spread(rounds.map((x) => (x.worker?.tokens_per_s ?? Number.NaN) / (x[m]?.tokens_per_s ?? Number.NaN)))]))
          : {};
        const fullOverEvaluate = WANTED.includes('full') && WANTED.includes('evaluate')
          ? spread(rounds.map((x) => (x.full?.tokens_per_s ?? Number.NaN) / (x.evaluate?.tokens_per_s ?? Number.NaN)))
          : null;
        const fullStepsOver = WANTED.includes('worker-full-steps')
          ? Object.fromEntries(WANTED.filter((m) => m !== 'worker-full-steps').map((m) => [m, spread(rounds.map((x) => (x['worker-full-steps']?.tokens_per_s ?? Number.NaN) / (x[m]?.tokens_per_s ?? Number.NaN)))]))
          : {};
        rows.push({ width, tokens_per_s: tokensPerS, worker_over: workerOver, worker_full_steps_over: fullStepsOver, full_over_evaluate: fullOverEvaluate, rounds });
        const ratios = (name: string, over: Record<string, { median: number; min: number; max: number }>) =>
          Object.keys(over).length === 0 ? '' : `; ${name} / ${Object.entries(over).map(([m, s]) => `${m} ${s.median} (${s.min}–${s.max})`).join(', ')}`;
        process.stderr.write(`width ${width}: median tok/s ${WANTED.map((m) => `${m} ${tokensPerS[m]?.median}`).join(', ')}${ratios('worker', workerOver)}${ratios('worker-full-steps', fullStepsOver)}\n`);
      } finally {
        await fullSteps?.stop();
        await stack?.stop();
        await plain.dispose();
        await full.dispose();
      }
    }
    results.rows = rows;
  } finally {
    await llama.dispose();
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  results.load_average_end = os.loadavg().map((x) => Math.round(x * 100) / 100);
  results.duration_s = Math.round((performance.now() - started) / 1000);
  process.stderr.write(`llama-batched: ${results.duration_s} s\n`);
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
