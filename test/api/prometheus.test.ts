/**
 * The shipped rules and dashboard against a real Prometheus scraping a running Sluice: the
 * `prometheus` binary of Debian's package (scripts/install-prometheus.sh) with a generated config
 * that loads deploy/prometheus/rules.yml and scrapes, every second, two metrics listeners: the
 * stack's (API, control worker and an inference worker in one process) and that of a separate
 * `npm run worker:inference` process of the same pool.
 * After some traffic on llama.cpp (sync requests, a stream, a request its tenant may not make, a
 * batch), with objectives defined through `/v1/admin/slos` (availability per model, TTFT per pool,
 * latency per plan, batch completion), every dashboard panel's expression (read from deploy/grafana/dashboards/sluice.json) and
 * every rule's expression is evaluated through Prometheus' HTTP query API.
 *
 * The criterion, per expression:
 * - every expression (panel, recording rule, alert) is accepted and evaluated by Prometheus;
 * - every panel expression and every recording rule returns data, and so does each recorded series;
 * - every alert's expression returns data once its threshold comparisons (`> 0.5`, `>= 0.8 < 1`,
 *   `> (14.4 * 0.001)`) are taken out: on a healthy system an alert is legitimately empty, but
 *   what it compares must exist, with labels that match across its `and` / `or` sides;
 * - Prometheus reports every rule healthy (`/api/v1/rules`).
 * A metric name Sluice does not export returns no data, so its panel or rule fails the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import OpenAI, { toFile } from 'openai';
import { ServiceError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { startMetricsServer } from '../../runtime/metrics-server.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { settled, startInferenceWorkerProcess, startTestStack, type TestStack } from '../support/stack.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const RULES = path.join(root, 'deploy/prometheus/rules.yml');
const DASHBOARD = path.join(root, 'deploy/grafana/dashboards/sluice.json');

interface Panel { title?: string; type?: string; targets?: Array<{ expr?: string }>; panels?: Panel[] }
interface Rule { alert?: string; record?: string; expr: string }

/** Every panel's expressions, rows' nested panels included, with Grafana's variables resolved. */
function panelExpressions(): Array<{ name: string; expr: string }> {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
  const all = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...all(p.panels ?? [])]);
  return all(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t, i) => ({ name: `${p.title ?? '?'} #${i}`, expr: resolveVariables(t.expr ?? '') })));
}

/** Grafana's variables as the dashboard's "All" selection and a 1-minute rate window. */
function resolveVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '15s').replace(/\$(model|pool|tenant)\b/g, '.*');
}

const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);

/** An alert's expression without its threshold comparisons (a comparison with a number or `(a * b)`). */
export function withoutThresholds(expr: string): string {
  return expr.replace(/\s*(?:>=|<=|==|!=|>|<)\s*(?:\(\s*[\d.]+\s*\*\s*[\d.]+\s*\)|\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![\w.])/g, '');
}

let stack: TestStack;
let metrics: { url: string; stop(): Promise<void> };
let prometheus: ChildProcess;
let worker: ChildProcess;
let prometheusUrl: string;
let prometheusLog = '';
let tmp: string;
/** Objectives defined before the traffic (IDs), each kind and scope the generic burn alerts cover. */
const slos: Record<'availability' | 'ttft' | 'latency' | 'batch', string> = { availability: '', ttft: '', latency: '', batch: '' };

async function defineSlo(body: Record<string, unknown>): Promise<string> {
  const r = await stack.admin('POST', '/v1/admin/slos', body);
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id as string;
}

