/**
 * A hostile tenant against the shared API, on the real stack (issue 12 items 3, 7, 8, 9): uploads
 * that trickle a byte a second and exports nobody reads must not take the pg pool, the API or
 * Temporal from another tenant, and the API must serve once they are gone; a huge line is refused,
 * a stalled body cut off, a busy pool answered 503, per-tenant caps refused with their codes, and a
 * request over its rate limit refused before it leaves any trace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { addInstantModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { startSecondApi } from '../support/second-api.js';
import { createDb } from '../../db/database.js';
import { insertBatch } from '../../db/repositories/batches.js';
import { newId } from '../../domain/ids.js';
import { DEFAULT_TENANT_CAPS } from '../../api/tenant-caps.js';

const EXPORT_ROWS = 200_000; // ~35 MB of CSV per export: far more than loopback socket buffers hold
const HOSTILE = 25;

let stack: TestStack;
let attacker: { tenantId: string; key: string };
let victim: { tenantId: string; key: string };

beforeAll(async () => {
  stack = await startTestStack({
    env: {
      // The hostile tenant's uploads and exports are let in (the caps are tested on their own
      // below): what is tested here is that they hold no pool connection while they wait.
      SLUICE_TENANT_MAX_CONCURRENT_UPLOADS: '100',
      SLUICE_TENANT_MAX_CONCURRENT_EXPORTS: '100',
      // Trickles are not cut off by the least-progress watchdog during the test (tested below).
      SLUICE_UPLOAD_PROGRESS_WINDOW_MS: '600000',
      SLUICE_UPLOAD_MIN_BYTES_PER_WINDOW: '1',
    },
  });
  await addInstantModel(stack);
  attacker = await stack.createTenantKey({ role: 'tenant_admin' });
  victim = await stack.createTenantKey();
  await sql`
    insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant,
                       input_tokens, output_tokens, cost_micros, latency_ms, created_at)
    select 'req_hostile_' || g, 'infer', ${attacker.tenantId}, 'key_x', 'sync', 'export-model', 'export-dep', 'local', null,
           100, 20, 30, 5, '2025-07-01T00:00:00Z'::timestamptz + (g::double precision / ${EXPORT_ROWS}) * interval '30 days'
    from generate_series(0, ${EXPORT_ROWS - 1}) g`.execute(stack.db);
  // The model is loaded by a first request: the victim's requests below are measured warm.
  const warm = performance.now();
  expect((await chat(victim.key, 'sluice-tiny')).status).toBe(200);
  console.log(`victim's sync chat before the attack: ${Math.round(performance.now() - warm)} ms`);
}, 300_000);

afterAll(async () => {
  await stack?.stop();
});

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

/** Opens a raw connection and writes `head`; resolves once connected. */
function rawRequest(url: string, head: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(hostPort(url), () => {
      socket.write(head);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

const BOUNDARY = 'sluicehostile';

/** A multipart upload that announces 10 MB, sends its first bytes, then one byte per `everyMs`. */
async function trickleUpload(url: string, key: string, everyMs = 1000): Promise<{ socket: net.Socket; stop: () => void; response: Promise<string> }> {
  const preamble = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n`
    + `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n{"custom_id":"`;
  const socket = await rawRequest(url, `POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n`
    + `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: 10000000\r\n\r\n${preamble}`);
  socket.on('error', () => undefined);
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write('a');
  }, everyMs);
  let received = '';
  const response = new Promise<string>((resolve) => {
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('close', () => resolve(received));
  });
  return { socket, stop: () => clearInterval(timer), response };
}

/** An export whose client reads its first bytes and then nothing more. */
async function unreadExport(url: string, key: string): Promise<{ socket: net.Socket; started: Promise<string> }> {
  const socket = await rawRequest(url, `GET /v1/admin/usage/export?period=2025-07&format=csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`);
  socket.on('error', () => undefined);
  const started = new Promise<string>((resolve) => {
    socket.once('data', (d: Buffer) => {
      socket.pause();
      resolve(d.toString().split('\r\n')[0] ?? '');
    });
  });
  return { socket, started };
}

async function chat(key: string, model: string, url = stack.url): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 }),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

