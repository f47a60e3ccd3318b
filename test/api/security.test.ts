/**
 * The API's security properties, on the real stack: security headers on every response, no
 * object-level (BOLA) or function-level (BFLA) access across tenants and roles, no route without
 * authentication (found by walking the app's router, so a new route is covered the day it is
 * added), fast 401s for injection in the auth header, key rotation and revocation that reach the
 * workflow, and — after all of it — no key secret in logs, audit rows, error bodies or histories.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { createApp } from '../../api/app.js';
import { createDb } from '../../db/database.js';
import { createMetrics } from '../../runtime/metrics.js';
import { createLogger } from '../../runtime/logger.js';
import { createControlWorker } from '../../workers/control-worker.js';
import { addModel, pollJob, startJob, startTestStack, type TestStack } from '../support/stack.js';
import { startSecondApi } from '../support/second-api.js';

let stack: TestStack;
/** Every key secret this file has seen: none may appear where the scan looks. */
const secrets: string[] = [];
/** Bodies of every non-2xx answer. */
const errorBodies: string[] = [];

interface Tenant { id: string; adminKey: string; adminKeyId: string }
let a: Tenant;
let b: Tenant;
let devA: { key: string; id: string };
let userB: { key: string; id: string };
let jobA: string;

const PROMPT_A = 'tenant A private prompt';

async function call(key: string | null, method: string, path: string, body?: unknown, base = stack.url) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(key === null ? {} : { Authorization: `Bearer ${key}` }), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (res.status >= 300) errorBodies.push(text);
  return { status: res.status, text, json: text ? JSON.parse(text) : null, headers: res.headers };
}

async function newKey(adminKey: string, tenantId: string, role: string) {
  const r = await call(adminKey, 'POST', `/v1/admin/tenants/${tenantId}/keys`, { role });
  expect(r.status).toBe(201);
  secrets.push(r.json.key);
  return { key: r.json.key as string, id: r.json.id as string };
}

async function newTenant(): Promise<Tenant> {
  const t = await stack.createTenantKey({ role: 'tenant_admin' });
  secrets.push(t.key);
  return { id: t.tenantId, adminKey: t.key, adminKeyId: t.keyId };
}

const instantModel = {
  id: 'instant', context_length: 1024, max_output_tokens: 16,
  deployments: [{ id: 'instant-local', provider: 'instant', pool: 'local', price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 } }],
};

beforeAll(async () => {
  stack = await startTestStack();
  secrets.push(stack.adminKey);
  await addModel(stack, instantModel);
  a = await newTenant();
  b = await newTenant();
  devA = await newKey(a.adminKey, a.id, 'developer');
  userB = await newKey(b.adminKey, b.id, 'user');
  const job = await startJob(stack, devA.key, { model: 'instant', messages: [{ role: 'user', content: PROMPT_A }], max_tokens: 2 });
  jobA = job.id;
  expect((await pollJob(stack, devA.key, jobA, (s) => s === 'succeeded')).status).toBe('succeeded');
});
afterAll(async () => {
  await stack?.stop();
});

/** Every route of the app as `METHOD /full/path`, by walking Express 5's router stack. */
function routeInventory(): Array<{ method: string; path: string }> {
  const app = createApp({
    temporal: stack.client, db: stack.db, metrics: createMetrics({ defaults: false }), log: createLogger('silent'),
    config: { maxBodyBytes: 1024, namespace: 'default', pools: [], eagerStart: false },
  });
  const out: Array<{ method: string; path: string }> = [];
  const walk = (layers: any[], prefix: string) => {
    for (const layer of layers) {
      if (layer.route) {
        if (typeof layer.route.path !== 'string') throw new Error(`route with a non-string path under ${prefix}: the inventory cannot check it`);
        for (const [method, on] of Object.entries(layer.route.methods as Record<string, boolean>)) {
          if (on) out.push({ method: method === '_all' ? 'GET' : method.toUpperCase(), path: `${prefix}${layer.route.path}` });
        }
      } else if (Array.isArray(layer.handle?.stack)) {
        if (typeof layer.rawPath !== 'string') throw new Error('router mounted on a non-string path: the inventory cannot check it');
        walk(layer.handle.stack, layer.rawPath === '/' ? prefix : `${prefix}${layer.rawPath}`);
      }
    }
  };
  walk((app as any).router.stack, '');
  return out;
}

const concrete = (path: string) => path.replace(/:(\w+)/g, 'x_missing_$1');

