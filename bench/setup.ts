/** What every benchmark sets up: a temp data dir with free ports, an instant model, a tenant and key. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Db } from '../db/database.js';
import { loadConfig, type SluiceConfig } from '../runtime/config.js';
import { createLogger, type Logger } from '../runtime/logger.js';
import type { Server } from 'node:http';
import { apiConfigOf, startInfra, startStack, type Infra, type Stack } from '../scripts/lib/system.js';
import { createApp, type AppConfig } from '../api/app.js';
import { createMetrics } from '../runtime/metrics.js';
import { createTenant } from '../db/repositories/tenants.js';
import { createKey } from '../db/repositories/keys.js';
import { createModel } from '../db/repositories/models.js';
import { freePort } from '../scripts/lib/free-port.js';

/** A fresh data dir (world-traversable: PostgreSQL runs as its own user) and the env for loadConfig. */
export async function benchEnv(name: string, extra: Record<string, string> = {}): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `sluice-bench-${name}-`));
  await fs.chmod(dir, 0o755);
  const env = {
    SLUICE_DATA_DIR: dir, PORT: '0', SLUICE_PG_PORT: String(await freePort()), SLUICE_TEMPORAL_PORT: String(await freePort()),
    SLUICE_POOL: 'bench', SLUICE_LOG_LEVEL: 'warn', SLUICE_ENABLE_INSTANT_BACKEND: 'true', ...extra,
  };
  return { dir, env };
}

/** What {@link withBenchInfra} hands a benchmark. */
export interface BenchInfra {
  dir: string;
  env: Record<string, string>;
  config: SluiceConfig;
  log: Logger;
  infra: Infra;
  /** The Temporal dev server's pid, for its CPU and memory. */
  temporalPid: number | undefined;
}

/**
 * A fresh data dir ({@link benchEnv}), its config, and embedded PostgreSQL and the Temporal dev
 * server in it for the length of `run`; afterwards both are stopped and the dir removed.
 * `options.devServerArgs` go to the dev server's command line; `options.onTemporalLine` gets each
 * line the dev server prints (the logger drops them below debug level).
 */
export async function withBenchInfra<T>(
  name: string, extra: Record<string, string>, run: (bench: BenchInfra) => Promise<T>,
  options: { devServerArgs?: readonly string[]; onTemporalLine?: (line: string) => void } = {},
): Promise<T> {
  const { dir, env } = await benchEnv(name, extra);
  try {
    const config = loadConfig(env);
    const log = createLogger('warn');
    const { onTemporalLine } = options;
    // startInfra hands the dev server's output to `log.debug('temporal', { line })`.
    const infraLog: Logger = onTemporalLine === undefined ? log : {
      ...log,
      debug(msg, fields) {
        if (msg === 'temporal' && typeof fields?.line === 'string') onTemporalLine(fields.line);
        log.debug(msg, fields);
      },
    };
    const infra = await startInfra(config, infraLog, undefined, options.devServerArgs ?? []);
    try {
      return await run({ dir, env, config, log, infra, temporalPid: infra.temporal?.process.pid });
    } finally {
      await infra.stop();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Sluice in this process on the bench's servers — the API, the control worker and inference
 * workers for `pools` (default `bench`) — for the length of `run`, then stopped.
 */
export async function withStack<T>(
  bench: BenchInfra, options: { pools?: readonly string[]; config?: SluiceConfig }, run: (stack: Stack & { url: string }) => Promise<T>,
): Promise<T> {
  const stack = await startStack(options.config ?? bench.config, {
    databaseUrl: bench.infra.databaseUrl, temporalAddress: bench.infra.temporalAddress, api: true, control: true, pools: options.pools ?? ['bench'], log: bench.log,
  });
  try {
    return await run(stack as Stack & { url: string });
  } finally {
    await stack.stop();
  }
}

/** A benchmark's results, as indented JSON on stdout (bench/run.ts keeps them in bench/results/). */
export function printResults(results: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

/** The machine the numbers come from. */
export function machine() {
  return { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', memory_gib: Math.round(os.totalmem() / 2 ** 30) };
}

/** A model served by the instant backend on `pool`; prices in micro-USD per 1M tokens. */
export async function addInstantModel(
  db: Db,
  opts: { id?: string; deploymentId?: string; pool?: string; input?: number; output?: number; effectiveFrom?: Date } = {},
): Promise<void> {
  const id = opts.id ?? 'instant';
  await createModel(db, {
    id, ownedBy: 'sluice', contextLength: 4096, maxOutputTokens: 16,
    deployments: [{
      id: opts.deploymentId ?? `${id}-bench`, pool: opts.pool ?? 'bench', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null,
      upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: opts.input ?? 100_000, outputMicrosPerMtok: opts.output ?? 200_000,
    }],
  }, opts.effectiveFrom ?? new Date());
}

/** A tenant (unlimited unless a monthly budget is given). */
export async function addTenant(db: Db, name = 'bench', budget: number | null = null): Promise<string> {
  const tenant = await createTenant(db, {
    name, plan: 'standard',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: budget, allowed_models: null },
  });
  return tenant.id;
}

/** A tenant and a developer key for it. */
export async function addTenantKey(db: Db, budget: number | null = null, name = 'bench'): Promise<{ tenantId: string; keyId: string; secret: string }> {
  const tenantId = await addTenant(db, name, budget);
  const { key, secret } = await createKey(db, { tenantId, role: 'developer', name: 'bench', scopes: null, expiresAt: null });
  return { tenantId, keyId: key.id, secret };
}

const SYNC_BODY = JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: 'benchmark' }], max_tokens: 2 });

/** The request of {@link syncChat}, for the load client in its own process (`bench/load-client.ts`). */
export function syncChatTarget(url: string, key: string): { url: string; headers: Record<string, string>; body: string } {
  return { url: `${url}/v1/chat/completions`, headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: SYNC_BODY };
}

/** One sync chat completion of the instant model through the API; its latency in ms (throws unless 200). */
export async function syncChat(url: string, key: string): Promise<number> {
  const t = performance.now();
  const target = syncChatTarget(url, key);
  const res = await fetch(target.url, { method: 'POST', headers: target.headers, body: target.body });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
  return performance.now() - t;
}

/** Runs a benchmark's main, printing a failure and setting a non-zero exit code. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}

/**
 * Another API of `stack` in this process (its database, its Temporal client, so eager start as
 * the stack's own), on a free port, with `overrides` over the settings `config` gives: a side of a
 * benchmark that differs only in the API's settings (e.g. `earlyAnswer`).
 */
export async function startApi(stack: Stack, config: SluiceConfig, overrides: Partial<AppConfig>): Promise<{ url: string; close: () => Promise<void> }> {
  const app = createApp({
    temporal: stack.client, db: stack.db, metrics: createMetrics({ defaults: false }), log: createLogger('warn'),
    config: { ...apiConfigOf(config, { eagerStart: true }), ...overrides },
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
