/**
 * Batched decoding on a model big enough to show it (issue 18): the generated ~100M-parameter
 * random llama model (`ensureBenchGguf`, Q8_0, ~106 MB, made on demand in the bench's temp dir),
 * tokens/s at 1, 2, 4 and 8 parallel sequences, three ways, one after the other per width in one run:
 *  - direct, evaluate: node-llama-cpp's sequence API itself (`LlamaContextSequence.evaluate`, the
 *    call Sluice's sampling loop makes), one context of `width` sequences decoding at once (its
 *    batch dispatcher decodes them together), on the same chat-templated prompt tokens the worker
 *    renders: the ceiling of what any server on node-llama-cpp can do;
 *  - direct, LlamaCompletion: node-llama-cpp's completion helper, the same way (an API that does
 *    more per token: not a ceiling);
 *  - worker: sync chat requests through Sluice (API, workflow, the inference worker's slot queue,
 *    the activity and its heartbeats) with `SLUICE_SLOTS = width`.
 * `depth`: generations per sequence per round. At depth 1 a round is `width` generations at once,
 * and the worker's round also waits for each request's way through the pipeline before and after
 * its slot (latency, not decode); at depth 2 a round is `2 × width` generations (direct: two in a
 * row on each sequence; worker: `2 × width` requests at once, so a slot's next request is already
 * queued when one ends, as on a loaded server).
 * Tokens are the completion tokens each side reports (the random model may stop early on its
 * end token); rate = all tokens of a round / the round's wall time, median over the rounds.
 *
 * Run: `npx tsx bench/llama-batched.ts [--widths 1,2,4,8] [--depths 1,2] [--tokens 64] [--rounds 3] [--threads 2]`
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama, LlamaCompletion, type LlamaContextSequence, type LlamaModel } from 'node-llama-cpp';
import { createPromptPreparer } from '../activities/backends/llama-cpp/prompt-preparer.js';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startInfra, startStack } from '../scripts/lib/system.js';
import { createModel } from '../db/repositories/models.js';
import { BENCH_GGUF_FILE_NAME, ensureBenchGguf } from '../workers/llama/tiny-gguf.js';
import { percentile } from './stats.js';
import { addTenantKey, benchEnv, machine, runBench } from './setup.js';

const { values } = parseArgs({
  options: {
    widths: { type: 'string', default: '1,2,4,8' },
    depths: { type: 'string', default: '1,2' },
    tokens: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
  },
});
const WIDTHS = values.widths.split(',').map(Number);
const DEPTHS = values.depths.split(',').map(Number);
const TOKENS = Number(values.tokens);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
/** Per sequence: the prompt, the completion and the chat template's few tokens fit. */
const CONTEXT = 256;
const prompt = (i: number) => `Request ${i}: tell me about the durable queue worker.`;

interface Round { tokens: number; ms: number }
const rate = (r: Round) => (r.tokens / r.ms) * 1000;

/** One round on node-llama-cpp's completion helper: `depth` completions in a row on each sequence, all sequences at once. */
async function completionRound(sequences: LlamaCompletion[], depth: number, round: number): Promise<Round> {
  const t = performance.now();
  const counts = await Promise.all(sequences.map(async (completion, i) => {
    let tokens = 0;
    for (let d = 0; d < depth; d++) {
      await completion.generateCompletion(prompt(round * 100 + i * depth + d), { maxTokens: TOKENS, temperature: 0, onToken: (t) => { tokens += t.length; } });
    }
    return tokens;
  }));
  return { tokens: counts.reduce((a, b) => a + b, 0), ms: performance.now() - t };
}

/**
 * One round on node-llama-cpp's sequence API: `depth` generations in a row on each sequence, all
 * sequences at once, greedy, on the prompt tokens the worker's chat template renders.
 */
async function evaluateRound(model: LlamaModel, sequences: LlamaContextSequence[], depth: number, round: number): Promise<Round> {
  const prepare = createPromptPreparer(model);
  const t = performance.now();
  const counts = await Promise.all(sequences.map(async (sequence, i) => {
    let tokens = 0;
    for (let d = 0; d < depth; d++) {
      const { tokens: promptTokens } = prepare([{ role: 'user', content: prompt(round * 100 + i * depth + d) }]);
      let generated = 0;
      for await (const _token of sequence.evaluate(promptTokens, { temperature: 0 })) {
        if (++generated >= TOKENS) break;
      }
      tokens += generated;
      await sequence.clearHistory();
    }
    return tokens;
  }));
  return { tokens: counts.reduce((a, b) => a + b, 0), ms: performance.now() - t };
}