describe('hardening', () => {
  // Pipeline only (docs/testing.md): headers, error bodies and the request timeout; `stranded` is
  // served by no worker.
  const expectSecurityHeaders = (h: Headers) => {
    expect(h.get('x-powered-by')).toBeNull();
    expect(h.get('x-content-type-options')).toBe('nosniff');
    expect(h.get('x-frame-options')).toBe('DENY');
    expect(h.get('strict-transport-security')).toMatch(/max-age=\d+/);
    expect(h.get('content-security-policy')).toContain("default-src 'none'");
    expect(h.get('cross-origin-resource-policy')).toBe('same-origin');
    expect(h.get('referrer-policy')).toBe('no-referrer');
    expect(h.get('cache-control')).toBe('no-store');
    expect(h.get('access-control-allow-origin')).toBeNull();
  };

  it('sets security headers on 200, 401, 404 and 413, and no CORS headers', async () => {
    expectSecurityHeaders((await call(null, 'GET', '/healthz')).headers);
    expectSecurityHeaders((await call(devA.key, 'GET', '/v1/models')).headers);
    expectSecurityHeaders((await call(null, 'GET', '/v1/models')).headers);
    expectSecurityHeaders((await call(devA.key, 'GET', '/v1/no-such-route')).headers);
    expectSecurityHeaders((await call(null, 'GET', '/no-such-route')).headers);
    const big = await call(devA.key, 'POST', '/v1/chat/completions', { model: 'instant', messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] });
    expect(big.status).toBe(413);
    expectSecurityHeaders(big.headers);
    const preflight = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(preflight.headers.get('access-control-allow-methods')).toBeNull();
  });

  it('sets them on a 500 too, with no detail in the body', async () => {
    // The same app over a database that cannot be reached: authentication fails inside.
    const { db } = createDb({ connectionString: 'postgres://nobody:nothing@127.0.0.1:1/none', max: 1 });
    const api = await startSecondApi(stack, {}, db);
    try {
      const r = await call(devA.key, 'GET', '/v1/models', undefined, api.url);
      expect(r.status).toBe(500);
      expectSecurityHeaders(r.headers);
      expect(r.json.error).toMatchObject({ type: 'server_error', code: 'internal_error', message: 'The server had an error while processing your request.' });
      expect(r.text).not.toContain('127.0.0.1');
    } finally {
      await api.close();
      await db.destroy();
    }
  });

  it('answers 503 request_timeout when a request takes longer than the request timeout', async () => {
    // A model whose only pool has no worker: the sync request waits; the API gives up after 1 s.
    await addModel(stack, { id: 'stranded', context_length: 1024, max_output_tokens: 8, deployments: [{ id: 'stranded-x', provider: 'instant', pool: 'nowhere' }] });
    const api = await startSecondApi(stack, { requestTimeoutMs: 1000 });
    try {
      const r = await call(devA.key, 'POST', '/v1/chat/completions', { model: 'stranded', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }, api.url);
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe('request_timeout');
      expect(r.headers.get('retry-after')).toBe('1');
    } finally {
      await api.close();
    }
  });
});

describe('route inventory', () => {
  const PUBLIC = ['GET /healthz', 'GET /readyz', 'GET /metrics'];

  it('finds the routes it should (the walker works)', () => {
    const names = routeInventory().map((r) => `${r.method} ${r.path}`);
    for (const known of ['POST /v1/chat/completions', 'GET /v1/jobs/:id', 'GET /v1/admin/tenants/:id', 'POST /v1/admin/keys/:id/rotate', 'GET /v1/admin/audit/verify', ...PUBLIC]) {
      expect(names).toContain(known);
    }
  });

  it('every route outside /v1 is a known public one', () => {
    const outside = routeInventory().filter((r) => !r.path.startsWith('/v1/')).map((r) => `${r.method} ${r.path}`);
    expect(outside.filter((r) => !PUBLIC.includes(r))).toEqual([]);
  });

  it('every /v1 route answers 401 without a key and with an unknown key', async () => {
    const unknown = `sk-${'Q'.repeat(43)}`;
    const open: string[] = [];
    for (const r of routeInventory().filter((x) => x.path.startsWith('/v1/'))) {
      for (const key of [null, unknown]) {
        const res = await call(key, r.method, concrete(r.path), r.method === 'GET' ? undefined : {});
        if (res.status !== 401 || res.json?.error?.type !== 'authentication_error') open.push(`${r.method} ${r.path} (${key ? 'unknown key' : 'no key'}) → ${res.status}`);
      }
    }
    expect(open).toEqual([]);
  });
});

