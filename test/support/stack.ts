/**
 * A whole Sluice stack for one test file, on real parts: its own PostgreSQL database (on the run's
 * server), its own Temporal dev server, the control worker, inference workers and the API on a
 * free port. `createTenantKey` makes a tenant and a key through the admin API.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { inject } from 'vitest';
import { bundleControlWorkflows } from '../../workers/control-worker.js';
import { WORKFLOW_INTERCEPTOR_MODULES, type Tracing } from '../../runtime/tracing.js';
import { loadConfig, type SluiceConfig } from '../../runtime/config.js';
import { createLogger } from '../../runtime/logger.js';
import { startStack, type Stack } from '../../scripts/lib/system.js';
import { startTemporalDevServer, type RunningDevServer } from '../../scripts/lib/temporal-dev-server.js';
import { ensureAdminKey, ensureModels } from '../../scripts/lib/bootstrap.js';
import type { BreakerConfig } from '../../domain/circuit-breaker.js';
import { chatWorkflowId, requestWorkflowId } from '../../contracts/ids.js';
import { requestIdOf } from '../../api/routes/feedback.js';

export interface TestStackOptions {
  pools?: string[];
  breaker?: BreakerConfig;
  /** Extra environment for loadConfig. */
  env?: Record<string, string>;
  /** Temporal persistence file (for restart tests); null = in memory. */
  temporalDbFile?: string | null;
  temporalPort?: number;
  /**
   * Traces installed by the test (`installTracing` with an in-memory exporter): the client and
   * workers get its interceptors. Without it the stack installs what `env`'s `OTEL_*` ask for
   * (nothing by default). @default none (tracing from `env`: off)
   */
  tracing?: Tracing;
}

