/**
 * A/B: the same benchmark on an earlier commit (`--base`) and on this checkout, one after the other
 * in one run, so what a change costs is measured in the same minutes (this VM drifts ±2× between
 * hours). The base runs from a temporary `git worktree` sharing this checkout's node_modules and
 * `.tools`; both sides write their JSON, which this prints side by side and as one JSON document.
 *
 * `--rounds N` alternates the sides N times (base, head, base, head…: the VM drifts within a run
 * too); `--floor` also runs the pipeline's floor workflows (`temporal-floor.ts`, the same code on
 * both sides) first in each round, on its own dev server, so each round has its floor.
 *
 * Run: `npx tsx bench/ab.ts [--base REV] [--rounds N] [--floor] pipeline|batch|request-steps|llama-batched ...`
 * (`npm run bench -- ab-pipeline ab-batch`; `ab-sync`: the sync path against its floor, issue 18).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { machine } from './setup.js';

/** main on 2026-12-01 before the hardening (issue 12) and architecture (issue 19) work. */
export const DEFAULT_BASE = 'bb2c785';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The pipeline benchmark's own files, copied over the base's (they use nothing that differs between sides). */
const PIPELINE_INSTRUMENT = ['bench/pipeline.ts', 'bench/stats.ts', 'bench/setup.ts', 'bench/load-client.ts', 'bench/temporal-floor.ts'] as const;

/**
 * Each benchmark's command on both sides: the same mode on each, on a fresh dev server each (the
 * pipeline without its floor rows: workflows run before the measured ones made the dev server's
 * database larger, and each of its requests dearer, on one side only; `npm run bench -- pipeline`
 * has the floor).
 */
const COMMANDS: Record<string, { base: string[]; head: string[]; instrument?: readonly string[] }> = {
  // The measuring files are this checkout's on both sides (the load generator in its own process, PostgreSQL's CPU).
  pipeline: {
    base: ['bench/pipeline.ts', '--requests', '300', '--seconds', '10', '--modes', 'local'],
    head: ['bench/pipeline.ts', '--requests', '300', '--seconds', '10', '--modes', 'local'],
    instrument: PIPELINE_INSTRUMENT,
  },
  batch: {
    base: ['bench/batch.ts', '--lines', '10000'],
    head: ['bench/batch.ts', '--lines', '10000'],
  },
  // The response cache's hit and miss (`bench/cache.ts`, its own floor inside each side's run).
  cache: {
    base: ['bench/cache.ts', '--requests', '200', '--seconds', '5'],
    head: ['bench/cache.ts', '--requests', '200', '--seconds', '5'],
  },
  // The request's two local activities without Temporal: the instrument is this checkout's file on both sides.
  'request-steps': {
    base: ['bench/request-steps.ts', '--requests', '1000', '--rounds', '1'],
    head: ['bench/request-steps.ts', '--requests', '1000', '--rounds', '1'],
    instrument: ['bench/request-steps.ts', 'bench/stats.ts'],
  },
  // The same with the API's own statements around them (`--api`): all seven SQL statements of a sync request.
  'request-steps-api': {
    base: ['bench/request-steps.ts', '--requests', '1000', '--rounds', '1', '--api'],
    head: ['bench/request-steps.ts', '--requests', '1000', '--rounds', '1', '--api'],
    instrument: ['bench/request-steps.ts', 'bench/stats.ts'],
  },
  // Batched decoding (issue 18 target 3) at the widths where batching is in play, short (the
  // alternation gives the rounds): node-llama-cpp's default batching directly beside the worker,
  // interleaved: the instrument (this checkout's bench and the batching
  // strategy its `full` mode uses) is the same on both sides; only the worker's backend differs.
  'llama-batched': {
    base: ['bench/llama-batched.ts', '--widths', '2,4,8', '--tokens', '32', '--rounds', '1', '--threads', '1', '--modes', 'evaluate,worker'],
    head: ['bench/llama-batched.ts', '--widths', '2,4,8', '--tokens', '32', '--rounds', '1', '--threads', '1', '--modes', 'evaluate,worker'],
    instrument: ['bench/llama-batched.ts', 'activities/backends/llama-cpp/full-batches.ts'],
  },
  // The same at 2 threads and 64 tokens, for a quiet machine (one step's cost nearer flat over widths).
  'llama-batched-2t': {
    base: ['bench/llama-batched.ts', '--widths', '2,4,8', '--tokens', '64', '--rounds', '1', '--threads', '2', '--modes', 'evaluate,worker'],
    head: ['bench/llama-batched.ts', '--widths', '2,4,8', '--tokens', '64', '--rounds', '1', '--threads', '2', '--modes', 'evaluate,worker'],
    instrument: ['bench/llama-batched.ts', 'activities/backends/llama-cpp/full-batches.ts'],
  },
};

