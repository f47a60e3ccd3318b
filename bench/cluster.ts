/**
 * `npm run bench -- cluster`: the production shape (`startCluster`: 2 APIs behind nginx, 2 control
 * and 2 inference workers, separate processes) on the real Temporal server (1.30.9 on PostgreSQL)
 * and, in the same run, on the Temporal CLI's dev server (SQLite) with the same processes around it:
 *  - sync chat completions through the load balancer at c = 1 / 8 / 32: req/s, p50 / p99;
 *  - CPU per request of each process type (utime + stime from /proc/<pid>/stat; PostgreSQL: the
 *    postmaster and its backends alive at both reads);
 *  - c = 8 with one API (straight to api-1) and with one control worker (the other stopped);
 *  - batch lines/s (one batch of --lines lines);
 *  - the one-activity floor (bench/temporal-floor.ts) against each server.
 * Inference is llama.cpp on the generated tiny model with max_tokens 1 (standalone inference workers
 * do not serve the instant backend), so the numbers include a little model time.
 *
 *   node --import tsx bench/cluster.ts [--seconds 5] [--lines 200] [--floor-requests 50]
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startCluster, type Cluster } from '../scripts/lib/cluster/cluster.js';
import { freePort } from '../scripts/lib/free-port.js';
import { cpuMs, percentile } from './stats.js';
import { measureFloor } from './temporal-floor.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const SECONDS = arg('seconds', 5);
const LINES = arg('lines', 200);
const FLOOR_REQUESTS = arg('floor-requests', 50);
const BODY = JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'benchmark' }], max_tokens: 1, temperature: 0 });

/** PIDs of PostgreSQL's postmaster and its children (backends, background workers). */
async function postgresPids(postmaster: number | null): Promise<number[]> {
  if (postmaster === null) return [];
  const pids = [postmaster];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === postmaster) pids.push(Number(entry));
  }
  return pids;
}

/** CPU ms used so far per process type, keyed by pid so a diff counts only processes alive at both reads. */
async function cpuSnapshot(cluster: Cluster): Promise<Map<number, { role: string; ms: number }>> {
  const snap = new Map<number, { role: string; ms: number }>();
  for (const p of cluster.processes()) {
    const pid = p.pid();
    const ms = pid === null ? null : cpuMs(pid);
    if (pid !== null && ms !== null) snap.set(pid, { role: p.spec.role, ms });
  }
  // nginx's worker is the master's child.
  const lbPid = cluster.lb.pid();
  for (const pid of lbPid === null ? [] : (await postgresPids(lbPid)).slice(1)) {
    const ms = cpuMs(pid);
    if (ms !== null) snap.set(pid, { role: 'lb', ms });
  }
  for (const pid of await postgresPids(await cluster.postgresPid())) {
    const ms = cpuMs(pid);
    if (ms !== null) snap.set(pid, { role: 'postgres', ms });
  }
  return snap;
}

function cpuPerRequest(before: Map<number, { role: string; ms: number }>, after: Map<number, { role: string; ms: number }>, requests: number): Record<string, number> {
  const byRole: Record<string, number> = {};
  for (const [pid, a] of after) {
    const b = before.get(pid);
    if (!b) continue;
    byRole[a.role] = (byRole[a.role] ?? 0) + (a.ms - b.ms);
  }
  return Object.fromEntries(Object.entries(byRole).map(([role, ms]) => [role, Math.round((ms / Math.max(1, requests)) * 100) / 100]));
}

interface Run { concurrency: number; target: string; requests: number; errors: number; rps: number; p50_ms: number; p99_ms: number; cpu_ms_per_request: Record<string, number> }

async function load(cluster: Cluster, key: string, base: string, concurrency: number, target: string): Promise<Run> {
  const latencies: number[] = [];
  let errors = 0;
  const before = await cpuSnapshot(cluster);
  const client0 = process.cpuUsage();
  const deadline = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      const t = performance.now();
      const res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: BODY }).catch(() => null);
      if (res?.status === 200) {
        await res.arrayBuffer();
        latencies.push(performance.now() - t);
      } else {
        await res?.arrayBuffer();
        errors += 1;
      }
    }
  }));
  const cpu = cpuPerRequest(before, await cpuSnapshot(cluster), latencies.length);
  const client = process.cpuUsage(client0);
  cpu['load generator'] = Math.round(((client.user + client.system) / 1000 / Math.max(1, latencies.length)) * 100) / 100;
  return {
    concurrency, target, requests: latencies.length, errors, rps: Math.round((latencies.length / SECONDS) * 10) / 10,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99), cpu_ms_per_request: cpu,
  };
}