async function api<T>(pathAndQuery: string): Promise<T> {
  const res = await fetch(`${prometheusUrl}${pathAndQuery}`);
  const body = await res.json() as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${pathAndQuery}: ${body.error ?? res.status}`);
  return body.data;
}

/** Evaluates `expr` now; throws on a parse or evaluation error. */
async function query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const data = await api<{ resultType: string; result: unknown }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
  return data.result as Array<{ metric: Record<string, string>; value: [number, string] }>;
}

/** Polls `check` (returns the problems left) until it returns none or the deadline passes. */
async function eventually(check: () => Promise<string[]>, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let problems = await check();
  while (problems.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    problems = await check();
  }
  return problems;
}

beforeAll(async () => {
  // The control worker refreshes budget and batch gauges and verifies the audit chain every second.
  stack = await startTestStack({ env: { SLUICE_OPS_METRICS_INTERVAL_MS: '1000' } });
  metrics = await startMetricsServer(stack.metrics, 0, { host: '127.0.0.1' });
  const target = new URL(metrics.url).host;
  const workerPort = await freePort();
  worker = startInferenceWorkerProcess(stack, 'local', { SLUICE_METRICS_PORT: String(workerPort) });
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  tmp = mkdtempSync(path.join(tmpdir(), 'sluice-prometheus-'));
  writeFileSync(path.join(tmp, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    `rule_files: [${JSON.stringify(RULES)}]`,
    'scrape_configs:',
    `  - { job_name: sluice, static_configs: [{ targets: [${JSON.stringify(target)}] }] }`,
    `  - { job_name: sluice-worker-inference, static_configs: [{ targets: ["127.0.0.1:${workerPort}"] }] }`,
    '',
  ].join('\n'));
  prometheus = spawn('prometheus', [
    `--config.file=${path.join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(tmp, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  prometheus.stdout?.on('data', (d: Buffer) => { prometheusLog += d.toString(); });
  prometheus.stderr?.on('data', (d: Buffer) => { prometheusLog += d.toString(); });
  const exited = new Promise<never>((_, reject) => {
    prometheus.once('error', (err) => reject(new Error(`prometheus did not start (run scripts/install-prometheus.sh): ${err.message}`)));
    prometheus.once('exit', (code) => reject(new Error(`prometheus exited with ${code}: ${prometheusLog.slice(-2000)}`)));
  });
  exited.catch(() => undefined);
  const ready = (async () => {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ok = await fetch(`${prometheusUrl}/-/ready`).then((r) => r.ok, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`prometheus not ready: ${prometheusLog.slice(-2000)}`);
  })();
  await Promise.race([ready, exited]);

  slos.availability = await defineSlo({ name: 'tiny availability', kind: 'availability', scope: { type: 'model', value: 'sluice-tiny' }, target: 0.999 });
  slos.ttft = await defineSlo({ name: 'local ttft', kind: 'ttft_p95', scope: { type: 'pool', value: 'local' }, target: 0.9, threshold_ms: 600_000 });
  slos.latency = await defineSlo({ name: 'standard latency', kind: 'latency_p99', scope: { type: 'plan', value: 'standard' }, target: 0.9, threshold_ms: 600_000 });
  slos.batch = await defineSlo({ name: 'tiny batches', kind: 'batch_window', scope: { type: 'model', value: 'sluice-tiny' }, target: 0.99 });

  // Traffic: sync requests and a stream on llama.cpp, a request its tenant may not make (a 4xx
  // decided in the workflow), a tenant with a budget, and a batch.
  const { key } = await stack.createTenantKey();
  const client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  const ask = { model: 'sluice-tiny', messages: [{ role: 'user' as const, content: 'hello' }], max_tokens: 4 };
  for (let i = 0; i < 3; i++) await client.chat.completions.create(ask);
  const stream = await client.chat.completions.create({ ...ask, stream: true });
  let chunks = 0;
  for await (const chunk of stream) chunks += chunk.choices.length;
  expect(chunks).toBeGreaterThan(0);
  const refused = await stack.createTenantKey({ limits: { allowed_models: ['another-model'] } });
  const refusedClient = new OpenAI({ apiKey: refused.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  await expect(refusedClient.chat.completions.create(ask)).rejects.toMatchObject({ status: 403 });
  const budgeted = await stack.createTenantKey({ limits: { monthly_budget_micros: 5_000_000 } });
  await new OpenAI({ apiKey: budgeted.key, baseURL: `${stack.url}/v1`, maxRetries: 0 }).chat.completions.create(ask);
  const lines = ['a', 'b'].map((id) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: ask })).join('\n') + '\n';
  const file = await client.files.create({ file: await toFile(Buffer.from(lines), 'input.jsonl'), purpose: 'batch' });
  const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  const deadline = Date.now() + 120_000;
  for (;;) {
    const b = await client.batches.retrieve(batch.id);
    if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) {
      expect(b.status).toBe('completed');
      break;
    }
    if (Date.now() > deadline) throw new Error(`batch did not finish: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 240_000);

afterAll(async () => {
  prometheus?.kill('SIGTERM');
  if (worker && worker.exitCode === null) {
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.kill('SIGTERM');
    await exited;
  }
  await metrics?.stop();
  await stack?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('Prometheus scraping Sluice with the shipped rules and dashboard', () => {
  it('scrapes both metrics listeners: the stack and the separate inference worker', async () => {
    const problems = await eventually(async () => {
      const { activeTargets } = await api<{ activeTargets: Array<{ health: string; scrapeUrl: string; lastError: string }> }>('/api/v1/targets');
      if (activeTargets.length !== 2) return [`${activeTargets.length} targets`];
      return activeTargets.filter((t) => t.health !== 'up').map((t) => `${t.scrapeUrl}: ${t.health} ${t.lastError}`);
    }, 90_000);
    expect(problems).toEqual([]);
    // Sluice's own series come from the worker process too (not only the process metrics).
    const fromWorker = await eventually(async () => ((await query('count({job="sluice-worker-inference", __name__=~"sluice_.+"})')).length > 0 ? [] : ['no sluice_ series from the worker']), 30_000);
    expect(fromWorker).toEqual([]);
  }, 150_000);

  it('withoutThresholds takes out comparisons with numbers only', () => {
    expect(withoutThresholds('a:b:ratio_rate1h > (14.4 * 0.001)\nand\nx{le="10"} > (6 * 0.01)')).toBe('a:b:ratio_rate1h\nand\nx{le="10"}');
    expect(withoutThresholds('max by (t) (m) >= 0.8 < 1')).toBe('max by (t) (m)');
    expect(withoutThresholds('sum(rate(x{result!="failed"}[15m])) / sum(rate(y[15m])) > 0.5')).toBe('sum(rate(x{result!="failed"}[15m])) / sum(rate(y[15m]))');
  });

  it('evaluates every dashboard panel and every rule through the query API, each returning data', async () => {
    const panels = panelExpressions();
    expect(panels.length).toBeGreaterThanOrEqual(20);
    const records = rules.filter((r) => r.record);
    const alerts = rules.filter((r) => r.alert);
    expect(records.length).toBeGreaterThan(0);
    expect(alerts.length).toBeGreaterThan(0);
    const checks: Array<{ name: string; expr: string; needsData: boolean }> = [
      ...panels.map((p) => ({ name: `panel ${p.name}`, expr: p.expr, needsData: true })),
      ...records.flatMap((r) => [
        { name: `rule ${r.record}`, expr: r.expr, needsData: true },
        { name: `recorded ${r.record}`, expr: r.record as string, needsData: true },
      ]),
      ...alerts.flatMap((r) => [
        { name: `alert ${r.alert}`, expr: r.expr, needsData: false },
        { name: `alert ${r.alert} without thresholds`, expr: withoutThresholds(r.expr), needsData: true },
      ]),
    ];
    // Parse and evaluation errors fail at once (no amount of waiting fixes them).
    for (const c of checks) await expect(query(c.expr), c.name).resolves.toBeDefined();
    // Data appears as scrapes and rule evaluations happen: wait for all of it, with a deadline.
    const missing = await eventually(async () => {
      const left: string[] = [];
      for (const c of checks.filter((x) => x.needsData)) {
        if ((await query(c.expr)).length === 0) left.push(`${c.name}: ${c.expr.replace(/\s+/g, ' ')}`);
      }
      return left;
    }, 90_000);
    expect(missing).toEqual([]);
  }, 180_000);

  it('reports every shipped rule healthy', async () => {
    const problems = await eventually(async () => {
      const { groups } = await api<{ groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> }>('/api/v1/rules');
      const loaded = groups.flatMap((g) => g.rules);
      if (loaded.length !== rules.length) return [`${loaded.length} of ${rules.length} rules loaded`];
      return loaded.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
    }, 60_000);
    expect(problems).toEqual([]);
  }, 90_000);

  it('sees the traffic it sent: succeeded and client-error outcomes, a stream TTFT, the budget and the batch', async () => {
    const problems = await eventually(async () => {
      const left: string[] = [];
      const outcomes = new Set((await query('sum by (outcome) (sluice_requests_total)')).map((r) => r.metric['outcome']));
      for (const o of ['succeeded', 'client_error']) if (!outcomes.has(o)) left.push(`outcome ${o}`);
      const ttft = await query('sum(sluice_stream_ttft_seconds_count{model="sluice-tiny"})');
      if (Number(ttft[0]?.value[1] ?? 0) < 1) left.push('ttft');
      if ((await query('sluice_tenant_budget_used_ratio')).length !== 1) left.push('one budgeted tenant');
      const total = await query('max(sluice_batch_lines{state="total",status="completed"})');
      if (Number(total[0]?.value[1] ?? 0) !== 2) left.push('batch of 2 lines');
      if (Number((await query('min(sluice_audit_chain_valid)'))[0]?.value[1] ?? -1) !== 1) left.push('audit chain valid');
      return left;
    }, 60_000);
    expect(problems).toEqual([]);
  }, 90_000);

  it('fires SluiceSloBudgetBurnFast for a plan objective whose requests fail to start, and not for the healthy objectives', async () => {
    const firing = async () => {
      const { alerts } = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts');
      return alerts.filter((a) => a.labels['alertname'] === 'SluiceSloBudgetBurnFast' && a.state === 'firing');
    };
    const plan = `burning-${Math.random().toString(36).slice(2, 8)}`;
    const tenant = await stack.admin('POST', '/v1/admin/tenants', { name: `burn-${plan}`, plan });
    expect(tenant.status).toBe(201);
    const key = await stack.admin('POST', `/v1/admin/tenants/${tenant.body.id as string}/keys`, { role: 'developer' });
    expect(key.status).toBe(201);
    const burning = await defineSlo({ name: 'burning plan', kind: 'availability', scope: { type: 'plan', value: plan }, target: 0.999 });
    const client = new OpenAI({ apiKey: key.body.key as string, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const ask = { model: 'sluice-tiny', messages: [{ role: 'user' as const, content: 'hello' }], max_tokens: 4 };
    // Settled before the failures: the burn rate below counts it as good.
    await settled(stack, await client.chat.completions.create(ask));
    // Temporal unreachable for three requests: 503s before any workflow exists.
    const grpc = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14, details: 'No connection established', metadata: {} });
    const spy = vi.spyOn(stack.client.workflow, 'start').mockRejectedValue(new ServiceError('Failed to start Workflow', { cause: grpc }));
    try {
      for (let i = 0; i < 3; i++) await expect(client.chat.completions.create(ask)).rejects.toMatchObject({ status: 503 });
    } finally {
      spy.mockRestore();
    }
    const problems = await eventually(async () => ((await firing()).some((a) => a.labels['slo'] === burning) ? [] : [`SluiceSloBudgetBurnFast is not firing for ${burning}`]), 60_000);
    expect(problems).toEqual([]);
    expect((await firing()).find((a) => a.labels['slo'] === burning)?.labels).toMatchObject({ severity: 'page', kind: 'availability', scope_type: 'plan', scope: plan });
    // 3 of 4 failed: the recorded burn rate is 750 over 5m and 1h.
    const rate = await query(`sluice:slo_burn_rate{slo="${burning}",window="5m"}`);
    expect(Number(rate[0]?.value[1])).toBeCloseTo(750, 6);
    // The TTFT, latency and batch objectives are healthy: not firing.
    const quiet = (await firing()).filter((a) => [slos.ttft, slos.latency, slos.batch].includes(a.labels['slo'] ?? ''));
    expect(quiet).toEqual([]);
  }, 90_000);

  // Last: it breaks the chain for good.
  it('fires SluiceAuditChainBroken once a row of the audit chain is altered', async () => {
    const firing = async () => {
      const { alerts } = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts');
      return alerts.filter((a) => a.labels['alertname'] === 'SluiceAuditChainBroken' && a.state === 'firing');
    };
    expect(await firing()).toEqual([]);
    // As the table's owner would, past the append-only trigger: the newest row's actor changes.
    await sql`alter table audit_log disable trigger user`.execute(stack.db);
    try {
      await sql`update audit_log set actor = 'key:forged' where seq = (select max(seq) from audit_log)`.execute(stack.db);
    } finally {
      await sql`alter table audit_log enable trigger user`.execute(stack.db);
    }
    const problems = await eventually(async () => ((await firing()).length === 1 ? [] : ['SluiceAuditChainBroken is not firing']), 60_000);
    expect(problems).toEqual([]);
    expect((await firing())[0]?.labels).toMatchObject({ severity: 'page', mode: 'incremental' });
  }, 90_000);
});