/** The floor workflows alone (`bench/pipeline.ts --modes floor`); fewer requests than a side's (three workflows to measure). */
const FLOOR_COMMAND = ['bench/pipeline.ts', '--requests', '150', '--seconds', '8', '--modes', 'floor'];

const { values, positionals } = parseArgs({
  options: { base: { type: 'string', default: DEFAULT_BASE }, rounds: { type: 'string', default: '1' }, floor: { type: 'boolean', default: false } },
  allowPositionals: true,
});
const ROUNDS = Number(values.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a positive integer');
const wanted = positionals.length > 0 ? positionals : Object.keys(COMMANDS);
for (const name of wanted) if (!COMMANDS[name]) throw new Error(`unknown benchmark '${name}' (have: ${Object.keys(COMMANDS).join(', ')})`);

function git(...args: string[]): string {
  return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
}

function run(cwd: string, args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`${args.join(' ')} in ${cwd} exited with ${code}`));
      // The result is the last JSON document printed (log lines of the stack's shutdown may precede it).
      const at = out.startsWith('{\n') ? 0 : out.lastIndexOf('\n{\n') + 1;
      try {
        resolve(JSON.parse(out.slice(at)));
      } catch {
        reject(new Error(`${args[0]} printed no JSON`));
      }
    });
  });
}

/** The one-activity floor's numbers of a `--modes floor` run (a missing one is null). */
function floorHeadline(r: any): Record<string, number | null> {
  const one = r.floor?.oneActivityWorkflow ?? {};
  const shaped = r.floor?.requestShapedWorkflow ?? {};
  const http = r.floor?.oneActivityHttp ?? {};
  const at = (w: any, c: number) => w.throughput?.find((t: any) => t.concurrency === c) ?? {};
  return {
    'one-activity p50 ms': one.p50_ms ?? null,
    'one-activity req/s c=32': at(one, 32).rps ?? null,
    'one-activity node cpu ms/req c=32': at(one, 32).cpu_ms_per_request?.node ?? null,
    'one-activity temporal cpu ms/req c=32': at(one, 32).cpu_ms_per_request?.temporal ?? null,
    'request-shaped p50 ms': shaped.p50_ms ?? null,
    'request-shaped req/s c=32': at(shaped, 32).rps ?? null,
    'request-shaped node cpu ms/req c=32': at(shaped, 32).cpu_ms_per_request?.node ?? null,
    'request-shaped temporal cpu ms/req c=32': at(shaped, 32).cpu_ms_per_request?.temporal ?? null,
    'one-activity behind HTTP p50 ms': http.p50_ms ?? null,
    'one-activity behind HTTP req/s c=32': at(http, 32).rps ?? null,
    'one-activity behind HTTP node cpu ms/req c=32': at(http, 32).cpu_ms_per_request?.node ?? null,
    'one-activity behind HTTP temporal cpu ms/req c=32': at(http, 32).cpu_ms_per_request?.temporal ?? null,
    'one-activity behind HTTP load generator cpu ms/req c=32': at(http, 32).cpu_ms_per_request?.load_generator ?? null,
  };
}

