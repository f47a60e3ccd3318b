/**
 * A/B: the same benchmark on an earlier commit (`--base`) and on this checkout, one after the other
 * in one run, so what a change costs is measured in the same minutes (this VM drifts ±2× between
 * hours). The base runs from a temporary `git worktree` sharing this checkout's node_modules and
 * `.tools`; both sides write their JSON, which this prints side by side and as one JSON document.
 *
 * Run: `npx tsx bench/ab.ts [--base REV] pipeline|batch ...` (`npm run bench -- ab-pipeline ab-batch`).
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

/**
 * Each benchmark's command on both sides: the same mode on each, on a fresh dev server each (the
 * pipeline without its floor rows: workflows run before the measured ones made the dev server's
 * database larger, and each of its requests dearer, on one side only; `npm run bench -- pipeline`
 * has the floor).
 */
const COMMANDS: Record<string, { base: string[]; head: string[] }> = {
  pipeline: {
    base: ['bench/pipeline.ts', '--requests', '300', '--seconds', '10', '--modes', 'local'],
    head: ['bench/pipeline.ts', '--requests', '300', '--seconds', '10', '--modes', 'local'],
  },
  batch: {
    base: ['bench/batch.ts', '--lines', '10000'],
    head: ['bench/batch.ts', '--lines', '10000'],
  },
};

const { values, positionals } = parseArgs({ options: { base: { type: 'string', default: DEFAULT_BASE } }, allowPositionals: true });
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
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`${args[0]} printed no JSON`));
      }
    });
  });
}

/** The numbers to compare, from either side's JSON (a missing one is null). */
function headline(name: string, r: any): Record<string, number | null> {
  if (name === 'pipeline') {
    const local = r.local_activities ?? {};
    const at = (c: number) => local.throughput?.find((t: any) => t.concurrency === c) ?? {};
    return {
      'overhead p50 ms (one at a time)': local.overhead_p50_ms ?? null,
      'overhead p99 ms (one at a time)': local.overhead_p99_ms ?? null,
      'req/s c=1': at(1).rps ?? null,
      'req/s c=32': at(32).rps ?? null,
      'node cpu ms/req c=32': at(32).cpu_ms_per_request?.node ?? null,
      'temporal cpu ms/req c=32': at(32).cpu_ms_per_request?.temporal ?? null,
    };
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
  const results: Record<string, { base: unknown; head: unknown; compare: Record<string, { base: number | null; head: number | null }> }> = {};
  for (const name of wanted) {
    const cmd = COMMANDS[name] as { base: string[]; head: string[] };
    process.stderr.write(`ab ${name}: base ${baseRev}\n`);
    const base = await run(baseDir, cmd.base);
    process.stderr.write(`ab ${name}: head ${headRev}\n`);
    const head = await run(ROOT, cmd.head);
    const b = headline(name, base);
    const h = headline(name, head);
    results[name] = { base, head, compare: Object.fromEntries(Object.keys(h).map((k) => [k, { base: b[k] ?? null, head: h[k] ?? null }])) };
    for (const [k, v] of Object.entries(results[name].compare)) process.stderr.write(`  ${k.padEnd(34)} ${String(v.base).padStart(9)} ${String(v.head).padStart(9)}\n`);
  }
  process.stdout.write(JSON.stringify({ machine: machine(), base: baseRev, head: headRev, at: new Date().toISOString(), results }, null, 2) + '\n');
} finally {
  git('worktree', 'remove', '--force', baseDir);
  await fs.rm(tmp, { recursive: true, force: true });
}
