/**
 * Reads the `.cpuprofile` files of `node --cpu-prof --cpu-prof-dir=DIR` (one per thread: the main
 * thread, and each workflow thread of the control worker) and prints, per file, where the samples'
 * self time went: the top functions and the top packages (`node_modules/<pkg>`, `sluice` for the
 * project's own files, `node:` for Node's internals, `(native)` for V8 and the SDK's Rust bridge).
 *
 * Run: `npx tsx bench/profile-summary.ts DIR [--top 25] [--from-s 0] [--window FROM,TO] [--per N]`
 * (`--from-s`: skip the first seconds of each profile, e.g. start-up and the workflow bundle's
 * webpack run; `--window`: only the samples between two instants in µs of the monotonic clock, a
 * load phase's `window_us` from `bench/stats.ts`; `--per N`: also each item's µs per request,
 * for the N requests that phase completed).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  /** µs of the monotonic clock (`process.hrtime`) when profiling started. */
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  options: {
    top: { type: 'string', default: '25' }, 'from-s': { type: 'string', default: '0' },
    window: { type: 'string' }, per: { type: 'string' },
  },
  allowPositionals: true,
});
const TOP = Number(values.top);
const FROM_US = Number(values['from-s']) * 1e6;
const WINDOW = values.window === undefined ? null : values.window.split(',').map(Number);
if (WINDOW !== null && (WINDOW.length !== 2 || WINDOW.some((n) => !Number.isFinite(n)))) throw new Error('--window FROM,TO: two numbers (µs)');
const PER = values.per === undefined ? null : Number(values.per);
if (PER !== null && !(PER > 0)) throw new Error('--per N: a positive number of requests');
const dir = positionals[0];
if (!dir) throw new Error('usage: profile-summary.ts DIR [--top N] [--from-s S]');

/** The package a script URL belongs to. */
function packageOf(url: string): string {
  if (url === '') return '(native)';
  if (url.startsWith('node:')) return 'node:';
  const at = url.lastIndexOf('node_modules/');
  if (at >= 0) {
    const rest = url.slice(at + 'node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  if (url.includes('workflow-bundle')) return '(workflow bundle)';
  return 'sluice';
}

function shortUrl(url: string): string {
  const at = url.lastIndexOf('node_modules/');
  if (at >= 0) return url.slice(at + 'node_modules/'.length);
  return url.replace(/^file:\/\/.*?\/(api|activities|db|domain|runtime|workflows|workers|contracts|scripts|bench)\//, '$1/');
}

function top(map: Map<string, number>, total: number): string[] {
  return [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP)
    .map(([k, us]) => `${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms${PER === null ? '' : `  ${(us / PER).toFixed(0).padStart(6)} µs/req`}  ${k}`);
}

for (const file of (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
  const profile = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let t = 0;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t < FROM_US) return;
    if (WINDOW !== null && (profile.startTime + t < (WINDOW[0] as number) || profile.startTime + t > (WINDOW[1] as number))) return;
    const node = byId.get(id);
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)' || functionName === '(program)' || functionName === '(garbage collector)') {
      byFunction.set(functionName, (byFunction.get(functionName) ?? 0) + dt);
      if (functionName !== '(idle)') byPackage.set(functionName, (byPackage.get(functionName) ?? 0) + dt);
      if (functionName !== '(idle)') total += dt;
      return;
    }
    const key = `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + dt);
    const pkg = packageOf(url);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + dt);
    total += dt;
  });
  byFunction.delete('(idle)');
  const perRequest = PER === null ? '' : `, ${(total / PER / 1000).toFixed(2)} ms per request`;
  process.stdout.write(`\n== ${file}: ${(total / 1000).toFixed(0)} ms busy (${(t / 1e6).toFixed(1)} s profiled${perRequest})\n-- by package\n`);
  process.stdout.write(top(byPackage, total).join('\n') + '\n-- by function (self time)\n');
  process.stdout.write(top(byFunction, total).join('\n') + '\n');
}