async function admin(cluster: Cluster, adminKey: string, method: string, p: string, body: unknown): Promise<any> {
  const res = await fetch(`${cluster.url}${p}`, { method, headers: { Authorization: `Bearer ${adminKey}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function batchLinesPerSecond(cluster: Cluster, key: string): Promise<{ lines: number; seconds: number; lines_per_s: number }> {
  const text = Array.from({ length: LINES }, (_, i) => JSON.stringify({
    custom_id: `l${i}`, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'sluice-tiny', messages: [{ role: 'user', content: `line ${i}` }], max_tokens: 1, temperature: 0 },
  })).join('\n') + '\n';
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([text]), 'bench.jsonl');
  const auth = { Authorization: `Bearer ${key}` };
  const file = await (await fetch(`${cluster.url}/v1/files`, { method: 'POST', headers: auth, body: form })).json() as { id: string };
  const t = performance.now();
  const created = await (await fetch(`${cluster.url}/v1/batches`, {
    method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
  })).json() as { id: string };
  for (;;) {
    const b = await (await fetch(`${cluster.url}/v1/batches/${created.id}`, { headers: auth })).json() as { status: string };
    if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) {
      if (b.status !== 'completed') throw new Error(`batch ${b.status}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = (performance.now() - t) / 1000;
  return { lines: LINES, seconds: Math.round(seconds * 100) / 100, lines_per_s: Math.round((LINES / seconds) * 10) / 10 };
}

async function measure(temporal: 'server' | 'dev-server'): Promise<Record<string, unknown>> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-cluster-'));
  await fs.chmod(stateDir, 0o755);
  const adminKey = `sk-bench-${randomBytes(16).toString('hex')}`;
  const config = loadConfig({
    PORT: '0', SLUICE_DATA_DIR: stateDir, SLUICE_PG_PORT: String(await freePort()), SLUICE_TEMPORAL_PORT: String(await freePort()),
    SLUICE_ADMIN_KEY: adminKey, SLUICE_THREADS: '1', SLUICE_SLOTS: '4', SLUICE_CONTEXT_SIZE: '512', SLUICE_LOG_LEVEL: 'warn',
  });
  const cluster = await startCluster({ config, stateDir, temporal, log: createLogger('warn', { process: 'bench-cluster' }) });
  try {
    const tenant = await admin(cluster, adminKey, 'POST', '/v1/admin/tenants', { name: 'bench' });
    const key = (await admin(cluster, adminKey, 'POST', `/v1/admin/tenants/${tenant.id}/keys`, { role: 'developer' })).key as string;
    for (let i = 0; i < 20; i++) await fetch(`${cluster.url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: BODY }).then((r) => r.arrayBuffer());
    const runs: Run[] = [];
    for (const c of [1, 8, 32]) {
      runs.push(await load(cluster, key, cluster.url, c, '2 APIs (nginx), 2 control workers'));
      process.stderr.write(`${temporal} ${JSON.stringify(runs.at(-1))}\n`);
    }
    runs.push(await load(cluster, key, cluster.apis[0]!.url, 8, '1 API (direct), 2 control workers'));
    process.stderr.write(`${temporal} ${JSON.stringify(runs.at(-1))}\n`);
    const second = cluster.controlWorkers[1]!;
    await second.stop(60_000);
    runs.push(await load(cluster, key, cluster.url, 8, '2 APIs (nginx), 1 control worker'));
    process.stderr.write(`${temporal} ${JSON.stringify(runs.at(-1))}\n`);
    await second.start();
    const batch = await batchLinesPerSecond(cluster, key);
    process.stderr.write(`${temporal} batch ${JSON.stringify(batch)}\n`);
    const connection = await NativeConnection.connect({ address: cluster.temporalAddress });
    let floor: Record<string, unknown>;
    try {
      const client = new Client({ connection, namespace: cluster.namespace });
      floor = await measureFloor({ connection, client, namespace: cluster.namespace, temporalPid: cluster.temporal.pid() ?? undefined, requests: FLOOR_REQUESTS, seconds: Math.min(SECONDS, 3), concurrencies: [1, 8] });
    } finally {
      await connection.close();
    }
    return { temporal, runs, batch, floor: { oneActivityWorkflow: floor.oneActivityWorkflow, emptyWorkflow: floor.emptyWorkflow } };
  } finally {
    await cluster.stop();
    await fs.rm(stateDir, { recursive: true, force: true });
  }
}

const results = [];
for (const temporal of ['server', 'dev-server'] as const) results.push(await measure(temporal));
const lines = ['| Temporal | processes | c | req/s | p50 ms | p99 ms | errors | CPU ms/request by process type |', '|---|---|---|---|---|---|---|---|'];
for (const r of results) {
  for (const run of r.runs as Run[]) {
    const cpu = Object.entries(run.cpu_ms_per_request).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`| ${r.temporal} | ${run.target} | ${run.concurrency} | ${run.rps} | ${run.p50_ms} | ${run.p99_ms} | ${run.errors} | ${cpu} |`);
  }
}
lines.push('', '| Temporal | batch lines/s | one-activity floor p50 / p99 ms (sequential) |', '|---|---|---|');
for (const r of results) {
  const floor = (r.floor as { oneActivityWorkflow?: { p50_ms: number; p99_ms: number } }).oneActivityWorkflow;
  lines.push(`| ${r.temporal} | ${(r.batch as { lines_per_s: number }).lines_per_s} | ${floor?.p50_ms ?? '-'} / ${floor?.p99_ms ?? '-'} |`);
}
process.stdout.write(JSON.stringify(results, null, 2) + '\n\n' + lines.join('\n') + '\n');
