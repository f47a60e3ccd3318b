/**
 * Failed authentications are audited — with the reason and, for a known key, its ID and prefix,
 * never any part of the presented secret — and an anonymous flood cannot flood the audit log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function call(auth: string | null) {
  const res = await fetch(`${stack.url}/v1/models`, { headers: auth === null ? {} : { Authorization: auth } });
  await res.arrayBuffer();
  return res.status;
}

const failures = () => stack.db.selectFrom('audit_log').selectAll().where('action', '=', 'auth.failed').orderBy('seq').execute();

describe('auditing failed authentication', () => {
  it('records each kind of failure with its reason, and no secret', async () => {
    const { keyId, key } = await stack.createTenantKey();
    expect((await stack.admin('POST', `/v1/admin/keys/${keyId}/revoke`)).status).toBe(200);
    const unknown = `sk-${'Z'.repeat(43)}`;
    expect(await call(null)).toBe(401);
    expect(await call('Bearer nonsense')).toBe(401);
    expect(await call(`Bearer ${unknown}`)).toBe(401);
    expect(await call(`Bearer ${key}`)).toBe(401);
    const rows = await failures();
    expect(rows.map((r) => (r.data as { reason: string }).reason)).toEqual(['missing_key', 'malformed_key', 'unknown_key', 'revoked_key']);
    const revoked = rows[3]!;
    expect(revoked.actor).toBe(`key:${keyId}`);
    expect((revoked.data as { key_prefix: string }).key_prefix).toBe(key.slice(0, 11));
    expect(rows.slice(0, 3).every((r) => r.actor === 'anonymous' && r.tenant_id === null)).toBe(true);
    const text = JSON.stringify(rows);
    expect(text).not.toContain(key);
    expect(text).not.toContain(unknown.slice(0, 20));
    expect(text).not.toContain('nonsense');
  });

  it('bounds what an anonymous flood writes and says how much it suppressed', async () => {
    const before = (await failures()).length;
    for (let i = 0; i < 120; i++) expect(await call('Bearer flood')).toBe(401);
    const rows = (await failures()).slice(before);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(60); // a burst of 20, then 5 a second
    await new Promise((r) => setTimeout(r, 1000));
    expect(await call('Bearer after-the-flood')).toBe(401);
    // Every failure is accounted for: written, or counted in the next written row. (Which row says
    // it depends on the machine's speed: a slow flood lets the bucket refill during it.)
    const after = (await failures()).slice(before);
    const accounted = after.reduce((n, r) => n + 1 + (r.data as { suppressed_before: number }).suppressed_before, 0);
    expect(accounted).toBe(121);
    expect(after.some((r) => (r.data as { suppressed_before: number }).suppressed_before > 0)).toBe(true);
    const verify = await stack.admin('GET', '/v1/admin/audit/verify');
    expect(verify.body.ok).toBe(true);
  });
});