describe('BFLA: a user key against everything but inference', () => {
  // Pipeline only (docs/testing.md): roles against every route but inference (chat completions,
  // legacy completions, embeddings and responses with their stored objects: the `chat`
  // permission), its jobs, the model list, feedback on its own completions (`POST /v1/feedback`:
  // the key that made a request may always send it; test/api/experiments.test.ts).
  const USER_ALLOWED = [
    'POST /v1/chat/completions', 'GET /v1/chat/completions/:id/stream', 'POST /v1/completions', 'POST /v1/embeddings',
    'POST /v1/responses', 'GET /v1/responses/:id', 'DELETE /v1/responses/:id', 'GET /v1/responses/:id/input_items',
    'GET /v1/jobs/:id', 'POST /v1/jobs/:id/cancel', 'GET /v1/models', 'POST /v1/feedback',
  ];

  it('every other route is 403, and every denial is audited as auth.denied', async () => {
    const routes = routeInventory().filter((r) => r.path.startsWith('/v1/') && !USER_ALLOWED.includes(`${r.method} ${r.path}`));
    expect(routes.filter((r) => r.path.startsWith('/v1/admin/')).length).toBeGreaterThanOrEqual(12);
    const wrong: string[] = [];
    for (const r of routes) {
      const res = await call(userB.key, r.method, concrete(r.path), r.method === 'GET' ? undefined : {});
      if (res.status !== 403 || res.json?.error?.type !== 'permission_error') wrong.push(`${r.method} ${r.path} → ${res.status}`);
    }
    expect(wrong).toEqual([]);
    const denials = await stack.db.selectFrom('audit_log').select(['target', 'tenant_id']).where('action', '=', 'auth.denied').where('actor', '=', `key:${userB.id}`).execute();
    expect(denials.every((d) => d.tenant_id === b.id)).toBe(true);
    // The audit names the route pattern under /v1.
    expect(denials.map((d) => d.target).sort()).toEqual(routes.map((r) => `${r.method} ${r.path.slice('/v1'.length)}`).sort());
  });
});

describe('BOLA: tenant B against tenant A', () => {
  // Pipeline only (docs/testing.md): object access across tenants; tenant A's job ran on the
  // instant backend.
  const noDataOfA = (text: string) => {
    for (const s of [a.id, a.adminKeyId, devA.id, jobA, PROMPT_A]) expect(text).not.toContain(s);
  };

  it('every route that takes an ID of A answers 404 and shows nothing of A', async () => {
    const cases: Array<[string, string, unknown?]> = [
      ['GET', `/v1/jobs/${jobA}`],
      ['POST', `/v1/jobs/${jobA}/cancel`],
      ['GET', `/v1/admin/tenants/${a.id}`],
      ['GET', `/v1/admin/tenants/${a.id}/keys`],
      ['POST', `/v1/admin/tenants/${a.id}/keys`, { role: 'user' }],
      ['POST', `/v1/admin/keys/${devA.id}/revoke`],
      ['POST', `/v1/admin/keys/${devA.id}/rotate`, {}],
      ['GET', `/v1/admin/usage?tenant_id=${a.id}`],
    ];
    for (const [method, path, body] of cases) {
      const r = await call(b.adminKey, method, path, body);
      expect(r.status, `${method} ${path}`).toBe(404);
      noDataOfA(r.text);
    }
    // Where B's role lacks the permission, the answer is 403 whatever the ID (no existence oracle).
    const patch = await call(b.adminKey, 'PATCH', `/v1/admin/tenants/${a.id}`, { limits: { monthly_budget_micros: 0 } });
    expect(patch.status).toBe(403);
    const patchMissing = await call(b.adminKey, 'PATCH', '/v1/admin/tenants/ten_missing', { limits: { monthly_budget_micros: 0 } });
    expect(patchMissing.status).toBe(403);
  });

  it('lists are filtered to B', async () => {
    for (const path of ['/v1/admin/tenants', '/v1/admin/audit?limit=100', '/v1/admin/usage', '/v1/admin/usage?group_by=key', '/v1/admin/experiments', '/v1/models']) {
      const r = await call(b.adminKey, 'GET', path);
      expect(r.status, path).toBe(200);
      noDataOfA(r.text);
    }
  });

  it("nothing of A's changed: its keys work, its job is there", async () => {
    expect((await call(devA.key, 'GET', `/v1/jobs/${jobA}`)).json.status).toBe('succeeded');
    expect((await call(a.adminKey, 'GET', `/v1/admin/tenants/${a.id}`)).status).toBe(200);
    expect((await call(a.adminKey, 'GET', `/v1/admin/tenants/${a.id}/keys`)).json.data).toHaveLength(2);
  });
});

