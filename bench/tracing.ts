/**
 * What tracing costs the sync pipeline: sync `POST /v1/chat/completions` of the instant model
 * (no model time) with tracing off and on, alternately in one run (off, on, off, on, … against
 * the same PostgreSQL and Temporal dev server). Each phase is a fresh process running the whole
 * stack (API, control and inference workers), so "off" is a process that never loaded the SDK:
 *  - off: nothing installed (no provider, no instrumentation, no interceptors, the plain bundle);
 *  - on: the tracer provider, HTTP and pg instrumentation, Temporal interceptors and the bundle
 *    with the workflow interceptors, every span sampled, into a batch span processor over an
 *    exporter that only counts (what an OTLP exporter does past the processor is the network's).
 * Per phase: latency p50/p99 of sequential requests, CPU time of the phase's process per request
 * (API, workers and the load loop) and of the dev server, spans per request.
 *
 * Run: `npx tsx bench/tracing.ts [--requests 200] [--rounds 2]`
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { ExportResult } from '@opentelemetry/core';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { activeTraceparent, inSpan, installTracing, WORKFLOW_INTERCEPTOR_MODULES } from '../runtime/tracing.js';
import { startInfra, startStack } from '../scripts/lib/system.js';
import { bundleControlWorkflows } from '../workers/control-worker.js';
import { cpuMs, percentile } from './stats.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench, syncChat as call } from './setup.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '200' }, rounds: { type: 'string', default: '2' },
    // A phase's process (started by the run): its mode and what the run gives it.
    phase: { type: 'string' }, env: { type: 'string' }, bundle: { type: 'string' }, temporalPid: { type: 'string' },
  },
});
const REQUESTS = Number(values.requests);
const ROUNDS = Number(values.rounds);
const WARMUP = 30;

/** Counts what it is given: the processor's work without a network. */
class CountingExporter implements SpanExporter {
  spans = 0;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.spans += spans.length;
    done({ code: 0 });
  }
  async shutdown(): Promise<void> {}
}

interface Phase { mode: 'off' | 'on'; round: number; p50_ms: number; p99_ms: number; node_cpu_ms_per_request: number; temporal_cpu_ms_per_request: number | null; spans_per_request: number | null }

/** One phase, in its own process: a stack with tracing `mode`, warmed up, then REQUESTS sequential requests. */
async function phase(mode: 'off' | 'on', env: Record<string, string>, bundlePath: string, temporalPid: number | undefined): Promise<Omit<Phase, 'round'>> {
  // Stdout carries the phase's result only.
  const log = createLogger('warn', {}, (line) => process.stderr.write(`${line}\n`));
  const config = loadConfig(env);
  const exporter = new CountingExporter();
  const tracing = mode === 'on' ? await installTracing(null, log, { spanProcessor: new BatchSpanProcessor(exporter, { maxQueueSize: 8192 }) }) : null;
  const stack = await startStack(config, {
    databaseUrl: config.databaseUrl as string, temporalAddress: config.temporalAddress as string, api: true, control: true, pools: [config.pool], log,
    workflowBundle: { codePath: bundlePath }, tracing,
  });
  let measured: { latencies: number[]; nodeMs: number; temporalMs: number | null; spans0: number };
  try {
    const key = (await addTenantKey(stack.db, null, `bench-${mode}-${Date.now()}`)).secret;
    const url = stack.url as string;
    for (let i = 0; i < WARMUP; i++) await call(url, key);
    await new Promise((r) => setTimeout(r, 100));
    const spans0 = exporter.spans;
    const latencies: number[] = [];
    const node0 = process.cpuUsage();
    const temporal0 = cpuMs(temporalPid);
    for (let i = 0; i < REQUESTS; i++) latencies.push(await call(url, key));
    const node = process.cpuUsage(node0);
    const temporal1 = cpuMs(temporalPid);
    measured = { latencies, nodeMs: (node.user + node.system) / 1000, temporalMs: temporal0 !== null && temporal1 !== null ? temporal1 - temporal0 : null, spans0 };
  } finally {
    await stack.stop();
    await tracing?.shutdown(); // flushes: every measured request's spans are counted
  }
  return {
    mode, p50_ms: percentile(measured.latencies, 50), p99_ms: percentile(measured.latencies, 99),
    node_cpu_ms_per_request: Math.round((measured.nodeMs / REQUESTS) * 100) / 100,
    temporal_cpu_ms_per_request: measured.temporalMs === null ? null : Math.round((measured.temporalMs / REQUESTS) * 100) / 100,
    spans_per_request: mode === 'on' ? Math.round(((exporter.spans - measured.spans0) / REQUESTS) * 10) / 10 : null,
  };
}

