/**
 * `npm run bench`: every benchmark in turn, each in its own process so they do not share a heap
 * or a CPU. Prints each one's output and writes it to bench/results/<name>.txt. Numbers and the
 * machine they were measured on go into BENCHMARKS.md by hand (they are not asserted anywhere).
 *
 * `npm run bench -- pipeline` runs only the named ones; `batch-100k` (15 minutes here), `batch-1m`
 * (about 25–50 minutes), `soak` (11 minutes), `cluster` and the A/B runs against an earlier commit
 * (`ab-pipeline`, `ab-batch`, `ab-sync`: bench/ab.ts) run only when named.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const BENCHMARKS: Record<string, string[]> = {
  pipeline: ['bench/pipeline.ts', '--requests', '300', '--seconds', '10'],
  quota: ['bench/quota.ts', '--requests', '400'],
  batch: ['bench/batch.ts', '--lines', '10000'],
  'batch-100k': ['bench/batch.ts', '--lines', '100000'],
  'batch-1m': ['bench/batch.ts', '--lines', '1000000'],
  'batch-sync': ['bench/batch.ts', '--lines', '5000', '--sync-probe'],
  'stream-channel': ['bench/stream-channel.ts', '--chunks', '400'],
  stream: ['bench/stream.ts', '--streams', '40', '--chunks', '20', '--interval', '10', '--seconds', '5'],
  billing: ['bench/billing.ts', '--rows', '1000000', '--tenants', '100'],
  'slo-report': ['bench/slo-report.ts', '--rows', '1000000', '--tenants', '100', '--runs', '5'],
  'ab-pipeline': ['bench/ab.ts', 'pipeline'],
  'ab-batch': ['bench/ab.ts', 'batch'],
  'ab-batch-chunk': ['bench/ab.ts', '--base', '556efdd', '--rounds', '2', 'batch'],
  // Issue 18 target 2, the chunk's SQL (migration 0831) against the start of 2026-12-02's second session.
  'ab-batch-b1': ['bench/ab.ts', '--base', '2d6f8c1', '--rounds', '2', 'batch'],
  // Issue 18 target 2, third session: batch pages of whole chunks (patched 'batch-chunk-pages') against that session's start.
  'ab-batch-b2': ['bench/ab.ts', '--base', '5c630ee', '--rounds', '2', 'batch'],
  // Issue 18 target 2, fourth session (h-b): the batch path against that session's start.
  'ab-batch-b3': ['bench/ab.ts', '--base', '9ae16af', '--rounds', '2', 'batch'],
  // Four chunks in flight and 2,048 lines per run, named (h-b's sweep; the defaults since 2026-12-03).
  'batch-c1024': ['bench/batch.ts', '--lines', '10000', '--concurrency', '1024', '--per-run', '2048'],
  // The same two, 5,000 lines, with another tenant's sync requests before and during each batch.
  'batch-sync-sweep': ['bench/batch-sweep.ts', '--lines', '5000', '--rounds', '2', '--sync-probe'],
  // The former defaults (512 in flight, 1,000 per run) against 1,024 / 2,048 (the defaults since 2026-12-03) on this checkout, alternating, three rounds.
  'batch-sweep': ['bench/batch-sweep.ts', '--rounds', '3', '--lines', '10000', '--configs', '512/1000,1024/2048'],
  'chunk-sql': ['bench/chunk-sql.ts', '--lines', '256', '--chunks', '20', '--rounds', '2'],
  'round-trips': ['bench/round-trips.ts', '--requests', '20'],
  'ab-sync': ['bench/ab.ts', '--base', '556efdd', '--rounds', '2', '--floor', 'pipeline'],
  // The workflow threads' side of issue 18 target 1 (2026-12-02, second session) against that session's start.
  'ab-sync-workflows': ['bench/ab.ts', '--base', '2d6f8c1', '--rounds', '2', '--floor', 'pipeline'],
  // The sync path's main thread, SQL and PostgreSQL (2026-12-02, third session, S-A) against that session's start.
  'ab-sync-main': ['bench/ab.ts', '--base', '5c630ee', '--rounds', '2', '--floor', 'pipeline'],
  'ab-request-steps-main': ['bench/ab.ts', '--base', '5c630ee', '--rounds', '2', 'request-steps'],
  'request-steps': ['bench/request-steps.ts', '--requests', '2000', '--rounds', '3'],
  // Issue 18 target 1, fourth session (S1): the sync path's main thread against that session's start,
  // end to end against the floor, and all seven statements of a sync request without Temporal or HTTP.
  'ab-sync-s1': ['bench/ab.ts', '--base', '9ae16af', '--rounds', '2', '--floor', 'pipeline'],
  'ab-request-steps-s1': ['bench/ab.ts', '--base', '9ae16af', '--rounds', '2', 'request-steps-api'],
  // S-B (2026-12-02, third session): a cache hit's completion in one statement, against 5c630ee.
  'ab-cache-hit': ['bench/ab.ts', '--base', '5c630ee', '--rounds', '2', 'cache'],
  'ab-request-steps': ['bench/ab.ts', '--base', '556efdd', '--rounds', '3', 'request-steps'],
  'llama-threads-1': ['bench/llama-throughput.ts', '--threads', '1', '--parallel', '4', '--tokens', '64', '--runs', '5'],
  'llama-threads-2': ['bench/llama-throughput.ts', '--threads', '2', '--parallel', '4', '--tokens', '64', '--runs', '5'],
  embeddings: ['bench/embeddings.ts', '--sizes', '1,8,32,128', '--requests', '20', '--threads', '1'],
  'grammar-cost': ['bench/grammar-cost.ts', '--threads', '1', '--tokens', '128', '--runs', '5', '--warmup', '2'],
  'llama-batched': ['bench/llama-batched.ts', '--widths', '1,2,4,8', '--tokens', '128', '--rounds', '5', '--threads', '2'],
  // Whether the backend's full decode steps pay (issue 18 target 3): the direct default batching, the direct full steps and the worker, interleaved, 2 threads.
  'llama-batched-full': ['bench/llama-batched.ts', '--widths', '1,2,4,8', '--tokens', '64', '--rounds', '3', '--threads', '2', '--modes', 'evaluate,full,worker'],
  // One sync request's wall time span by span (history event times), against the one-activity and request-shaped floors, with each statement's round trip (issue 18 target 1).
  'sync-timeline': ['bench/sync-timeline.ts', '--rounds', '5', '--block', '20', '--warmup', '20'],
  // SLUICE_EARLY_ANSWER off and on, each both first and second, after the floors on the same dev server (issue 18 target 1).
  'early-answer': ['bench/pipeline.ts', '--requests', '200', '--seconds', '10', '--modes', 'floor,local,early,early,local', '--floors', 'oneActivityWorkflow,requestShapedWorkflow'],
  // Issue 18 target 3 on the final code: every width, 128 tokens (longer rounds than the 64 of llama-batched-full: less of this VM's second-to-second noise per round), 5 rounds.
  'llama-batched-final': ['bench/llama-batched.ts', '--widths', '1,2,4,8', '--tokens', '128', '--rounds', '5', '--threads', '2', '--modes', 'evaluate,full,worker'],
  // Width 1 alone, more rounds (issue 18 target 3: its median sat at 0.89 in a 3-round run, with rounds 0.84-1.38).
  'llama-batched-w1': ['bench/llama-batched.ts', '--widths', '1', '--tokens', '64', '--rounds', '9', '--threads', '2', '--modes', 'evaluate,full,worker'],
  // The backend's full decode steps on and off through the worker (two inference workers in one stack), with both direct modes, interleaved.
  'llama-full-steps-ab': ['bench/llama-batched.ts', '--widths', '2,4,8', '--tokens', '64', '--rounds', '3', '--threads', '2', '--modes', 'evaluate,full,worker,worker-full-steps'],
  // Issue 18 target 3, full decode steps in the llama.cpp backend (2026-12-02, h-l) against that session's start.
  'ab-llama-batched': ['bench/ab.ts', '--base', '5c630ee', '--rounds', '2', 'llama-batched'],
  // The same A/B at 2 threads and 64 tokens (2026-12-02, fourth session: the quiet run the third asked for).
  'ab-llama-batched-2t': ['bench/ab.ts', '--base', '5c630ee', '--rounds', '2', 'llama-batched-2t'],
  // R (2026-12-02, fourth session): the backend counts a request as generating only inside its sampling loop, against that session's start.
  'ab-llama-sampling-count': ['bench/ab.ts', '--base', '9ae16af', '--rounds', '2', 'llama-batched-2t'],
  // Issue 18 target 1, fourth session (S2): where the dev server's CPU per sync request goes (the request-shaped floor plus one of Sluice's costs at a time).
  'floor-decompose': ['bench/floor-decompose.ts', '--rounds', '3', '--seconds', '8', '--concurrency', '32'],
  // Issue 18 target 1, fourth session (S2): the sync request's history shape, against that session's start.
  'ab-sync-s2': ['bench/ab.ts', '--base', '9ae16af', '--rounds', '2', '--floor', 'pipeline'],
  cache: ['bench/cache.ts', '--requests', '200', '--seconds', '5'],
  cluster: ['bench/cluster.ts', '--seconds', '5', '--lines', '200', '--floor-requests', '50'],
  tracing: ['bench/tracing.ts', '--requests', '200', '--rounds', '2'],
  'experiment-results': ['bench/experiment-results.ts', '--exposures', '1000000', '--runs', '3'],
  soak: ['bench/soak.ts', '--minutes', '10', '--concurrency', '8', '--peak-concurrency', '32', '--peak-seconds', '60', '--go-gctrace'],
};

async function run(name: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      process.stdout.write(c);
    });
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${name} exited with ${code}`))));
  });
}

/** Run only when named. */
const ON_REQUEST = new Set(['batch-100k', 'batch-1m', 'ab-pipeline', 'ab-batch', 'ab-batch-chunk', 'ab-batch-b1', 'ab-batch-b2', 'ab-sync', 'ab-sync-workflows', 'ab-request-steps', 'cluster', 'soak', 'ab-sync-main', 'ab-request-steps-main', 'ab-llama-batched', 'ab-llama-batched-2t', 'ab-cache-hit', 'ab-llama-sampling-count', 'floor-decompose', 'ab-sync-s2', 'ab-sync-s1', 'ab-request-steps-s1', 'ab-batch-b3', 'batch-c1024', 'batch-sweep', 'llama-batched-full', 'batch-sync-sweep', 'llama-full-steps-ab', 'llama-batched-w1', 'llama-batched-final', 'early-answer']);

const wanted = process.argv.slice(2);
await fs.mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
for (const [name, args] of Object.entries(BENCHMARKS)) {
  if (wanted.length > 0 ? !wanted.includes(name) : ON_REQUEST.has(name)) continue;
  process.stdout.write(`\n=== ${name}: node --import tsx ${args.join(' ')}\n`);
  const out = await run(name, args);
  await fs.writeFile(path.join(ROOT, 'bench/results', `${name}.txt`), out);
}