/** The numbers to compare, from either side's JSON (a missing one is null). */
function headline(name: string, r: any): Record<string, number | null> {
  if (name === 'pipeline') {
    const local = r.local_activities ?? {};
    const at = (c: number) => local.throughput?.find((t: any) => t.concurrency === c) ?? {};
    return {
      'pipeline p50 ms (one at a time)': local.pipeline_p50_ms ?? null,
      'overhead p50 ms (one at a time)': local.overhead_p50_ms ?? null,
      'overhead p99 ms (one at a time)': local.overhead_p99_ms ?? null,
      'req/s c=1': at(1).rps ?? null,
      'req/s c=8': at(8).rps ?? null,
      'req/s c=32': at(32).rps ?? null,
      'node cpu ms/req c=1': at(1).cpu_ms_per_request?.node ?? null,
      'temporal cpu ms/req c=1': at(1).cpu_ms_per_request?.temporal ?? null,
      'node cpu ms/req c=32': at(32).cpu_ms_per_request?.node ?? null,
      'temporal cpu ms/req c=32': at(32).cpu_ms_per_request?.temporal ?? null,
      'postgres cpu ms/req c=32': at(32).cpu_ms_per_request?.postgres ?? null,
      'load generator cpu ms/req c=32': at(32).cpu_ms_per_request?.load_generator ?? null,
    };
  }
  if (name === 'cache') {
    const rps = (rows: any[] | undefined, c: number) => rows?.find((t: any) => t.concurrency === c) ?? {};
    const hit32 = rps(r.throughput?.hit, 32);
    return {
      'hit p50 ms': r.latency?.hit?.p50_ms ?? null,
      'miss p50 ms': r.latency?.miss?.p50_ms ?? null,
      'hit req/s c=32': hit32.rps ?? null,
      'hit node cpu ms/req c=32': hit32.cpu_ms_per_request?.node ?? null,
      'hit temporal cpu ms/req c=32': hit32.cpu_ms_per_request?.temporal ?? null,
      'miss req/s c=32': rps(r.throughput?.miss, 32).rps ?? null,
      'one-activity floor req/s c=32': rps(r.floor?.oneActivityWorkflow?.throughput, 32).rps ?? null,
    };
  }
  if (name === 'request-steps' || name === 'request-steps-api') {
    const round = r.rounds?.[0] ?? {};
    return {
      'statements per request': round.statements_per_request ?? null,
      'parses per request': round.parses_per_request ?? null,
      'node cpu us/request': round.node_cpu_us_per_request ?? null,
      'postgres cpu us/request': round.postgres_cpu_us_per_request ?? null,
      'wall ms/request': round.wall_ms_per_request ?? null,
    };
  }
  if (name === 'llama-batched' || name === 'llama-batched-2t') {
    // Per width: the worker's median tokens/s, and its median ratio to the direct API of the same rounds.
    const rows: any[] = r.rows ?? [];
    return Object.fromEntries(rows.flatMap((row) => [
      [`w${row.width} worker tok/s`, row.tokens_per_s?.worker?.median ?? null],
      [`w${row.width} evaluate tok/s`, row.tokens_per_s?.evaluate?.median ?? null],
      [`w${row.width} worker / evaluate`, row.worker_over?.evaluate?.median ?? null],
    ]));
  }
  return {
    'lines/s running': r.lines_per_second_running ?? null,
    'lines/s end to end': r.lines_per_second_end_to_end ?? null,
    'node cpu ms/line': r.cpu_ms_per_line?.node_api_and_workers ?? null,
    'temporal cpu ms/line': r.cpu_ms_per_line?.temporal_dev_server ?? null,
  };
}

const baseRev = git('rev-parse', '--short', values.base);
const headRev = git('rev-parse', '--short', 'HEAD');
// Under the temp dir, world-traversable: as root, PostgreSQL runs as the postgres user.
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-ab-'));
await fs.chmod(tmp, 0o755);
const baseDir = path.join(tmp, 'base');
git('worktree', 'add', '--detach', baseDir, baseRev);
try {
  await fs.symlink(path.join(ROOT, 'node_modules'), path.join(baseDir, 'node_modules'));
  await fs.symlink(path.join(ROOT, '.tools'), path.join(baseDir, '.tools'));
  for (const name of wanted) {
    for (const file of COMMANDS[name]?.instrument ?? []) await fs.copyFile(path.join(ROOT, file), path.join(baseDir, file));
  }
  type Side = { base: unknown; head: unknown; compare: Record<string, { base: number | null; head: number | null }> };
  const results: Record<string, { rounds: Array<Side & { floor?: { result: unknown; headline: Record<string, number | null> } }> }> = {};
  for (const name of wanted) {
    const cmd = COMMANDS[name] as { base: string[]; head: string[] };
    results[name] = { rounds: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      let floor: { result: unknown; headline: Record<string, number | null> } | undefined;
      if (values.floor) {
        process.stderr.write(`ab ${name} round ${round}: floor\n`);
        const result = await run(ROOT, FLOOR_COMMAND);
        floor = { result, headline: floorHeadline(result) };
        for (const [k, v] of Object.entries(floor.headline)) process.stderr.write(`  ${k.padEnd(40)} ${String(v).padStart(9)}\n`);
      }
      process.stderr.write(`ab ${name} round ${round}: base ${baseRev}\n`);
      const base = await run(baseDir, cmd.base);
      process.stderr.write(`ab ${name} round ${round}: head ${headRev}\n`);
      const head = await run(ROOT, cmd.head);
      const b = headline(name, base);
      const h = headline(name, head);
      const side: Side = { base, head, compare: Object.fromEntries(Object.keys(h).map((k) => [k, { base: b[k] ?? null, head: h[k] ?? null }])) };
      results[name].rounds.push({ ...side, ...(floor ? { floor } : {}) });
      for (const [k, v] of Object.entries(side.compare)) process.stderr.write(`  ${k.padEnd(40)} ${String(v.base).padStart(9)} ${String(v.head).padStart(9)}\n`);
    }
  }
  // One round without a floor keeps the shape of the earlier result files (`ab-pipeline.txt`).
  const shaped = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.rounds.length === 1 && !values.floor ? v.rounds[0] : v]));
  process.stdout.write(JSON.stringify({ machine: machine(), base: baseRev, head: headRev, at: new Date().toISOString(), rounds: ROUNDS, results: shaped }, null, 2) + '\n');
} finally {
  git('worktree', 'remove', '--force', baseDir);
  await fs.rm(tmp, { recursive: true, force: true });
}