/** Runs one phase's process and returns what it printed. */
async function runPhase(mode: 'off' | 'on', env: Record<string, string>, bundlePath: string, temporalPid: number | undefined): Promise<Omit<Phase, 'round'>> {
  const self = fileURLToPath(import.meta.url);
  const args = ['--import', 'tsx', self, '--phase', mode, '--env', JSON.stringify(env), '--bundle', bundlePath, '--requests', String(REQUESTS), ...(temporalPid ? ['--temporalPid', String(temporalPid)] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Omit<Phase, 'round'>) : reject(new Error(`phase ${mode} exited with ${code}`))));
  });
}

/**
 * What Sluice's tracing hooks cost a request when tracing is off (this process never installs
 * it): the backend call's no-op span and the response header's check, in ns per request (one of
 * each), against the same loop without them.
 */
async function offHooksNs(): Promise<{ hooks_ns_per_request: number }> {
  const n = 200_000;
  const run = async (hooks: boolean) => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      if (hooks) {
        await inSpan('backend.generate', { 'sluice.deployment': 'd' }, async () => i);
        activeTraceparent();
      } else {
        await (async () => i)();
      }
    }
    return Number(process.hrtime.bigint() - t) / n;
  };
  await run(true);
  await run(false);
  const withHooks: number[] = [];
  const without: number[] = [];
  for (let r = 0; r < 5; r++) {
    withHooks.push(await run(true));
    without.push(await run(false));
  }
  return { hooks_ns_per_request: Math.round(percentile(withHooks, 50) - percentile(without, 50)) };
}

async function main() {
  if (values.phase === 'off' || values.phase === 'on') {
    const result = await phase(values.phase, JSON.parse(values.env ?? '{}') as Record<string, string>, values.bundle as string, values.temporalPid ? Number(values.temporalPid) : undefined);
    process.stdout.write(JSON.stringify(result));
    return;
  }
  const off = await offHooksNs();
  process.stderr.write(`off hooks: ${JSON.stringify(off)}\n`);
  const { dir, env } = await benchEnv('tracing', { SLUICE_SLOTS: '16' });
  const log = createLogger('warn');
  const config = loadConfig(env);
  const infra = await startInfra(config, log);
  const temporalPid = infra.temporal?.process.pid;
  const phases: Phase[] = [];
  try {
    const bundles = { off: path.join(dir, 'plain.js'), on: path.join(dir, 'traced.js') };
    await fs.writeFile(bundles.off, (await bundleControlWorkflows()).code);
    await fs.writeFile(bundles.on, (await bundleControlWorkflows({ workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES })).code);
    const phaseEnv = { ...env, DATABASE_URL: infra.databaseUrl, TEMPORAL_ADDRESS: infra.temporalAddress };
    // The model, once (each phase migrates the same database, a no-op after the first).
    const setup = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: false, control: false, pools: [], log, tracing: null });
    await addInstantModel(setup.db, { pool: config.pool });
    await setup.stop();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of ['off', 'on'] as const) {
        const p = { ...(await runPhase(mode, phaseEnv, bundles[mode], temporalPid)), round };
        phases.push(p);
        process.stderr.write(`${JSON.stringify(p)}\n`);
      }
    }
  } finally {
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  const median = (mode: Phase['mode'], field: 'p50_ms' | 'p99_ms' | 'node_cpu_ms_per_request') => {
    const xs = phases.filter((p) => p.mode === mode).map((p) => p[field]).sort((a, b) => a - b);
    const mid = xs.length / 2;
    return xs.length % 2 ? (xs[Math.floor(mid)] as number) : Math.round((((xs[mid - 1] as number) + (xs[mid] as number)) / 2) * 100) / 100;
  };
  const summary = Object.fromEntries((['off', 'on'] as const).map((m) => [m, { p50_ms: median(m, 'p50_ms'), p99_ms: median(m, 'p99_ms'), node_cpu_ms_per_request: median(m, 'node_cpu_ms_per_request') }]));
  process.stdout.write(JSON.stringify({ machine: machine(), requests_per_phase: REQUESTS, rounds: ROUNDS, off_hooks: off, phases, summary }, null, 2) + '\n');
}

runBench(main);
