/**
 * Data retention and erasure on the real stack: `retention_days` set by a super admin through
 * `PATCH /v1/admin/tenants/{id}`; the reconciler's run purges stored results and file content
 * older than that (status, usage and spend kept); `POST /v1/admin/tenants/{id}/erase` removes a
 * tenant's content and revokes its keys while billing totals and the audit chain survive.
 * Age is simulated by moving `created_at` back, as the purge compares against it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { sql } from 'kysely';
import { CONTROL_TASK_QUEUE } from '../../contracts/ids.js';
import type { reconcileReservations } from '../../workflows/reconcile.js';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;

const instantModel = {
  id: 'instant', context_length: 1024, max_output_tokens: 16,
  deployments: [{ id: 'instant-local', provider: 'instant', pool: 'local', price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 } }],
};

async function call(key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

/** A sync chat completion, once settled (its answer leaves first); returns the request ID (the row's). */
async function chat(key: string, content: string, idempotencyKey?: string): Promise<string> {
  const r = await call(key, 'POST', '/v1/chat/completions', { model: 'instant', messages: [{ role: 'user', content }], max_tokens: 4 },
    idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {});
  expect(r.status).toBe(200);
  await settled(stack, r.body);
  return String(r.body.id).replace('chatcmpl-', '');
}

async function upload(key: string, text: string): Promise<string> {
  const client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  return (await client.files.create({ file: await toFile(Buffer.from(text), 'input.jsonl'), purpose: 'batch' })).id;
}

