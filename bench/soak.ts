/**
 * Memory under load (issue 18, target 4): a steady sync load for `--minutes` (default 10) against
 * Sluice running as its own process(es), sampling every `--sample` seconds the memory of each:
 *  - the Sluice Node process(es): RSS (/proc) and V8 heap used/total and external memory (their
 *    prom-client metrics listener). `--shape one` is `npm start` (API, control worker and the
 *    inference worker in one process); `--shape split` runs `npm run worker:control`, `npm run api`
 *    and `npm run worker:inference` as three processes;
 *  - the Temporal dev server: RSS;
 *  - PostgreSQL: the postmaster's RSS and the whole tree's PSS (backends share the buffer pool:
 *    their RSS would count it once per backend).
 * The load generator (this process) runs `--concurrency` loops of a fixed mix: plain chat and
 * streamed chat on the instant backend, embeddings on the tiny llama.cpp model, and bad requests
 * that must be answered 400 with a stable code. Any other answer counts as an error.
 * Then a short phase at `--peak-concurrency` (32) for `--peak-seconds`, with the RSS per process.
 *
 * Prints the curve per minute and a verdict computed from it (see {@link verdict}).
 *
 * The dev server also serves its Prometheus metrics (`--metrics-port`): the entries of its history
 * service's mutable-state cache are sampled next to its RSS (the dev server exports no Go memory
 * metrics; `--go-gctrace` runs it with `GODEBUG=gctrace=1` and samples its live Go heap and heap
 * goal). `--temporal-config key=value` (repeatable) adds dynamic config to it, after Sluice's (the
 * last value of a key wins: `history.hostLevelCacheMaxSize=128000` is the server default).
 *
 * `--malloc-arena-max N` sets `MALLOC_ARENA_MAX` for the Sluice processes (see {@link MALLOC_ARENA_MAX}).
 *
 * Run: `npx tsx bench/soak.ts [--minutes 10] [--concurrency 8] [--sample 10] [--peak-concurrency 32] [--peak-seconds 60] [--shape one|split] [--temporal-config k=v] [--go-gctrace] [--malloc-arena-max N]`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createDb } from '../db/database.js';
import { createModel } from '../db/repositories/models.js';
import { DEMO_GGUF } from '../scripts/lib/bootstrap.js';
import { freePort } from '../scripts/lib/free-port.js';
import { readEvents } from '../test/support/sse.js';
import { addInstantModel, addTenantKey, machine, printResults, runBench, withBenchInfra } from './setup.js';
import { childrenOf, procStatus, pssKb, regression } from './stats.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '8' }, sample: { type: 'string', default: '10' },
    'peak-concurrency': { type: 'string', default: '32' }, 'peak-seconds': { type: 'string', default: '60' }, shape: { type: 'string', default: 'one' },
    'temporal-config': { type: 'string', multiple: true, default: [] }, 'go-gctrace': { type: 'boolean', default: false },
    'malloc-arena-max': { type: 'string' },
  },
});
const MINUTES = Number(values.minutes);
const CONCURRENCY = Number(values.concurrency);
const SAMPLE_S = Number(values.sample);
const PEAK_CONCURRENCY = Number(values['peak-concurrency']);
const PEAK_SECONDS = Number(values['peak-seconds']);
const SHAPE = values.shape;
/** `key=value` dynamic config for the dev server on top of ours, to try a setting. */
const TEMPORAL_CONFIG = values['temporal-config'];
/** Runs the dev server with `GODEBUG=gctrace=1` and samples its live Go heap and heap goal from the trace. */
const GO_GCTRACE = values['go-gctrace'];
/**
 * `MALLOC_ARENA_MAX` for the Sluice Node processes (glibc's malloc arenas; the Docker image sets 2).
 * Unset: glibc's default (8 per core), which is what `npm start` runs with.
 */
const MALLOC_ARENA_MAX = values['malloc-arena-max'];
if (MALLOC_ARENA_MAX !== undefined && !/^[1-9]\d*$/.test(MALLOC_ARENA_MAX)) throw new Error('--malloc-arena-max is a positive integer');
if (SHAPE !== 'one' && SHAPE !== 'split') throw new Error('--shape is one or split');
for (const [k, v] of Object.entries({ MINUTES, CONCURRENCY, SAMPLE_S, PEAK_CONCURRENCY, PEAK_SECONDS })) {
  if (!Number.isFinite(v) || v < 0) throw new Error(`${k} must be a non-negative number`);
}