async function upload(key: string, content: string | Blob, url = stack.url): Promise<{ status: number; body: any }> {
  const form = new FormData();
  form.set('purpose', 'batch');
  form.set('file', content instanceof Blob ? content : new Blob([content]), 'in.jsonl');
  const res = await fetch(`${url}/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: form });
  return { status: res.status, body: await res.json() };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `pool.connect()`, retried while it fails on its connection timeout, until a deadline. */
async function connectWithin(pool: ReturnType<typeof createDb>['pool'], timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await pool.connect();
    } catch (error) {
      if (Date.now() > deadline || !String((error as Error).message).includes('timeout')) throw error;
    }
  }
}

describe('a hostile tenant', () => {
  // Pipeline only (docs/testing.md): uploads, exports, the pg pool, caps and the rate limit. The
  // victim's requests run on llama.cpp (`sluice-tiny`); the instant model serves the rate-limit test.
  it('25 trickling uploads and 25 unread exports starve nobody; the API serves after they close', async () => {
    const server = stack.server as NonNullable<TestStack['server']>;
    const connections = () => new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
    const base = await connections();
    const trickles = await Promise.all(Array.from({ length: HOSTILE }, () => trickleUpload(stack.url, attacker.key)));
    const exports = await Promise.all(Array.from({ length: HOSTILE }, () => unreadExport(stack.url, attacker.key)));
    // Every export answered 200 and began streaming, then its client stopped reading.
    const statusLines = await Promise.all(exports.map((e) => e.started));
    expect(statusLines.every((l) => l.includes(' 200 '))).toBe(true);
    await waitFor('all hostile connections open', async () => (await connections()) >= base + 2 * HOSTILE);

    const started = performance.now();
    const during = await chat(victim.key, 'sluice-tiny');
    const ms = Math.round(performance.now() - started);
    console.log(`victim's sync chat during the attack: ${ms} ms`);
    expect(during.status).toBe(200);
    expect(during.body.choices).toHaveLength(1);
    // The trickles were being received all along: each is spooling (nothing cut them off).
    expect(trickles.every((t) => !t.socket.destroyed)).toBe(true);
    const spoolDir = path.join(stack.config.dataDir, 'uploads');
    const spooling = async () => (await readdir(spoolDir).catch(() => [] as string[])).filter((f) => f.endsWith('.part')).length;
    expect(await spooling()).toBe(HOSTILE);

    for (const t of trickles) {
      t.stop();
      t.socket.destroy();
    }
    for (const e of exports) e.socket.destroy();
    // Nothing of the aborted uploads stays: no file, no spool file, no transaction left open.
    await waitFor('spool files removed', async () => (await spooling()) === 0);
    await waitFor('no transaction left open', async () => {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where datname = current_database() and state like 'idle in transaction%'`.execute(stack.db);
      return rows[0]?.n === 0;
    });
    const files = await sql<{ n: number }>`select count(*)::int as n from files where tenant_id = ${attacker.tenantId}`.execute(stack.db);
    expect(files.rows[0]?.n).toBe(0);

    const afterStarted = performance.now();
    const after = await chat(victim.key, 'sluice-tiny');
    console.log(`victim's sync chat after the attack: ${Math.round(performance.now() - afterStarted)} ms`);
    expect(after.status).toBe(200);
    expect((await upload(victim.key, '{"a":1}\n')).status).toBe(200);
  }, 240_000);

  it('a huge line without newlines is refused with 400 line_too_long naming the line', async () => {
    const huge = new Blob(['{"custom_id":"ok"}\n', 'x'.repeat(8 * 1024 * 1024)]);
    const r = await upload(victim.key, huge);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'line_too_long', param: 'file' });
    expect(r.body.error.message).toContain('line 2');
  }, 120_000);

  it('cuts off an upload body below the least progress with 408 upload_too_slow', async () => {
    const api = await startSecondApi(stack, { uploadProgress: { windowMs: 300, minBytes: 1000 } });
    try {
      const t = await trickleUpload(api.url, victim.key, 100);
      const answer = await Promise.race([t.response, new Promise<string>((r) => setTimeout(() => r('no answer within 30 s'), 30_000))]);
      t.stop();
      t.socket.destroy();
      expect(answer.split('\r\n')[0]).toContain(' 408 ');
      expect(answer).toContain('upload_too_slow');
    } finally {
      await api.close();
    }
  }, 60_000);

  it('answers 503 database_busy when no pool connection frees up in time, and serves again after', async () => {
    const { db, pool } = createDb({
      connectionString: stack.databaseUrl, max: 1,
      timeouts: { statementTimeoutMs: 10_000, idleInTransactionTimeoutMs: 10_000, acquireTimeoutMs: 300 },
    });
    const api = await startSecondApi(stack, {}, db);
    try {
      // The acquire timeout also bounds opening a fresh connection, which on a loaded 2-core CI
      // machine can take longer than 300 ms: retry opening the held one, up to a deadline.
      const held = await connectWithin(pool, 30_000);
      const busy = await fetch(`${api.url}/v1/files`, { headers: { Authorization: `Bearer ${victim.key}` }, signal: AbortSignal.timeout(30_000) });
      expect(busy.status).toBe(503);
      expect(busy.headers.get('retry-after')).toBe('1');
      expect(((await busy.json()) as any).error).toMatchObject({ type: 'service_unavailable', code: 'database_busy' });
      held.release();
      const ok = await fetch(`${api.url}/v1/files`, { headers: { Authorization: `Bearer ${victim.key}` } });
      expect(ok.status).toBe(200);
    } finally {
      await api.close();
      await db.destroy();
    }
  }, 60_000);

  it('refuses past the per-tenant caps with their codes', async () => {
    const caps = { ...DEFAULT_TENANT_CAPS, maxFiles: 1, maxFileBytes: 100, maxActiveBatches: 1, maxWebhookEndpoints: 1, maxConcurrentExports: 1, maxConcurrentUploads: 1 };
    const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sluice-caps-'));
    const api = await startSecondApi(stack, { tenantCaps: caps, spoolDir });
    const c = await stack.createTenantKey({ role: 'tenant_admin' });
    const d = await stack.createTenantKey({ role: 'tenant_admin' });
    try {
      // Files: count and bytes.
      const first = await upload(c.key, '{"a":1}\n', api.url);
      expect(first.status).toBe(200);
      expect((await upload(c.key, '{"a":2}\n', api.url)).body.error).toMatchObject({ code: 'file_count_limit', type: 'conflict_error' });
      const big = await upload(d.key, `${'y'.repeat(150)}\n`, api.url);
      expect(big.status).toBe(409);
      expect(big.body.error.code).toBe('file_storage_limit');

      // Unfinished batches.
      await insertBatch(stack.db, {
        id: newId('batch'), tenantId: c.tenantId, keyId: c.keyId, endpoint: '/v1/chat/completions', inputFileId: first.body.id,
        completionWindow: '24h', metadata: null, expiresAt: new Date(Date.now() + 86_400_000),
      });
      const batch = await fetch(`${api.url}/v1/batches`, {
        method: 'POST', headers: { Authorization: `Bearer ${c.key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ input_file_id: first.body.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      });
      expect(batch.status).toBe(429);
      expect(((await batch.json()) as any).error.code).toBe('active_batches_limit');

      // Webhook endpoints.
      const hook = (n: number) => fetch(`${api.url}/v1/admin/webhooks`, {
        method: 'POST', headers: { Authorization: `Bearer ${c.key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ url: `https://example.com/hook-${n}`, events: ['job.succeeded'] }),
      });
      expect((await hook(1)).status).toBe(201);
      const second = await hook(2);
      expect(second.status).toBe(409);
      expect(((await second.json()) as any).error.code).toBe('webhook_endpoint_limit');

      // Concurrent exports: one unread export holds the tenant's only slot.
      const held = await unreadExport(api.url, attacker.key);
      expect(await held.started).toContain(' 200 ');
      const refused = await fetch(`${api.url}/v1/admin/usage/export?period=2025-07&format=csv`, { headers: { Authorization: `Bearer ${attacker.key}` } });
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as any).error.code).toBe('concurrent_exports_limit');
      held.socket.destroy();

      // Concurrent uploads: one trickling upload holds the tenant's only slot.
      const t = await trickleUpload(api.url, d.key);
      // Its spool file exists once it holds the slot.
      await waitFor('the trickling upload spooling', async () => (await readdir(spoolDir)).length > 0);
      const r = await fetch(`${api.url}/v1/files`, {
        method: 'POST', headers: { Authorization: `Bearer ${d.key}`, 'Content-Type': `multipart/form-data; boundary=${BOUNDARY}` },
        body: `--${BOUNDARY}--\r\n`,
      });
      expect(r.status).toBe(429);
      expect(((await r.json()) as any).error.code).toBe('concurrent_uploads_limit');
      t.stop();
      t.socket.destroy();
    } finally {
      await api.close();
      await rm(spoolDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('an export read page by page by key repeats and loses no row, equal timestamps across pages included', async () => {
    const f = await stack.createTenantKey({ role: 'tenant_admin' });
    await sql`
      insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant,
                         input_tokens, output_tokens, cost_micros, latency_ms, created_at)
      select 'req_tie_' || g, 'infer', ${f.tenantId}, 'key_x', 'sync', 'm', 'd', 'local', null, 1, 1, 1, 1,
             case when g < 12000 then '2025-03-15T12:00:00.123456Z'::timestamptz
                  else '2025-03-15T12:00:00.123Z'::timestamptz + (g - 12000) * interval '1 microsecond' end
      from generate_series(0, 12099) g`.execute(stack.db);
    // The tenant's own export and an operator's export of every tenant (only this one has rows in 2025-03).
    for (const key of [f.key, stack.adminKey]) {
      const res = await fetch(`${stack.url}/v1/admin/usage/export?period=2025-03&format=csv`, { headers: { Authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      const rows = (await res.text()).split('\n').slice(1).filter((l) => l !== '');
      expect(rows).toHaveLength(12_100);
      expect(new Set(rows.map((l) => l.split(',')[0])).size).toBe(12_100);
    }
  }, 120_000);

  it('a request over the rate limit gets no request row, no workflow and no audit row', async () => {
    const e = await stack.createTenantKey({ limits: { requests_per_minute: 1 } });
    const traces = async () => {
      const requests = await sql<{ n: number }>`select count(*)::int as n from requests where tenant_id = ${e.tenantId}`.execute(stack.db);
      const audits = await sql<{ n: number }>`select count(*)::int as n from audit_log where tenant_id = ${e.tenantId}`.execute(stack.db);
      const workflows = await stack.client.workflow.count(`SluiceTenant = "${e.tenantId}"`);
      return { requests: requests.rows[0]?.n, audits: audits.rows[0]?.n, workflows: workflows.count };
    };
    let refused: Awaited<ReturnType<typeof chat>> | null = null;
    // The per-minute window may turn between two requests: try until one is refused.
    for (let i = 0; i < 5 && refused === null; i++) {
      // Visibility may lag: wait until every request's workflow is listed before counting.
      await waitFor('workflows listed', async () => {
        const t = await traces();
        return t.workflows === t.requests;
      });
      const before = await traces();
      const r = await chat(e.key, 'instant');
      if (r.status === 200) {
        // Its audit row follows the answer: counted once it is written.
        await settled(stack, r.body);
        continue;
      }
      refused = r;
      expect(await traces()).toEqual(before);
    }
    expect(refused?.status).toBe(429);
    expect(refused?.body.error.code).toBe('rate_limit_exceeded');
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  }, 120_000);
});