export interface TestStack extends Stack {
  config: SluiceConfig;
  databaseUrl: string;
  temporal: RunningDevServer;
  adminKey: string;
  url: string;
  /** Logs written by the stack (JSON lines), for secret scans. */
  logs: string[];
  createTenantKey(opts?: { limits?: Record<string, unknown>; role?: string; scopes?: string[] }): Promise<{ tenantId: string; key: string; keyId: string }>;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

export async function createDatabase(): Promise<string> {
  const adminUrl = inject('pgAdminUrl');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  await client.query(`create database ${name}`);
  await client.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function startTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  const databaseUrl = await createDatabase();
  const temporal = await startTemporalDevServer({ dbFile: options.temporalDbFile ?? null, port: options.temporalPort, uiPort: null });
  const pools = options.pools ?? ['local'];
  const config = loadConfig({
    PORT: '0',
    SLUICE_DATA_DIR: inject('sharedDataDir'),
    SLUICE_THREADS: '1',
    SLUICE_SLOTS: '4',
    SLUICE_CONTEXT_SIZE: '1024',
    SLUICE_POOL: pools[0] ?? 'local',
    SLUICE_POOLS: pools.join(','),
    SLUICE_LOG_LEVEL: 'info',
    // Fake upstreams (test/support/fake-openai-upstream.ts) listen on loopback: allowed explicitly.
    SLUICE_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
    // Pipeline tests serve models from the instant test backend (off unless enabled).
    SLUICE_ENABLE_INSTANT_BACKEND: 'true',
    ...options.env,
  });
  const logs: string[] = [];
  const log = createLogger('info', { process: 'test' }, (line) => logs.push(line));
  // Traced workflows need the interceptor module in their bundle: built here for a test's own
  // tracing; with tracing from `env`, the control worker bundles `workflows/` with it, as in production.
  const workflowBundle = options.tracing
    ? { code: (await bundleControlWorkflows({ workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES })).code }
    : config.tracing ? null : { codePath: inject('workflowBundlePath') };
  const stack = await startStack(config, {
    databaseUrl, temporalAddress: temporal.address, api: true, control: true, pools, log,
    workflowBundle, ...(options.tracing ? { tracing: options.tracing } : {}),
    ...(options.breaker ? { breaker: options.breaker } : {}),
  });
  const admin = await ensureAdminKey(stack.db, null);
  await ensureModels(stack.db, { pool: config.pool, contextSize: config.contextSize, ggufModels: config.ggufModels });
  const url = stack.url as string;
  const adminKey = admin.secret as string;

  async function call(key: string, method: string, path: string, body?: unknown) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  const testStack: TestStack = {
    ...stack,
    config, databaseUrl, temporal, adminKey, url, logs,
    admin: (method, path, body) => call(adminKey, method, path, body),
    async createTenantKey(opts = {}) {
      const t = await call(adminKey, 'POST', '/v1/admin/tenants', { name: `tenant-${randomBytes(3).toString('hex')}`, ...(opts.limits ? { limits: opts.limits } : {}) });
      if (t.status !== 201) throw new Error(`tenant create failed: ${JSON.stringify(t.body)}`);
      const k = await call(adminKey, 'POST', `/v1/admin/tenants/${t.body.id}/keys`, { role: opts.role ?? 'developer', ...(opts.scopes ? { scopes: opts.scopes } : {}) });
      if (k.status !== 201) throw new Error(`key create failed: ${JSON.stringify(k.body)}`);
      return { tenantId: t.body.id as string, key: k.body.key as string, keyId: k.body.id as string };
    },
    async stop() {
      await stack.stop();
      // A test may have restarted the server: stop the one the stack holds now.
      await testStack.temporal.stop();
    },
  };
  return testStack;
}

/** Registers a model through the admin API; fails the test on anything but 201. */
export async function addModel(stack: TestStack, body: Record<string, unknown>): Promise<void> {
  const r = await stack.admin('POST', '/v1/admin/models', body);
  if (r.status !== 201) throw new Error(`model create failed: ${JSON.stringify(r.body)}`);
}

/** Polls a job until `until(status)` or the deadline; tolerates the API being briefly unable to answer. */
export async function pollJob(stack: TestStack, key: string, id: string, until: (status: string) => boolean, timeoutMs = 90_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any = null;
  while (Date.now() < deadline) {
    const res = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${key}` } }).catch(() => null);
    if (res?.ok) {
      last = await res.json();
      if (until(last.status)) return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return last;
}

/** Starts a chat request with `Prefer: respond-async` and returns the job. */
export async function startJob(stack: TestStack, key: string, body: Record<string, unknown>): Promise<any> {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', Prefer: 'respond-async' },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`async create failed: ${res.status} ${await res.text()}`);
  return res.json();
}

/**
 * Waits until the workflow of the request a completion (or its ID) answered has closed, however it
 * ended: a sync answer leaves once the served attempt is durable, and its settlement (usage row,
 * audit row, final status, cache entry) follows in the workflow (README "When a sync answer leaves").
 * A test that reads what the settlement writes calls this first.
 */
export async function settled(stack: Pick<TestStack, 'client'>, completion: { id: string } | string): Promise<void> {
  const id = typeof completion === 'string' ? completion : completion.id;
  const requestId = requestIdOf(id);
  if (requestId === null) throw new Error(`not a request or completion ID: ${id}`);
  await stack.client.workflow.getHandle(requestWorkflowId(requestId)).result().catch(() => undefined);
}

/**
 * Waits until the chat job's inference activity has heartbeated generated tokens: it is
 * mid-generation on a real backend (heartbeats reach the server at most every 2 s, the worker's
 * throttle, so the model must generate for longer than that: `sluice-slow.gguf`). Fails at once
 * when the workflow closes or `worker` (a worker process serving the job) exits, and says in its
 * error what the workflow's pending activity and the worker process last showed.
 */
export async function waitForGeneration(stack: TestStack, requestId: string, timeoutMs = 60_000, worker?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const handle = stack.client.workflow.getHandle(chatWorkflowId(requestId));
  let seen = 'no describe answered';
  while (Date.now() < deadline) {
    const d = await handle.describe().catch((err: Error) => {
      seen = `describe failed: ${err.message}`;
      return null;
    });
    if (d) {
      const pending = d.raw.pendingActivities?.[0];
      seen = `workflow ${d.status.name}; ` + (pending
        ? `pending ${pending.activityType?.name} state ${pending.state} attempt ${pending.attempt}` +
          (pending.lastFailure ? ` last failure: ${pending.lastFailure.message}` : '') +
          (pending.lastWorkerIdentity ? ` on ${pending.lastWorkerIdentity}` : '')
        : 'no pending activity');
      if (pending?.heartbeatDetails?.payloads?.length) {
        const details = JSON.parse(Buffer.from(pending.heartbeatDetails.payloads[0]!.data!).toString());
        if (details.completionTokens > 0) return;
        seen += `; heartbeat ${JSON.stringify(details)}`;
      }
      if (d.status.name !== 'RUNNING') break;
    }
    if (worker && exited(worker)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const output = worker ? `; worker process ${exited(worker) ? `exited (${worker.exitCode ?? worker.signalCode})` : 'running'}, its output: ${workerOutput(worker) || '(none)'}` : '';
  throw new Error(`job ${requestId} did not start generating (${seen})${output}`);
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

const outputTails = new WeakMap<ChildProcess, string[]>();

/** The last lines a process from `startInferenceWorkerProcess` wrote to stdout and stderr. */
export function workerOutput(child: ChildProcess): string {
  return (outputTails.get(child) ?? []).join('\n');
}

/**
 * Registers a model served by the instant backend on pool `local` (no model time: for tests of
 * Sluice's own pipeline, never of inference; see docs/testing.md). Prices are micro-USD per 1M tokens.
 */
export async function addInstantModel(
  stack: TestStack,
  id = 'instant',
  price = { input_micros_per_mtok: 100_000, output_micros_per_mtok: 200_000 },
): Promise<void> {
  await addModel(stack, { id, context_length: 4096, max_output_tokens: 16, deployments: [{ id: `${id}-local`, provider: 'instant', pool: 'local', price }] });
}

/**
 * `npm run worker:inference` for `pool` as its own process against the stack's Temporal server
 * (a process a test can kill), with `env` on top (e.g. its database or stream-channel URL).
 */
export function startInferenceWorkerProcess(stack: TestStack, pool: string, env: Record<string, string>): ChildProcess {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/worker-inference.ts')], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      TEMPORAL_ADDRESS: stack.temporal.address,
      SLUICE_POOL: pool,
      SLUICE_DATA_DIR: inject('sharedDataDir'),
      SLUICE_THREADS: '1',
      SLUICE_SLOTS: '2',
      SLUICE_CONTEXT_SIZE: '1024',
      PORT: '0',
      SLUICE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  outputTails.set(child, tail);
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      tail.push(...chunk.split('\n').filter((line) => line.trim() !== ''));
      tail.splice(0, Math.max(0, tail.length - 40));
    });
  }
  return child;
}
