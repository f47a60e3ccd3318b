/**
 * Hostile roles (issue 12 items 2, 6, 13, 9): no key of a tenant changes what the tenant owes
 * (billing writes are the operator's: `super_admin`, `operator_finance`); operator roles exist only
 * on operator keys; a key never creates or rotates a key wider or longer-lived than itself;
 * super-admin keys are rotated and revoked through the API without locking the operator out; and
 * a flood of 403s is not one chained audit row per denial.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function call(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;

describe('a tenant cannot rewrite its own bill', () => {
  it('a tenant finance key minted by its tenant admin reads usage and invoices, and writes nothing billing', async () => {
    const admin = await stack.createTenantKey({ role: 'tenant_admin' });
    const fin = await call(admin.key, 'POST', `/v1/admin/tenants/${admin.tenantId}/keys`, { role: 'finance' });
    expect(fin.status).toBe(201);
    const key = fin.body.key as string;
    const writes: Array<[string, string, unknown]> = [
      ['POST', '/v1/admin/usage/adjustments', { tenant_id: admin.tenantId, amount_micros: -1_000_000, reason: 'we owe ourselves' }],
      ['POST', '/v1/admin/invoices/inv_x/void', { reason: 'nope' }],
      ['POST', '/v1/admin/invoices/inv_x/reissue', {}],
      ['POST', '/v1/admin/billing/runs', { period: '2025-01', tenant_id: admin.tenantId }],
      ['POST', '/v1/admin/deployments/sluice-tiny-local/prices', { tenant_id: admin.tenantId, input_micros_per_mtok: 0, output_micros_per_mtok: 0 }],
      ['POST', '/v1/admin/plans/standard/rates', { adjustment_bps: -10_000 }],
    ];
    for (const k of [key, admin.key]) {
      for (const [method, path, body] of writes) {
        const r = await call(k, method, path, body);
        expect(r.status, `${method} ${path}`).toBe(403);
        expect(r.body.error).toMatchObject({ type: 'permission_error', code: 'permission_denied' });
      }
    }
    expect((await call(key, 'GET', '/v1/admin/usage')).status).toBe(200);
    const invoices = await call(key, 'GET', '/v1/admin/invoices');
    expect(invoices.status).toBe(200);
    expect(invoices.body.object).toBe('list');
    expect(await stack.db.selectFrom('usage_adjustments').select('id').where('tenant_id', '=', admin.tenantId).execute()).toEqual([]);
  });

  it('an operator finance key (an operator key, made by the super admin) adjusts any tenant', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    const op = await stack.admin('POST', '/v1/admin/keys', { role: 'operator_finance', name: 'billing team' });
    expect(op.status).toBe(201);
    expect(op.body).toMatchObject({ role: 'operator_finance', tenant_id: null });
    const adj = await call(op.body.key, 'POST', '/v1/admin/usage/adjustments', { tenant_id: t.tenantId, amount_micros: -500, reason: 'goodwill credit' });
    expect(adj.status).toBe(201);
    expect((await call(op.body.key, 'GET', `/v1/admin/invoices?tenant_id=${t.tenantId}`)).status).toBe(200);
    // It manages no keys and no tenants.
    expect((await call(op.body.key, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'finance' })).status).toBe(403);
    expect((await call(op.body.key, 'PATCH', `/v1/admin/tenants/${t.tenantId}`, { name: 'x' })).status).toBe(403);
  });

  it('operator roles exist only on operator keys, tenant roles only on tenant keys (API and database)', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    for (const role of ['super_admin', 'operator_finance']) {
      for (const k of [stack.adminKey, t.key]) {
        const r = await call(k, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role });
        expect(r.status, `${role} on a tenant key`).toBe(400);
        expect(r.body.error).toMatchObject({ param: 'role', code: 'operator_role_on_tenant_key' });
      }
    }
    const tenantRoleOnOperator = await stack.admin('POST', '/v1/admin/keys', { role: 'developer' });
    expect(tenantRoleOnOperator.status).toBe(400);
    expect(tenantRoleOnOperator.body.error).toMatchObject({ param: 'role', code: 'tenant_role_on_operator_key' });
    // A tenant admin cannot reach the operator's keys at all.
    const byTenant = await call(t.key, 'POST', '/v1/admin/keys', { role: 'operator_finance' });
    expect(byTenant.status).toBe(403);
    expect(byTenant.body.error.code).toBe('operator_only');
    expect((await call(t.key, 'GET', '/v1/admin/keys')).status).toBe(403);
    // The database refuses it too.
    const insert = (role: string, tenantId: string | null) => sql`insert into api_keys (id, tenant_id, prefix, hash, role)
      values (${`key_raw_${role}_${tenantId ?? 'op'}`}, ${tenantId}, 'sk-raw', ${`hash-${role}-${tenantId}`}, ${role})`.execute(stack.db);
    await expect(insert('operator_finance', t.tenantId)).rejects.toThrow(/api_keys_operator_roles_have_no_tenant/);
    await expect(insert('finance', null)).rejects.toThrow(/api_keys_operator_roles_have_no_tenant/);
  });
});

describe('a key never creates a wider or longer-lived key', () => {
  it('the reported case: a tenant admin scoped to keys:write, expiring in an hour, cannot mint a chatting key that never expires', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    const narrow = await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', scopes: ['keys:write'], expires_at: inSeconds(3600) });
    expect(narrow.status).toBe(201);
    const k = narrow.body.key as string;
    const wide = await call(k, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'developer' });
    expect(wide.status).toBe(403);
    expect(wide.body.error).toMatchObject({ param: 'scopes', code: 'unscoped_exceeds_creator' });
    const chat = await call(k, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'developer', scopes: ['chat'], expires_at: inSeconds(1800) });
    expect(chat.status).toBe(403);
    expect(chat.body.error).toMatchObject({ param: 'scopes', code: 'scope_exceeds_creator' });
    const forever = await call(k, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', scopes: ['keys:write'] });
    expect(forever.status).toBe(403);
    expect(forever.body.error).toMatchObject({ param: 'expires_at', code: 'expiry_exceeds_creator' });
    const later = await call(k, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', scopes: ['keys:write'], expires_at: inSeconds(7200) });
    expect(later.status).toBe(403);
    expect(later.body.error.code).toBe('expiry_exceeds_creator');
    // Within both bounds it works.
    const ok = await call(k, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', scopes: ['keys:write'], expires_at: inSeconds(1800) });
    expect(ok.status).toBe(201);
  });

  it('model scopes only narrow, and a scope outside the role is refused', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    const tiny = await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', scopes: ['model:sluice-tiny'] });
    expect(tiny.status).toBe(201);
    const all = await call(tiny.body.key, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'developer' });
    expect(all.status).toBe(403);
    expect(all.body.error.code).toBe('unscoped_exceeds_creator');
    expect((await call(tiny.body.key, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'developer', scopes: ['model:other'] })).status).toBe(403);
    expect((await call(tiny.body.key, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'developer', scopes: ['model:sluice-tiny'] })).status).toBe(201);
    const outside = await call(t.key, 'POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'user', scopes: ['usage:read'] });
    expect(outside.status).toBe(400);
    expect(outside.body.error).toMatchObject({ param: 'scopes', code: 'scope_not_in_role' });
  });

  it('rotating is creating: a scoped or expiring key cannot rotate a wider or longer-lived one', async () => {
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    const dev = await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'developer' });
    const brief = await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', expires_at: inSeconds(3600) });
    const scoped = await stack.admin('POST', `/v1/admin/tenants/${t.tenantId}/keys`, { role: 'tenant_admin', scopes: ['keys:write'] });
    const byBrief = await call(brief.body.key, 'POST', `/v1/admin/keys/${dev.body.id}/rotate`, {});
    expect(byBrief.status).toBe(403);
    expect(byBrief.body.error).toMatchObject({ param: 'expires_at', code: 'expiry_exceeds_creator' });
    const byScoped = await call(scoped.body.key, 'POST', `/v1/admin/keys/${dev.body.id}/rotate`, {});
    expect(byScoped.status).toBe(403);
    expect(byScoped.body.error.code).toBe('unscoped_exceeds_creator');
    // The developer key is untouched by the refusals; its unscoped tenant admin may rotate it.
    expect((await call(dev.body.key, 'GET', '/v1/models')).status).toBe(200);
    expect((await call(t.key, 'POST', `/v1/admin/keys/${dev.body.id}/rotate`, {})).status).toBe(201);
  });
});

describe('denials are aggregated for the audit log', () => {
  it('a flood of 403s writes one row at once and one counted row per window, not a row per denial', async () => {
    const { key, keyId } = await stack.createTenantKey({ role: 'user' });
    const denied = () => stack.db.selectFrom('audit_log').select(['seq', 'data', 'target']).where('action', '=', 'auth.denied').where('actor', '=', `key:${keyId}`).orderBy('seq').execute();
    const FLOOD = 150;
    for (let i = 0; i < FLOOD; i++) expect((await call(key, 'GET', '/v1/admin/usage')).status).toBe(403);
    const during = await denied();
    expect(during.length).toBeGreaterThanOrEqual(1);
    expect(during.length).toBeLessThanOrEqual(3); // the first at once; at most a window's aggregate or two meanwhile
    expect(during[0]!.target).toBe('GET /admin/usage');
    // Every denial is accounted for once the window closes: the first row's 1 plus the aggregates' counts.
    const deadline = Date.now() + 45_000;
    let total = 0;
    while (Date.now() < deadline) {
      total = (await denied()).reduce((n, r) => n + Number((r.data as { count?: number }).count ?? 1), 0);
      if (total >= FLOOD) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(total).toBe(FLOOD);
    const rows = await denied();
    expect(rows.length).toBeLessThanOrEqual(4);
    expect(rows.slice(1).every((r) => (r.data as { aggregated?: boolean }).aggregated === true)).toBe(true);
    expect((await stack.admin('GET', '/v1/admin/audit/verify')).body.ok).toBe(true);
  });
});

// Last in the file: it revokes the stack's bootstrap admin key.
describe('super-admin keys', () => {
  it('are created, rotated and revoked through the API; the last one cannot be revoked', async () => {
    const second = await stack.admin('POST', '/v1/admin/keys', { role: 'super_admin', name: 'second admin' });
    expect(second.status).toBe(201);
    expect((await call(second.body.key, 'GET', '/v1/admin/tenants')).status).toBe(200);
    const listed = await stack.admin('GET', '/v1/admin/keys');
    expect(listed.body.data.map((k: any) => k.id)).toEqual(expect.arrayContaining([second.body.id]));

    const rotated = await stack.admin('POST', `/v1/admin/keys/${second.body.id}/rotate`, { grace_seconds: 0 });
    expect(rotated.status).toBe(201);
    expect(rotated.body).toMatchObject({ role: 'super_admin', tenant_id: null, expires_at: null, rotated_from: { id: second.body.id } });
    expect((await call(second.body.key, 'GET', '/v1/admin/tenants')).status).toBe(401);
    expect((await call(rotated.body.key, 'GET', '/v1/admin/tenants')).status).toBe(200);

    // Tenants cannot see operator keys: 404, not 403 (no existence oracle).
    const t = await stack.createTenantKey({ role: 'tenant_admin' });
    expect((await call(t.key, 'POST', `/v1/admin/keys/${rotated.body.id}/revoke`)).status).toBe(404);
    expect((await call(t.key, 'POST', `/v1/admin/keys/${rotated.body.id}/rotate`, {})).status).toBe(404);

    // The rotated key revokes the bootstrap key: another active admin remains.
    const bootstrapId = (await stack.db.selectFrom('api_keys').select('id').where('name', '=', 'bootstrap admin').executeTakeFirstOrThrow()).id;
    // Then it is the last: revoking itself is refused, and it keeps working.
    const revokeBootstrap = await call(rotated.body.key, 'POST', `/v1/admin/keys/${bootstrapId}/revoke`);
    expect(revokeBootstrap.status).toBe(200);
    const last = await call(rotated.body.key, 'POST', `/v1/admin/keys/${rotated.body.id}/revoke`);
    expect(last.status).toBe(409);
    expect(last.body.error).toMatchObject({ type: 'conflict_error', code: 'last_super_admin' });
    expect((await call(rotated.body.key, 'GET', '/v1/admin/tenants')).status).toBe(200);
  });
});