const ROOT = path.resolve(import.meta.dirname, '..');
const MiB = 2 ** 20;
const mib = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

// ---------------------------------------------------------------------------------------------
// Reading memory

/** One gauge of a Prometheus text exposition (the first sample of `name` whose labels contain `label`), or null. */
function gauge(text: string, name: string, label = ''): number | null {
  const labels = label === '' ? '(?:\\{[^}]*\\})?' : `\\{[^}]*${label}[^}]*\\}`;
  const m = new RegExp(`^${name}${labels} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

interface NodeProcess { name: string; child: ChildProcess; metricsUrl: string; tail: string[] }

interface Sample {
  t_s: number;
  requests: number;
  errors: number;
  /** MiB per series: `<process>.rss`, `<process>.heap_used`, `temporal.rss`, `postgres.tree_pss`, …; `temporal.mutable_state_cache_entries` is a count. */
  mib: Record<string, number>;
}

/** The dev server's Go heap after its last GC and the goal of the next, in MiB (`GODEBUG=gctrace=1`). */
interface GoGc { live_mib: number; goal_mib: number }

/** A gctrace line: `gc 12 @3.4s 1%: … ms cpu, 10->12->5 MB, 11 MB goal, …` (before -> at end -> live after marking). */
function parseGcTrace(line: string): GoGc | null {
  const m = /^gc \d+ @[\d.]+s .* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal/.exec(line);
  return m ? { live_mib: Number(m[3]), goal_mib: Number(m[4]) } : null;
}

interface Watched { nodes: NodeProcess[]; temporalPid: number | undefined; temporalMetricsUrl: string; postgresPid: number; goGc: { last: GoGc | null } }

async function sample(t0: number, counters: { requests: number; errors: number }, { nodes, temporalPid, temporalMetricsUrl, postgresPid, goGc }: Watched): Promise<Sample> {
  const s: Sample = { t_s: Math.round((performance.now() - t0) / 100) / 10, requests: counters.requests, errors: counters.errors, mib: {} };
  for (const n of nodes) {
    const st = n.child.pid === undefined ? null : procStatus(n.child.pid);
    if (st?.VmRSS !== undefined) s.mib[`${n.name}.rss`] = Math.round(st.VmRSS / 102.4) / 10;
    // Anonymous pages only (heaps, arenas, stacks), without the pages of mapped files (code, the model).
    if (st?.RssAnon !== undefined) s.mib[`${n.name}.rss_anon`] = Math.round(st.RssAnon / 102.4) / 10;
    const text = await fetch(n.metricsUrl).then((r) => r.text(), () => '');
    const used = gauge(text, 'nodejs_heap_size_used_bytes');
    const total = gauge(text, 'nodejs_heap_size_total_bytes');
    const external = gauge(text, 'nodejs_external_memory_bytes');
    if (used !== null) s.mib[`${n.name}.heap_used`] = mib(used);
    if (total !== null) s.mib[`${n.name}.heap_total`] = mib(total);
    if (external !== null) s.mib[`${n.name}.external`] = mib(external);
  }
  const t = temporalPid === undefined ? null : procStatus(temporalPid);
  if (t?.VmRSS !== undefined) s.mib['temporal.rss'] = Math.round(t.VmRSS / 102.4) / 10;
  if (t?.RssAnon !== undefined) s.mib['temporal.rss_anon'] = Math.round(t.RssAnon / 102.4) / 10;
  const tm = await fetch(temporalMetricsUrl).then((r) => r.text(), () => '');
  // The history service's mutable-state cache: entries held (a count, not MiB; kept next to the
  // RSS it explains). Its cap is `history.hostLevelCacheMaxSize` (scripts/lib/temporal-dev-server.ts).
  const cached = gauge(tm, 'cache_usage', 'cache_type="mutablestate"');
  if (cached !== null) s.mib['temporal.mutable_state_cache_entries'] = cached;
  if (goGc.last !== null) {
    s.mib['temporal.go_live_heap'] = goGc.last.live_mib;
    s.mib['temporal.go_heap_goal'] = goGc.last.goal_mib;
  }
  const pm = procStatus(postgresPid);
  if (pm?.VmRSS !== undefined) s.mib['postgres.postmaster_rss'] = Math.round(pm.VmRSS / 102.4) / 10;
  const tree = [postgresPid, ...childrenOf(postgresPid)];
  const pss = tree.map(pssKb);
  if (pss.every((p) => p !== null)) s.mib['postgres.tree_pss'] = Math.round((pss as number[]).reduce((a, b) => a + b, 0) / 102.4) / 10;
  s.mib['postgres.processes'] = tree.length;
  s.mib['loadgen.rss'] = mib(process.memoryUsage().rss);
  return s;
}

// ---------------------------------------------------------------------------------------------
// The verdict

/**
 * "Flat", per series: over the second half of the soak the fitted slope is at most
 * {@link FLAT_SLOPE_MIB_PER_MIN} and the last minute's mean is at most {@link FLAT_RATIO} times the
 * first steady minute's (minute 2: minute 1 holds the warm-up — JIT, the pools filling, the model
 * loading on the first embedding).
 *
 * Why these bounds: a V8 heap is a sawtooth (allocation up to the next scavenge or mark-compact,
 * then down), and RSS follows it with a lag and keeps pages the allocator has not returned, so
 * two 10-second samples of a process that does not leak differ by several MiB (the residual SD
 * printed per series measures it). A per-minute mean over 6 samples and a slope over 30 samples
 * average most of that out: with a residual SD of ~3 MiB the slope's standard error over 5
 * minutes is ~0.4 MiB/min, so 1 MiB/min (60 MiB/hour) is about the smallest growth a 10-minute run
 * can tell from noise; the 5% ratio bound catches a step that a slope over one half would miss.
 * A slower leak needs a longer run (`--minutes`), which this bench allows as it is.
 */
const FLAT_SLOPE_MIB_PER_MIN = 1;
/** See {@link FLAT_SLOPE_MIB_PER_MIN}. */
const FLAT_RATIO = 1.05;

interface SeriesVerdict {
  /** The slope over the request rate of the same half: growth per 1,000 requests. */
  mib_per_1k_requests: number;
  slope_mib_per_min: number; slope_se: number; residual_sd_mib: number; first_steady_mib: number; last_mib: number; ratio: number; flat: boolean;
}

function verdict(samples: readonly Sample[], series: string, minutes: number): SeriesVerdict | null {
  const half = (minutes * 60) / 2;
  const points = samples.filter((s) => s.t_s >= half && s.mib[series] !== undefined).map((s) => ({ t_s: s.t_s, y: s.mib[series] as number }));
  const first = minuteMean(samples, series, Math.min(2, minutes));
  const last = minuteMean(samples, series, minutes);
  const r = regression(points);
  if (first === null || last === null || Number.isNaN(r.slope_per_min)) return null;
  const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
  const ratio = last / first;
  const inHalf = samples.filter((s) => s.t_s >= half);
  const a = inHalf[0];
  const b = inHalf.at(-1);
  const perMin = a && b && b.t_s > a.t_s ? (b.requests - a.requests) / ((b.t_s - a.t_s) / 60) : Number.NaN;
  return {
    mib_per_1k_requests: round((r.slope_per_min / perMin) * 1000),
    slope_mib_per_min: round(r.slope_per_min), slope_se: round(r.se), residual_sd_mib: round(r.residual_sd), first_steady_mib: round(first, 1), last_mib: round(last, 1),
    ratio: round(ratio, 3), flat: r.slope_per_min <= FLAT_SLOPE_MIB_PER_MIN && ratio <= FLAT_RATIO,
  };
}

/** Mean of a series over the samples of minute `m` (1-based: (m-1)·60 < t ≤ m·60). */
function minuteMean(samples: readonly Sample[], series: string, m: number): number | null {
  const ys = samples.filter((s) => s.t_s > (m - 1) * 60 && s.t_s <= m * 60 && s.mib[series] !== undefined).map((s) => s.mib[series] as number);
  return ys.length === 0 ? null : ys.reduce((a, b) => a + b, 0) / ys.length;
}

// ---------------------------------------------------------------------------------------------
// The load

type Kind = 'chat' | 'stream' | 'embed' | 'bad_field' | 'bad_value';
/** Of every 20 requests: 10 plain chat, 5 streamed, 3 embeddings, 2 bad (an unknown field, a bad value). */
const MIX: readonly Kind[] = [
  'chat', 'stream', 'chat', 'embed', 'chat', 'stream', 'chat', 'bad_field', 'chat', 'stream',
  'chat', 'embed', 'chat', 'stream', 'chat', 'bad_value', 'chat', 'stream', 'chat', 'embed',
];

interface Counters { requests: number; errors: number; byKind: Record<Kind, number>; firstErrors: string[] }

async function call(url: string, key: string, kind: Kind, n: number): Promise<void> {
  const post = (route: string, body: unknown) => fetch(`${url}/v1/${route}`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  // A distinct prompt per request: what a leak keyed by request or content would show.
  const messages = [{ role: 'user', content: `soak request ${n}` }];
  const fail = async (res: Response) => new Error(`${kind}: status ${res.status}: ${(await res.text()).slice(0, 200)}`);
  switch (kind) {
    case 'chat': {
      const res = await post('chat/completions', { model: 'instant', messages, max_tokens: 4 });
      if (res.status !== 200) throw await fail(res);
      const body = (await res.json()) as { choices?: unknown[] };
      if (!Array.isArray(body.choices) || body.choices.length !== 1) throw new Error('chat: no choice');
      return;
    }
    case 'stream': {
      const res = await post('chat/completions', { model: 'instant', messages, max_tokens: 4, stream: true });
      if (res.status !== 200) throw await fail(res);
      const events = await readEvents(res);
      if (events.at(-1)?.data !== '[DONE]') throw new Error('stream: no [DONE]');
      return;
    }
    case 'embed': {
      const res = await post('embeddings', { model: 'soak-embed', input: [`soak input ${n}`, 'the same second input'] });
      if (res.status !== 200) throw await fail(res);
      const body = (await res.json()) as { data?: unknown[] };
      if (body.data?.length !== 2) throw new Error('embed: not 2 vectors');
      return;
    }
    case 'bad_field':
    case 'bad_value': {
      const body = kind === 'bad_field' ? { model: 'instant', messages, soak_unknown_field: 1 } : { model: 'instant', messages, temperature: 'hot' };
      const res = await post('chat/completions', body);
      const json = (await res.json().catch(() => null)) as { error?: { code?: unknown } } | null;
      if (res.status !== 400 || typeof json?.error?.code !== 'string') throw new Error(`${kind}: status ${res.status}, code ${String(json?.error?.code)}`);
    }
  }
}

/** `concurrency` loops over the mix until `until()` is true. */
async function load(url: string, key: string, concurrency: number, counters: Counters, until: () => boolean): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (!until()) {
      const n = next++;
      const kind = MIX[n % MIX.length] as Kind;
      try {
        await call(url, key, kind, n);
        counters.requests += 1;
        counters.byKind[kind] += 1;
      } catch (err) {
        counters.errors += 1;
        if (counters.firstErrors.length < 5) {
          counters.firstErrors.push(err instanceof Error ? err.message : String(err));
          process.stderr.write(`error: ${counters.firstErrors.at(-1)}\n`);
        }
      }
    }
  }));
}

// ---------------------------------------------------------------------------------------------
// The processes

function startNode(name: string, script: string, env: Record<string, string>, metricsPort: number): NodeProcess {
  const malloc = MALLOC_ARENA_MAX === undefined ? {} : { MALLOC_ARENA_MAX };
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT, env: { ...process.env, ...env, ...malloc, SLUICE_METRICS_PORT: String(metricsPort) }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const keep = (c: Buffer) => {
    tail.push(...c.toString().split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 30));
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return { name, child, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, tail };
}

async function stopNode(n: NodeProcess): Promise<void> {
  if (n.child.exitCode !== null || n.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => n.child.once('exit', () => resolve()));
  n.child.kill('SIGINT');
  const timer = setTimeout(() => n.child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

/** Waits until `url` answers 200, failing when a process exits first or after `ms`. */
async function waitReady(url: string, nodes: NodeProcess[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const dead = nodes.find((n) => n.child.exitCode !== null || n.child.signalCode !== null);
    if (dead) throw new Error(`${dead.name} exited during start-up:\n${dead.tail.join('\n')}`);
    if ((await fetch(url).then((r) => r.status, () => 0)) === 200) return;
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${ms} ms:\n${nodes.map((n) => `${n.name}: ${n.tail.join('\n')}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---------------------------------------------------------------------------------------------

function table(samples: readonly Sample[], minutes: number, series: readonly string[]): string {
  const rows = [['min', 'requests', 'req/s', 'errors', ...series]];
  let before = 0;
  for (let m = 1; m <= minutes; m++) {
    const inMinute = samples.filter((s) => s.t_s > (m - 1) * 60 && s.t_s <= m * 60);
    const lastOf = inMinute.at(-1);
    if (!lastOf) continue;
    rows.push([String(m), String(lastOf.requests), (((lastOf.requests - before) / 60)).toFixed(1), String(lastOf.errors), ...series.map((k) => minuteMean(samples, k, m)?.toFixed(1) ?? '-')]);
    before = lastOf.requests;
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  return rows.map((r) => r.map((c, i) => c.padStart(widths[i] as number)).join('  ')).join('\n');
}

/** Set by SIGINT/SIGTERM: the load stops early and everything started is stopped as usual. */
let interrupted = false;

async function main() {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
    });
  }
  const temporalMetricsPort = await freePort();
  const devServerArgs = ['--metrics-port', String(temporalMetricsPort), ...TEMPORAL_CONFIG.flatMap((kv) => ['--dynamic-config-value', kv])];
  const goGc: { last: GoGc | null } = { last: null };
  // The dev server inherits this process's environment (so do the Node processes, which ignore it).
  if (GO_GCTRACE) process.env.GODEBUG = 'gctrace=1';
  const onTemporalLine = (line: string) => {
    goGc.last = parseGcTrace(line) ?? goGc.last;
  };
  await withBenchInfra('soak', { SLUICE_SLOTS: '32', SLUICE_CONTEXT_SIZE: '512', SLUICE_THREADS: '1' }, async ({ dir, env, infra, temporalPid }) => {
    const apiPort = await freePort();
    const common = { ...env, DATABASE_URL: infra.databaseUrl, TEMPORAL_ADDRESS: infra.temporalAddress };
    const nodes: NodeProcess[] = [];
    try {
      if (SHAPE === 'one') {
        nodes.push(startNode('sluice', 'scripts/start.ts', { ...common, PORT: String(apiPort) }, await freePort()));
      } else {
        // The control worker migrates; the API does not.
        const control = startNode('control', 'scripts/worker-control.ts', common, await freePort());
        nodes.push(control);
        await waitReady(control.metricsUrl, nodes, 180_000);
        nodes.push(startNode('api', 'scripts/api.ts', { ...common, PORT: String(apiPort) }, await freePort()));
        nodes.push(startNode('inference', 'scripts/worker-inference.ts', common, await freePort()));
      }
      const url = `http://127.0.0.1:${apiPort}`;
      await waitReady(`${url}/readyz`, nodes, 180_000);
      const { db, pool } = createDb({ connectionString: infra.databaseUrl, max: 2 });
      let key: string;
      try {
        await addInstantModel(db, { effectiveFrom: new Date(Date.now() - 60_000) });
        await createModel(db, {
          id: 'soak-embed', kind: 'embeddings', ownedBy: 'sluice', contextLength: 512, maxOutputTokens: 1,
          deployments: [{
            id: 'soak-embed-bench', pool: 'bench', provider: 'llama-cpp', ggufPath: DEMO_GGUF, baseUrl: null, apiKeyRef: null,
            upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 0,
          }],
        }, new Date(Date.now() - 60_000));
        key = (await addTenantKey(db)).secret;
      } finally {
        await pool.end();
      }
      const postgresPid = Number(readFileSync(path.join(dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
      const watched: Watched = { nodes, temporalPid, temporalMetricsUrl: `http://127.0.0.1:${temporalMetricsPort}/metrics`, postgresPid, goGc };
      const counters: Counters = { requests: 0, errors: 0, byKind: { chat: 0, stream: 0, embed: 0, bad_field: 0, bad_value: 0 }, firstErrors: [] };
      const load1 = readFileSync('/proc/loadavg', 'utf8').trim();

      // The soak.
      const samples: Sample[] = [];
      const t0 = performance.now();
      const end = t0 + MINUTES * 60_000;
      const sampler = setInterval(() => {
        void sample(t0, counters, watched).then((s) => {
          samples.push(s);
          process.stderr.write(`${JSON.stringify(s)}\n`);
        });
      }, SAMPLE_S * 1000);
      try {
        await load(url, key, CONCURRENCY, counters, () => interrupted || performance.now() >= end);
      } finally {
        clearInterval(sampler);
      }
      const load2 = readFileSync('/proc/loadavg', 'utf8').trim();
      const series = Object.keys(samples.at(-1)?.mib ?? {}).filter((k) => k !== 'postgres.processes');
      const verdicts = Object.fromEntries(series.map((k) => [k, verdict(samples, k, MINUTES)]));
      const soak = { ...counters, seconds: Math.round((performance.now() - t0) / 1000), samples: samples.length, loadavg_start: load1, loadavg_end: load2 };

      // The peak phase: the same mix at a higher concurrency, RSS per process.
      const peakSamples: Sample[] = [];
      const peakCounters: Counters = { requests: 0, errors: 0, byKind: { chat: 0, stream: 0, embed: 0, bad_field: 0, bad_value: 0 }, firstErrors: [] };
      const p0 = performance.now();
      const peakSampler = setInterval(() => void sample(p0, peakCounters, watched).then((s) => peakSamples.push(s)), 5000);
      try {
        await load(url, key, PEAK_CONCURRENCY, peakCounters, () => interrupted || performance.now() >= p0 + PEAK_SECONDS * 1000);
      } finally {
        clearInterval(peakSampler);
      }
      const peak: Record<string, { mean: number; max: number }> = {};
      for (const k of Object.keys(peakSamples.at(-1)?.mib ?? {})) {
        const ys = peakSamples.map((s) => s.mib[k]).filter((y): y is number => y !== undefined);
        peak[k] = { mean: Math.round((ys.reduce((a, b) => a + b, 0) / ys.length) * 10) / 10, max: Math.max(...ys) };
      }
      const peakResult = {
        concurrency: PEAK_CONCURRENCY, seconds: Math.round((performance.now() - p0) / 1000), requests: peakCounters.requests, errors: peakCounters.errors,
        rps: Math.round((peakCounters.requests / ((performance.now() - p0) / 1000)) * 10) / 10, first_errors: peakCounters.firstErrors,
        loadavg: readFileSync('/proc/loadavg', 'utf8').trim(), mib: peak,
      };

      const memSeries = series.filter((k) => /\.(rss|rss_anon|heap_used|mutable_state_cache_entries|go_live_heap|go_heap_goal|tree_pss|postmaster_rss)$/.test(k) && !k.startsWith('loadgen'));
      const out = [
        `soak: shape ${SHAPE} (${nodes.map((n) => n.name).join(', ')}), dev server extra config [${TEMPORAL_CONFIG.join(' ')}], MALLOC_ARENA_MAX ${MALLOC_ARENA_MAX ?? 'unset'}, ${MINUTES} min at concurrency ${CONCURRENCY}, a sample every ${SAMPLE_S} s; loadavg ${load1} -> ${load2}`,
        `per-minute means (MiB):`,
        table(samples, MINUTES, memSeries),
        '',
        `verdict (second half; flat = slope <= ${FLAT_SLOPE_MIB_PER_MIN} MiB/min and last/first-steady <= ${FLAT_RATIO}):`,
        ...memSeries.map((k) => `  ${k.padEnd(28)} ${JSON.stringify(verdicts[k])}`),
        '',
        `peak phase: c=${PEAK_CONCURRENCY} for ${peakResult.seconds} s, ${peakResult.requests} requests (${peakResult.rps}/s), ${peakResult.errors} errors; loadavg ${peakResult.loadavg}`,
        ...Object.entries(peak).filter(([k]) => memSeries.includes(k)).map(([k, v]) => `  ${k.padEnd(28)} mean ${v.mean} MiB, max ${v.max} MiB`),
        '',
      ];
      process.stdout.write(out.join('\n') + '\n');
      printResults({ machine: machine(), shape: SHAPE, temporal_config: TEMPORAL_CONFIG, malloc_arena_max: MALLOC_ARENA_MAX ?? null, processes: nodes.map((n) => n.name), minutes: MINUTES, concurrency: CONCURRENCY, soak, verdicts, peak: peakResult, samples });
    } finally {
      for (const n of [...nodes].reverse()) await stopNode(n);
    }
  }, { devServerArgs, ...(GO_GCTRACE ? { onTemporalLine } : {}) });
}

runBench(main);