const batchLine = (i: number) => JSON.stringify({ custom_id: `l${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'instant', messages: [{ role: 'user', content: `secret line ${i}` }], max_tokens: 2 } });

async function ageTenant(tenantId: string, days: number, only?: { requests?: string[]; files?: string[] }) {
  const at = sql`now() - make_interval(days => ${days})`;
  let rq = stack.db.updateTable('requests').set({ created_at: at as never }).where('tenant_id', '=', tenantId);
  if (only?.requests) rq = rq.where('id', 'in', only.requests);
  await rq.execute();
  let fq = stack.db.updateTable('files').set({ created_at: at as never }).where('tenant_id', '=', tenantId);
  if (only?.files) fq = fq.where('id', 'in', only.files);
  await fq.execute();
}

async function runReconciler() {
  return stack.client.workflow.execute<typeof reconcileReservations>('reconcileReservations', {
    taskQueue: CONTROL_TASK_QUEUE, workflowId: `reconcile-test-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`, args: [{}],
  });
}

const requestRow = (id: string) => stack.db.selectFrom('requests').select(['status', 'result', 'error']).where('id', '=', id).executeTakeFirstOrThrow();
const lineCount = async (fileId: string) => Number((await stack.db.selectFrom('file_lines').select((eb) => eb.fn.countAll().as('n')).where('file_id', '=', fileId).executeTakeFirstOrThrow()).n);
const usageOf = (tenantId: string) => stack.db.selectFrom('usage').select(['request_id', 'cost_micros', 'input_tokens', 'output_tokens']).where('tenant_id', '=', tenantId).orderBy('id').execute();
const spendOf = (tenantId: string) => stack.db.selectFrom('tenant_spend').selectAll().where('tenant_id', '=', tenantId).execute();

beforeAll(async () => {
  stack = await startTestStack();
  await addModel(stack, instantModel);
});
afterAll(async () => {
  await stack?.stop();
});

describe('retention_days on the tenant', () => {
  // Pipeline only (docs/testing.md): tenant settings, purge and erasure of stored content.
  it('is set by a super admin through PATCH, validated, shown in the tenant JSON and audited', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    expect((await stack.admin('GET', `/v1/admin/tenants/${t.tenantId}`)).body.retention_days).toBeNull();
    // A tenant admin may not change its own retention (tenants:write is the super admin's).
    expect((await call(t.key, 'PATCH', `/v1/admin/tenants/${t.tenantId}`, { retention_days: 1 })).status).toBe(403);
    for (const bad of [0, -1, 1.5, '7', 36_501]) {
      const r = await stack.admin('PATCH', `/v1/admin/tenants/${t.tenantId}`, { retention_days: bad });
      expect(r.status).toBe(400);
      expect(r.body.error.param).toBe('retention_days');
    }
    const set = await stack.admin('PATCH', `/v1/admin/tenants/${t.tenantId}`, { retention_days: 30 });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ id: t.tenantId, retention_days: 30, erased_at: null });
    expect((await stack.admin('GET', `/v1/admin/tenants/${t.tenantId}`)).body.retention_days).toBe(30);
    const audit = await stack.db.selectFrom('audit_log').select('data').where('action', '=', 'tenant.updated').where('tenant_id', '=', t.tenantId).execute();
    expect(audit.at(-1)?.data).toMatchObject({ before: { retention_days: null }, after: { retention_days: 30 } });
    expect((await stack.admin('PATCH', `/v1/admin/tenants/${t.tenantId}`, { retention_days: null })).body.retention_days).toBeNull();
  });
});

describe('the reconciler purges content past retention', () => {
  // Pipeline only (docs/testing.md): the instant backend only produces the content to purge.
  it('nulls old results and file lines of tenants with retention, keeps status, usage, spend, recent content and other tenants', async () => {
    const kept = await stack.createTenantKey();
    const purged = await stack.createTenantKey();
    expect((await stack.admin('PATCH', `/v1/admin/tenants/${purged.tenantId}`, { retention_days: 7 })).status).toBe(200);

    const oldReq = await chat(purged.key, 'old private prompt', 'idem-old');
    const oldFile = await upload(purged.key, `${batchLine(1)}\n${batchLine(2)}\n`);
    const keptReq = await chat(kept.key, 'kept prompt');
    const keptFile = await upload(kept.key, `${batchLine(1)}\n`);
    await ageTenant(purged.tenantId, 10);
    await ageTenant(kept.tenantId, 10);
    // Made after the ageing: younger than the retention period.
    const recentReq = await chat(purged.key, 'recent prompt');
    const recentFile = await upload(purged.key, `${batchLine(3)}\n`);
    const usageBefore = await usageOf(purged.tenantId);
    const spendBefore = await spendOf(purged.tenantId);
    expect(usageBefore).toHaveLength(2);

    const run = await runReconciler();
    expect(run.purged?.requests).toBeGreaterThanOrEqual(1);
    expect(run.purged?.files).toBeGreaterThanOrEqual(1);

    expect(await requestRow(oldReq)).toEqual({ status: 'succeeded', result: null, error: null });
    expect((await requestRow(recentReq)).result).not.toBeNull();
    expect((await requestRow(keptReq)).result).not.toBeNull();
    expect(await lineCount(oldFile)).toBe(0);
    expect(await lineCount(recentFile)).toBe(1);
    expect(await lineCount(keptFile)).toBe(1);
    // Billing records are untouched.
    expect(await usageOf(purged.tenantId)).toEqual(usageBefore);
    expect(await spendOf(purged.tenantId)).toEqual(spendBefore);

    // The API says the content is gone instead of serving nothing.
    const job = await call(purged.key, 'GET', `/v1/jobs/${oldReq}`);
    expect(job.body).toMatchObject({ status: 'succeeded', result: null });
    const replay = await call(purged.key, 'POST', '/v1/chat/completions', { model: 'instant', messages: [{ role: 'user', content: 'old private prompt' }], max_tokens: 4 }, { 'Idempotency-Key': 'idem-old' });
    expect(replay.status).toBe(409);
    expect(replay.body.error.code).toBe('content_purged');
    const content = await call(purged.key, 'GET', `/v1/files/${oldFile}/content`);
    expect(content.status).toBe(409);
    expect(content.text).not.toContain('secret line');
    const batch = await call(purged.key, 'POST', '/v1/batches', { input_file_id: oldFile, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.status).toBe(400);
    expect(batch.body.error.code).toBe('content_purged');

    // Idempotent: a second run finds nothing of these tenants left.
    await runReconciler();
    expect(await lineCount(recentFile)).toBe(1);
    expect((await requestRow(recentReq)).result).not.toBeNull();
  });
});

describe('POST /v1/admin/tenants/{id}/erase', () => {
  // Pipeline only (docs/testing.md): the instant backend only produces the content to erase.
  it('is the super admin\'s, and needs {confirm: true}', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    expect((await call(t.key, 'POST', `/v1/admin/tenants/${t.tenantId}/erase`, { confirm: true })).status).toBe(403);
    for (const body of [{}, { confirm: 'yes' }, { confirm: false }]) {
      const r = await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/erase`, body);
      expect(r.status).toBe(400);
      expect(r.body.error.param).toBe('confirm');
    }
    expect((await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/erase`, { confirm: true, also: 1 })).status).toBe(400);
    expect((await stack.admin('POST', '/v1/admin/tenants/ten_nope/erase', { confirm: true })).status).toBe(404);
    // Nothing was erased by the refused calls.
    expect((await stack.admin('GET', `/v1/admin/tenants/${t.tenantId}`)).body).toMatchObject({ status: 'active', erased_at: null });
  });

  it('erases content and revokes keys; usage, spend and the audit chain survive', async () => {
    const victim = await stack.createTenantKey();
    const bystander = await stack.createTenantKey();
    const r1 = await chat(victim.key, 'erase me 1');
    await chat(victim.key, 'erase me 2');
    const file = await upload(victim.key, `${batchLine(1)}\n`);
    const other = await chat(bystander.key, 'keep me');
    const otherFile = await upload(bystander.key, `${batchLine(1)}\n`);
    // A stored error body of another tenant (the erase's `result or error` test must stay scoped to the tenant).
    const otherFailed = await chat(bystander.key, 'keep my error');
    await stack.db.updateTable('requests').set({ status: 'failed', result: null, error: JSON.stringify({ type: 'x', message: 'kept' }) }).where('id', '=', otherFailed).execute();
    await stack.db.insertInto('experiments').values({ id: 'exp_erase', name: 'erase', model: 'instant', tenant_id: victim.tenantId }).execute();
    await stack.db.insertInto('experiment_exposures').values({ request_id: r1, experiment_id: 'exp_erase', tenant_id: victim.tenantId, subject: 'user-4711@example.com', variant: 'a' }).execute();
    const usageBefore = await usageOf(victim.tenantId);
    const spendBefore = await spendOf(victim.tenantId);
    expect(usageBefore).toHaveLength(2);

    const r = await stack.admin('POST', `/v1/admin/tenants/${victim.tenantId}/erase`, { confirm: true });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: victim.tenantId, status: 'suspended', erased: { requests: 2, files: 1, experiment_exposures: 1, keys_revoked: 1, in_flight: 0 } });
    expect(r.body.erased_at).toEqual(expect.any(Number));

    // Content is gone.
    const rows = await stack.db.selectFrom('requests').select(['status', 'result', 'error']).where('tenant_id', '=', victim.tenantId).execute();
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toEqual({ status: 'succeeded', result: null, error: null });
    expect(await lineCount(file)).toBe(0);
    const exposure = await stack.db.selectFrom('experiment_exposures').select('subject').where('request_id', '=', r1).executeTakeFirstOrThrow();
    expect(exposure.subject).toBe('erased');
    // Keys stop working at once.
    expect((await call(victim.key, 'GET', '/v1/models')).status).toBe(401);
    // Billing totals and the audit chain survive.
    expect(await usageOf(victim.tenantId)).toEqual(usageBefore);
    expect(await spendOf(victim.tenantId)).toEqual(spendBefore);
    const usage = await stack.admin('GET', `/v1/admin/usage?tenant_id=${victim.tenantId}`);
    expect(usage.status).toBe(200);
    const audit = await stack.db.selectFrom('audit_log').select(['actor', 'data']).where('action', '=', 'tenant.erased').where('tenant_id', '=', victim.tenantId).execute();
    expect(audit).toHaveLength(1);
    expect(audit[0]?.data).toMatchObject({ erased: { requests: 2, files: 1 }, before: { status: 'active' }, after: { status: 'suspended' } });
    expect(JSON.stringify(audit)).not.toContain('erase me');
    const verify = await stack.admin('GET', '/v1/admin/audit/verify');
    expect(verify.body.ok).toBe(true);
    // Another tenant is untouched.
    expect((await requestRow(other)).result).not.toBeNull();
    expect((await requestRow(otherFailed)).error).not.toBeNull();
    expect(await lineCount(otherFile)).toBe(1);
    expect((await call(bystander.key, 'GET', '/v1/models')).status).toBe(200);

    // Idempotent: erasing again changes nothing more.
    const again = await stack.admin('POST', `/v1/admin/tenants/${victim.tenantId}/erase`, { confirm: true });
    expect(again.body.erased).toMatchObject({ requests: 0, files: 0, experiment_exposures: 0, keys_revoked: 0 });
  });
});