describe('injection through the auth header and IDs', () => {
  // Injected SQL that ran would take a session advisory lock and keep it on its pool connection:
  // its absence from pg_locks after the requests proves none ran (whatever the machine's speed).
  const MARK = 7331;
  const injected = `pg_advisory_lock(${MARK})`;
  async function injectionRan(): Promise<boolean> {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = ${MARK}`.execute(stack.db);
    return (rows[0]?.n ?? 0) > 0;
  }

  it('answers 401 for SQL in the bearer token, and runs none of it', async () => {
    const headers = [
      `Bearer x' OR ${injected} IS NOT NULL--`,
      `Bearer sk-aaaaaaaaaaaaaaaaaaaaaaaa' OR ${injected} IS NOT NULL--`,
      `Bearer sk-aaaaaaaaaaaaaaaaaaaaaaaa';select ${injected};--`,
      "Bearer ' UNION SELECT hash FROM api_keys--",
      `Bearer ${stack.adminKey}' OR '1'='1`,
      `Bearer ${'A'.repeat(8000)}`,
      'Basic YWRtaW46YWRtaW4=',
      'Bearer',
    ];
    for (const h of headers) {
      const res = await fetch(`${stack.url}/v1/admin/tenants`, { headers: { Authorization: h } });
      const body = await res.text();
      errorBodies.push(body);
      expect(res.status, h.slice(0, 60)).toBe(401);
      expect(body).not.toContain('pg_advisory_lock');
    }
    expect(await injectionRan()).toBe(false);
  });

  it('answers 404 for SQL in path and query IDs, and runs none of it', async () => {
    const evil = encodeURIComponent(`x' OR ${injected} IS NOT NULL--`);
    for (const path of [`/v1/admin/tenants/${evil}`, `/v1/jobs/${evil}`, `/v1/admin/keys/${evil}/revoke`]) {
      const r = await call(stack.adminKey, path.endsWith('revoke') ? 'POST' : 'GET', path);
      expect(r.status, path).toBe(404);
    }
    const usage = await call(stack.adminKey, 'GET', `/v1/admin/usage?tenant_id=${evil}`);
    expect(usage.status).toBe(200);
    expect(usage.json.data.every((row: { requests: number }) => row.requests === 0)).toBe(true);
    expect(await injectionRan()).toBe(false);
  });
});