/** One round of `width × depth` sync chat requests at once through Sluice. */
async function workerRound(url: string, key: string, width: number, depth: number, round: number): Promise<Round> {
  const t = performance.now();
  const counts = await Promise.all(Array.from({ length: width * depth }, async (_, i) => {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'bench-100m', messages: [{ role: 'user', content: prompt(round * 100 + i) }], max_tokens: TOKENS, temperature: 0 }),
    });
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
    const body = await res.json() as { usage: { completion_tokens: number } };
    return body.usage.completion_tokens;
  }));
  return { tokens: counts.reduce((a, b) => a + b, 0), ms: performance.now() - t };
}

async function main() {
  const log = createLogger('warn');
  const rows: Array<Record<string, unknown>> = [];
  const { dir, env } = await benchEnv('llama-batched');
  const modelsDir = path.join(dir, 'models');
  const generated = performance.now();
  const modelPath = await ensureBenchGguf(modelsDir);
  const results: Record<string, unknown> = {
    machine: machine(), model: { file: BENCH_GGUF_FILE_NAME, bytes: (await fs.stat(modelPath)).size, generated_ms: Math.round(performance.now() - generated) },
    tokens: TOKENS, rounds: ROUNDS, threads: THREADS, depths: DEPTHS,
  };
  const infra = await startInfra(loadConfig(env), log);
  try {
    for (const width of WIDTHS) {
      // Direct: one context of `width` sequences, loaded for this width only.
      const llama = await getLlama({ build: 'never', gpu: false });
      const evaluate = new Map<number, Round[]>();
      const completion = new Map<number, Round[]>();
      try {
        const model = await llama.loadModel({ modelPath });
        const context = await model.createContext({ sequences: width, contextSize: CONTEXT, threads: THREADS });
        const contextSequences = Array.from({ length: width }, () => context.getSequence());
        const sequences = contextSequences.map((contextSequence) => new LlamaCompletion({ contextSequence }));
        await evaluateRound(model, contextSequences, 1, -1); // warm-up
        for (const depth of DEPTHS) {
          const e: Round[] = [];
          const c: Round[] = [];
          for (let r = 0; r < ROUNDS; r++) {
            e.push(await evaluateRound(model, contextSequences, depth, r));
            for (const s of contextSequences) await s.clearHistory();
            c.push(await completionRound(sequences, depth, r));
            for (const s of contextSequences) await s.clearHistory();
          }
          evaluate.set(depth, e);
          completion.set(depth, c);
        }
      } finally {
        await llama.dispose();
      }
      // Worker: a stack whose inference worker has `width` slots, same threads and context.
      const config = loadConfig({ ...env, SLUICE_SLOTS: String(width), SLUICE_THREADS: String(THREADS), SLUICE_CONTEXT_SIZE: String(CONTEXT) });
      const stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: ['bench'], log });
      const worker = new Map<number, Round[]>();
      try {
        if (width === WIDTHS[0]) {
          await createModel(stack.db, {
            id: 'bench-100m', ownedBy: 'sluice', contextLength: CONTEXT, maxOutputTokens: TOKENS,
            deployments: [{
              id: 'bench-100m-bench', pool: 'bench', provider: 'llama-cpp', ggufPath: BENCH_GGUF_FILE_NAME, baseUrl: null, apiKeyRef: null,
              upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 200_000,
            }],
          }, new Date(Date.now() - 60_000));
        }
        const key = (await addTenantKey(stack.db, null, `bench-w${width}`)).secret;
        const url = stack.url as string;
        await workerRound(url, key, width, 1, -1); // warm-up (loads the model)
        for (const depth of DEPTHS) {
          const w: Round[] = [];
          for (let r = 0; r < ROUNDS; r++) w.push(await workerRound(url, key, width, depth, r));
          worker.set(depth, w);
        }
      } finally {
        await stack.stop();
      }
      const med = (xs: Round[]) => Math.round(percentile(xs.map(rate), 50) * 10) / 10;
      for (const depth of DEPTHS) {
        const e = evaluate.get(depth) as Round[];
        const c = completion.get(depth) as Round[];
        const w = worker.get(depth) as Round[];
        const row = {
          width, depth,
          evaluate_tokens_per_s: med(e), completion_tokens_per_s: med(c), worker_tokens_per_s: med(w),
          worker_share_of_evaluate: Math.round((med(w) / med(e)) * 100) / 100,
          worker_share_of_completion: Math.round((med(w) / med(c)) * 100) / 100,
          evaluate_rounds: e, completion_rounds: c, worker_rounds: w,
        };
        rows.push(row);
        process.stderr.write(`width ${width} depth ${depth}: evaluate ${row.evaluate_tokens_per_s}, LlamaCompletion ${row.completion_tokens_per_s}, worker ${row.worker_tokens_per_s} tok/s (${row.worker_share_of_evaluate} of evaluate)\n`);
      }
    }
    results.rows = rows;
  } finally {
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
