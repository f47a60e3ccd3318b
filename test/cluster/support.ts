/**
 * The cluster for tests: `startCluster` (scripts/lib/cluster/cluster.ts) on a fresh state folder,
 * with the run's generated models, plus the clients a test needs (a Temporal client, a database
 * pool for assertions, the admin API through the load balancer) and a load generator whose
 * clients retry with `Idempotency-Key` as a careful client would.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../../runtime/config.js';
import { createLogger } from '../../runtime/logger.js';
import { startCluster, type Cluster } from '../../scripts/lib/cluster/cluster.js';
import { freePort } from '../../scripts/lib/free-port.js';

export interface TestCluster extends Cluster {
  adminKey: string;
  temporalClient: Client;
  db: pg.Pool;
  stateDir: string;
  /** A call through the load balancer (or `base`); never throws on an HTTP status. */
  call(key: string, method: string, path: string, body?: unknown, headers?: Record<string, string>, base?: string): Promise<{ status: number; body: any; headers: Headers }>;
  createTenantKey(limits?: Record<string, unknown>): Promise<{ tenantId: string; key: string }>;
  close(): Promise<void>;
}

export async function startTestCluster(): Promise<TestCluster> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-cluster-'));
  // As root, embedded PostgreSQL runs as the postgres user, which must enter the folder.
  await fs.chmod(stateDir, 0o755);
  const adminKey = `sk-admin-${randomBytes(16).toString('hex')}`;
  const config = loadConfig({
    PORT: '0',
    SLUICE_DATA_DIR: stateDir,
    SLUICE_PG_PORT: String(await freePort()),
    SLUICE_TEMPORAL_PORT: String(await freePort()),
    SLUICE_ADMIN_KEY: adminKey,
    SLUICE_AUDIT_KEY: randomBytes(32).toString('hex'),
    // Payloads encrypted: every process must carry the same codec, or nothing runs.
    SLUICE_PAYLOAD_KEY: randomBytes(32).toString('base64'),
    SLUICE_POOL: 'local',
    SLUICE_THREADS: '1',
    SLUICE_SLOTS: '2',
    SLUICE_CONTEXT_SIZE: '1024',
    // The larger generated model (global setup), for a generation long enough to be killed mid-way.
    SLUICE_GGUF_MODELS: 'sluice-slow=sluice-slow.gguf',
    SLUICE_LOG_LEVEL: 'warn',
  });
  const cluster = await startCluster({
    config, stateDir, sluiceDataDir: inject('sharedDataDir'), log: createLogger('warn', { process: 'cluster-test' }),
    roleEnv: { api: { SLUICE_DB_POOL_SIZE: '8' }, 'worker-control': { SLUICE_DB_POOL_SIZE: '8', SLUICE_WORKFLOW_THREADS: '1' } },
  });
  const connection = await Connection.connect({ address: cluster.temporalAddress });
  const temporalClient = new Client({ connection, namespace: cluster.namespace });
  const db = new pg.Pool({ connectionString: cluster.databaseUrl, max: 4 });
  // PostgreSQL restarts under the tests: an idle client's error must not crash the test process.
  db.on('error', () => undefined);

  async function call(key: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}, base = cluster.url) {
    const res = await fetch(`${base}${p}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // SSE or an HTML error page of the load balancer: kept as text.
    }
    return { status: res.status, body: parsed as any, headers: res.headers };
  }

  return {
    ...cluster,
    adminKey, temporalClient, db, stateDir, call,
    async createTenantKey(limits) {
      const t = await call(adminKey, 'POST', '/v1/admin/tenants', { name: `tenant-${randomBytes(3).toString('hex')}`, ...(limits ? { limits } : {}) });
      if (t.status !== 201) throw new Error(`tenant create failed: ${t.status} ${JSON.stringify(t.body)}`);
      const k = await call(adminKey, 'POST', `/v1/admin/tenants/${t.body.id}/keys`, { role: 'developer' });
      if (k.status !== 201) throw new Error(`key create failed: ${k.status} ${JSON.stringify(k.body)}`);
      return { tenantId: t.body.id as string, key: k.body.key as string };
    },
    async close() {
      await connection.close().catch(() => undefined);
      await db.end().catch(() => undefined);
      await cluster.stop();
      await fs.rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** Waits until `check` is true, polling; throws with `what` at the deadline. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await Promise.resolve(check()).catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export type OpKind = 'sync' | 'async' | 'stream';

/** One client operation, retried with the same Idempotency-Key until it is accepted. */
export interface Op {
  kind: OpKind;
  idempotencyKey: string;
  /** HTTP statuses and network errors of the attempts that did not succeed. */
  retries: string[];
  /** A response that is neither success, a final answer nor retryable (a defect). */
  failure: string | null;
  /**
   * The request ended in a final error its retries keep answering (a stream whose generation died
   * after its first chunk: `stream_interrupted`, by design never restarted), or null.
   */
  finalError: string | null;
  /** Sync and stream: the completion; async: the job. */
  response: any;
}

/** Statuses a careful client retries (with the same Idempotency-Key): the load balancer's and an unavailable backend's. */
const RETRYABLE = new Set([500, 502, 503, 504]);

/** Error codes that are a request's final outcome: a retry with the same Idempotency-Key gets them again. */
const FINAL_ERRORS = new Set(['stream_interrupted']);

/** Runs one operation through the load balancer, retrying as a careful client would, for at most `timeoutMs`. */
export async function runOp(cluster: TestCluster, key: string, kind: OpKind, timeoutMs = 240_000): Promise<Op> {
  const op: Op = { kind, idempotencyKey: randomUUID(), retries: [], failure: null, finalError: null, response: null };
  const body = { model: 'sluice-tiny', messages: [{ role: 'user', content: `load ${kind} ${op.idempotencyKey.slice(0, 8)}` }], max_tokens: 6, temperature: 0, ...(kind === 'stream' ? { stream: true } : {}) };
  const headers: Record<string, string> = { 'Idempotency-Key': op.idempotencyKey, ...(kind === 'async' ? { Prefer: 'respond-async' } : {}) };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await cluster.call(key, 'POST', '/v1/chat/completions', body, headers);
      const ok = kind === 'async' ? res.status === 202 : res.status === 200;
      if (ok && kind === 'stream') {
        const text = String(res.body);
        // A stream cut off by a killed process ends without [DONE] (or with an error event): retried.
        if (text.includes('data: [DONE]') && !text.includes('"error"')) {
          op.response = text;
          return op;
        }
        if (text.includes('"stream_interrupted"')) {
          op.finalError = 'stream_interrupted';
          op.response = text;
          return op;
        }
        op.retries.push('stream cut short');
      } else if (ok) {
        op.response = res.body;
        return op;
      } else if (FINAL_ERRORS.has(res.body?.error?.code)) {
        op.finalError = res.body.error.code as string;
        op.response = res.body;
        return op;
      } else if (RETRYABLE.has(res.status)) {
        op.retries.push(String(res.status));
      } else {
        op.failure = `${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
        return op;
      }
    } catch (err) {
      op.retries.push(err instanceof Error ? err.message : String(err));
    }
    if (Date.now() > deadline) {
      op.failure = `not accepted within ${timeoutMs} ms; retries: ${op.retries.slice(-5).join(', ')}`;
      return op;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Client loops sending a steady mix of sync, async and streamed requests until `stop()`. */
export function startLoad(cluster: TestCluster, key: string, clients = 4) {
  const ops: Op[] = [];
  let running = true;
  const kinds: OpKind[] = ['sync', 'async', 'stream'];
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = c; running; i++) ops.push(await runOp(cluster, key, kinds[i % kinds.length] as OpKind));
  });
  return {
    ops,
    /** Resolves once `n` more operations have been accepted (proof the system serves again). */
    async progress(n: number, timeoutMs = 180_000) {
      const target = ops.filter((o) => o.failure === null).length + n;
      await waitUntil(`${n} more accepted requests`, () => ops.filter((o) => o.failure === null).length >= target, timeoutMs);
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      return ops;
    },
  };
}

/** Milliseconds to wait between polls of a condition. */
export const POLL_MS = 200;

/** The request row of an operation's Idempotency-Key, for `tenantId`. */
export async function requestsOf(cluster: TestCluster, tenantId: string): Promise<Array<{ id: string; idempotency_key: string | null; status: string }>> {
  const r = await cluster.db.query('select id, idempotency_key, status from requests where tenant_id = $1', [tenantId]);
  return r.rows;
}