describe('keys', () => {
  // Pipeline only (docs/testing.md): rotation and revocation reaching the workflow's authorize
  // step.
  it('rotates: a new key at once, the old one valid for the grace period only', async () => {
    const k = await newKey(a.adminKey, a.id, 'developer');
    const r = await call(a.adminKey, 'POST', `/v1/admin/keys/${k.id}/rotate`, { grace_seconds: 600 });
    expect(r.status).toBe(201);
    secrets.push(r.json.key);
    expect(r.json).toMatchObject({ role: 'developer', tenant_id: a.id, rotated_from: { id: k.id } });
    expect(r.json.rotated_from.expires_at).toBeGreaterThan(Date.now() / 1000 + 590);
    expect(r.json.rotated_from.expires_at).toBeLessThanOrEqual(Date.now() / 1000 + 600);
    expect((await call(r.json.key, 'GET', '/v1/models')).status).toBe(200);
    expect((await call(k.key, 'GET', '/v1/models')).status).toBe(200);

    const now = await call(a.adminKey, 'POST', `/v1/admin/keys/${r.json.id}/rotate`, { grace_seconds: 0 });
    expect(now.status).toBe(201);
    secrets.push(now.json.key);
    expect((await call(r.json.key, 'GET', '/v1/models')).status).toBe(401);
    expect((await call(now.json.key, 'GET', '/v1/models')).status).toBe(200);

    expect((await call(a.adminKey, 'POST', `/v1/admin/keys/${now.json.id}/rotate`, { grace_seconds: 8 * 24 * 3600 })).status).toBe(400);
    expect((await call(a.adminKey, 'POST', `/v1/admin/keys/${now.json.id}/rotate`, { role: 'tenant_admin' })).status).toBe(400);
    expect((await call(a.adminKey, 'POST', `/v1/admin/keys/${r.json.id}/rotate`, {})).status).toBe(409);
    const audit = await stack.db.selectFrom('audit_log').select(['target']).where('action', '=', 'key.rotated').where('tenant_id', '=', a.id).orderBy('seq').execute();
    expect(audit.map((x) => x.target)).toEqual([`key:${k.id}`, `key:${r.json.id}`]);
  });

  it('a job queued with a key revoked before it ran is refused at authorize, and nothing is billed', async () => {
    // Deterministic: with the control worker stopped, the accepted job's workflow cannot start its
    // authorize step; the key is revoked; a new control worker then runs the workflow.
    const k = await newKey(a.adminKey, a.id, 'developer');
    const control = stack.workers[0] as Worker;
    control.shutdown();
    while (control.getState() !== 'STOPPED') await new Promise((r) => setTimeout(r, 50));
    const job = await startJob(stack, k.key, { model: 'instant', messages: [{ role: 'user', content: 'queued' }], max_tokens: 2 });
    expect((await call(a.adminKey, 'POST', `/v1/admin/keys/${k.id}/revoke`)).status).toBe(200);
    const connection = await NativeConnection.connect({ address: stack.temporal.address });
    let worker: Worker | null = null;
    let running: Promise<void> | null = null;
    try {
      worker = await createControlWorker({ namespace: stack.config.temporalNamespace, workflowBundle: { codePath: inject('workflowBundlePath') } }, connection, { db: stack.db, temporal: stack.client });
      running = worker.run();
      const done = await pollJob(stack, a.adminKey, job.id, (s) => s === 'failed' || s === 'succeeded');
      expect(done.status).toBe('failed');
      expect(done.error).toMatchObject({ type: 'Unauthorized', code: 'invalid_api_key' });
      expect(await stack.db.selectFrom('usage').select('id').where('request_id', '=', job.id).execute()).toEqual([]);
      expect(await stack.db.selectFrom('reservations').select('request_id').where('request_id', '=', job.id).execute()).toEqual([]);
      const outcome = await stack.db.selectFrom('audit_log').select(['action', 'data']).where('target', '=', `request:${job.id}`).execute();
      expect(outcome).toMatchObject([{ action: 'request.failed', data: { error_code: 'invalid_api_key' } }]);
    } finally {
      worker?.shutdown();
      await running;
      await connection.close();
    }
  });
});

describe('secret scan, after all of the above', () => {
  // Pipeline only (docs/testing.md): what logs, audit rows, bodies and histories hold.
  const SK = /sk-[A-Za-z0-9_-]{20,}/;

  function scan(where: string, text: string) {
    for (const s of secrets) expect(text.includes(s), `${where} holds a key secret`).toBe(false);
    expect(SK.exec(text)?.[0] ?? null, `${where} holds an sk- value`).toBeNull();
  }

  /** History JSON with every payload decoded (payload bytes come as base64: JSON of arguments and results). */
  function historyText(history: unknown): string {
    return JSON.stringify(history, (k, v) => {
      if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
      if ((k === 'data' || k === 'encoding' || k === 'type') && typeof v === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(v)) return Buffer.from(v, 'base64').toString('utf8');
      return v;
    });
  }

  it('finds no key secret in logs, audit rows, error bodies or Temporal histories', async () => {
    expect(secrets.length).toBeGreaterThanOrEqual(8);
    scan('logs', stack.logs.join('\n'));
    scan('audit rows', JSON.stringify(await stack.db.selectFrom('audit_log').selectAll().execute()));
    scan('error bodies', errorBodies.join('\n'));
    let workflows = 0;
    for await (const wf of stack.client.workflow.list()) {
      const history = await stack.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      const text = historyText(history);
      scan(`history of ${wf.workflowId}`, text);
      scan(`raw history of ${wf.workflowId}`, JSON.stringify(history));
      if (wf.workflowId.startsWith('chat-')) workflows += 1;
    }
    expect(workflows).toBeGreaterThanOrEqual(2);
    // The scan would see a prompt: history holds inference inputs (docs/security.md).
    const job = await stack.client.workflow.getHandle(`chat-${jobA}`).fetchHistory();
    expect(historyText(job)).toContain(PROMPT_A);
  });
});
