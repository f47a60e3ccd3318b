/**
 * Batched decoding on a model big enough to show it (issue 18): the generated ~100M-parameter
 * random llama model (`ensureBenchGguf`, Q8_0, ~106 MB, made on demand in the bench's temp dir),
 * tokens/s at 1, 2, 4 and 8 parallel sequences, two ways, alternating per width in one run:
 *  - direct: node-llama-cpp itself, one context of `width` sequences, `width` completions at once
 *    (its batch dispatcher decodes them together);
 *  - worker: the same number of sync chat requests at once through Sluice (API, workflow, the
 *    inference worker's slot queue, the activity and its heartbeats) with `SLUICE_SLOTS = width`.
 * Tokens are the completion tokens each side reports (the random model may stop early on its
 * end token); rate = all tokens of a round / the round's wall time, median over the rounds.
 *
 * Run: `npx tsx bench/llama-batched.ts [--widths 1,2,4,8] [--tokens 64] [--rounds 3] [--threads 2]`
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama, LlamaCompletion } from 'node-llama-cpp';
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
    tokens: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
  },
});
const WIDTHS = values.widths.split(',').map(Number);
const TOKENS = Number(values.tokens);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
/** Per sequence: the prompt, the completion and the chat template's few tokens fit. */
const CONTEXT = 256;
const prompt = (i: number) => `Request ${i}: tell me about the durable queue worker.`;

interface Round { tokens: number; ms: number }
const rate = (r: Round) => (r.tokens / r.ms) * 1000;

/** One round of `width` completions at once on node-llama-cpp directly. */
async function directRound(sequences: LlamaCompletion[], round: number): Promise<Round> {
  const t = performance.now();
  const counts = await Promise.all(sequences.map(async (completion, i) => {
    let tokens = 0;
    await completion.generateCompletion(prompt(round * 100 + i), { maxTokens: TOKENS, temperature: 0, onToken: (t) => { tokens += t.length; } });
    return tokens;
  }));
  return { tokens: counts.reduce((a, b) => a + b, 0), ms: performance.now() - t };
}

/** One round of `width` sync chat requests at once through Sluice. */
async function workerRound(url: string, key: string, width: number, round: number): Promise<Round> {
  const t = performance.now();
  const counts = await Promise.all(Array.from({ length: width }, async (_, i) => {
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
    tokens: TOKENS, rounds: ROUNDS, threads: THREADS,
  };
  const infra = await startInfra(loadConfig(env), log);
  try {
    for (const width of WIDTHS) {
      // Direct: one context of `width` sequences, loaded for this width only.
      const llama = await getLlama({ build: 'never', gpu: false });
      const direct: Round[] = [];
      try {
        const model = await llama.loadModel({ modelPath });
        const context = await model.createContext({ sequences: width, contextSize: CONTEXT, threads: THREADS });
        const contextSequences = Array.from({ length: width }, () => context.getSequence());
        const sequences = contextSequences.map((contextSequence) => new LlamaCompletion({ contextSequence }));
        await directRound(sequences, -1); // warm-up
        for (let r = 0; r < ROUNDS; r++) {
          for (const s of contextSequences) await s.clearHistory();
          direct.push(await directRound(sequences, r));
        }
      } finally {
        await llama.dispose();
      }
      // Worker: a stack whose inference worker has `width` slots, same threads and context.
      const config = loadConfig({ ...env, SLUICE_SLOTS: String(width), SLUICE_THREADS: String(THREADS), SLUICE_CONTEXT_SIZE: String(CONTEXT) });
      const stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: ['bench'], log });
      const worker: Round[] = [];
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
        await workerRound(url, key, width, -1); // warm-up (loads the model)
        for (let r = 0; r < ROUNDS; r++) worker.push(await workerRound(url, key, width, r));
      } finally {
        await stack.stop();
      }
      const med = (xs: Round[]) => Math.round(percentile(xs.map(rate), 50) * 10) / 10;
      const row = { width, direct_tokens_per_s: med(direct), worker_tokens_per_s: med(worker), worker_share: Math.round((med(worker) / med(direct)) * 100) / 100, direct_rounds: direct, worker_rounds: worker };
      rows.push(row);
      process.stderr.write(`width ${width}: direct ${row.direct_tokens_per_s} tok/s, worker ${row.worker_tokens_per_s} tok/s (${row.worker_share})\n`);
    }
    results.rows = rows;
  } finally {
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
