/**
 * The audit log is tamper-evident: whoever can write the database (and so can drop the append-only
 * trigger) and updates, deletes, reorders or cuts rows is named by `GET /v1/admin/audit/verify`,
 * and a signed checkpoint catches a cut tail even when the head was moved back with it.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startTestStack, type TestStack } from '../support/stack.js';
import { CHECKPOINT_STALE_MS, appendAudit, appendAuditMany, auditHash, checkpointSignature, writeCheckpoint } from '../../db/repositories/audit.js';

const AUDIT_KEY = 'test-audit-key-0123456789abcdef0123456789';
let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ env: { SLUICE_AUDIT_KEY: AUDIT_KEY } });
  for (let i = 0; i < 4; i++) await stack.createTenantKey();
  await sql`create table audit_snapshot as select * from audit_log`.execute(stack.db);
  await sql`create table head_snapshot as select * from audit_head`.execute(stack.db);
});
afterAll(async () => {
  await stack?.stop();
});

/** Puts the log back as it was before each test (as the table owner, past the trigger). */
beforeEach(async () => {
  await sql`alter table audit_log disable trigger user`.execute(stack.db);
  await sql`delete from audit_log`.execute(stack.db);
  await sql`insert into audit_log select * from audit_snapshot`.execute(stack.db);
  await sql`update audit_head set seq = s.seq, hash = s.hash from head_snapshot s where audit_head.id = s.id`.execute(stack.db);
  await sql`alter table audit_checkpoints disable trigger user`.execute(stack.db);
  await sql`delete from audit_checkpoints`.execute(stack.db);
  await sql`alter table audit_checkpoints enable trigger user`.execute(stack.db);
  await sql`alter table audit_log enable trigger user`.execute(stack.db);
});

/** Runs `change` on the checkpoints as their owner would: their append-only trigger is off meanwhile. */
async function tamperCheckpoints(change: () => Promise<unknown>) {
  await sql`alter table audit_checkpoints disable trigger user`.execute(stack.db);
  try {
    await change();
  } finally {
    await sql`alter table audit_checkpoints enable trigger user`.execute(stack.db);
  }
}

/** Runs `change` as someone who owns the table: the append-only trigger is off meanwhile. */
async function tamper(change: string) {
  await sql`alter table audit_log disable trigger user`.execute(stack.db);
  try {
    await sql.raw(change).execute(stack.db);
  } finally {
    await sql`alter table audit_log enable trigger user`.execute(stack.db);
  }
}

const verify = () => stack.admin('GET', '/v1/admin/audit/verify');
const headSeq = async () => Number((await stack.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);

describe('audit verification', () => {
  it('an intact log verifies', async () => {
    const r = await verify();
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ok: true, head_seq: await headSeq(), checkpoint: null, checkpoints_signed: true });
    expect(r.body.rows).toBe(r.body.head_seq);
  });

  it('one append hashes in PostgreSQL exactly as auditHash does, a retry returns the first row, and concurrent appends chain', async () => {
    const before = await headSeq();
    // Keys that sort around `seq`, a nested `seq`, and strings holding what the split looks for.
    const data = {
      seq: 0, sep: '"seq":0', nested: { seq: 7, list: [1, 2.5, null, true, 'é\n\u0001🙂'] }, z: -12, big: 9007199254740991, empty: {},
    };
    const entry = { actor: 'key:k"1', tenantId: 'tn_x', action: 'test.one', target: 'seq:"seq":0', data, idempotencyKey: 'one:1', at: new Date() };
    const row = await appendAudit(stack.db, entry);
    expect(Number(row.seq)).toBe(before + 1);
    expect(row.hash).toBe(auditHash(row.prev_hash, row));
    expect(row.data).toEqual(data);
    const again = await appendAudit(stack.db, { ...entry, data: { other: true }, at: new Date(0) });
    expect(again).toEqual(row);
    expect(await headSeq()).toBe(before + 1);
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => appendAudit(stack.db, { ...entry, idempotencyKey: i % 2 ? `one:c${i}` : null, target: `t:${i}` })));
    expect(new Set(many.map((r) => Number(r.seq)))).toEqual(new Set(Array.from({ length: 8 }, (_, i) => before + 2 + i)));
    expect(await headSeq()).toBe(before + 9);
    const r = await verify();
    expect(r.body).toMatchObject({ ok: true, head_seq: before + 9, rows: before + 9 });
  });

  it('a chunk appended at once chains in order, skips keys already in the log, and verifies', async () => {
    const before = await headSeq();
    // Quotes, backslashes, a newline and non-ASCII in the data: each column goes as an array literal.
    const entry = (n: number) => ({ actor: 'system', tenantId: null, action: 'test.chunk', target: `t:${n}`, data: { n, note: `a "q" \\ b\n{c,d} ü ${n}` }, idempotencyKey: `chunk:${n}`, at: new Date() });
    await appendAudit(stack.db, entry(1));
    // 1 is in the log already, 3 comes twice, the null key always goes in.
    const seqs = await appendAuditMany(stack.db, [entry(1), entry(2), entry(3), entry(3), { ...entry(4), idempotencyKey: null }]);
    expect(seqs).toEqual([before + 2, before + 3, before + 4]);
    const rows = await stack.db.selectFrom('audit_log').selectAll().where('seq', 'in', seqs).orderBy('seq').execute();
    expect(rows.map((r) => r.target)).toEqual(['t:2', 't:3', 't:4']);
    expect(rows.map((r) => r.data)).toEqual([2, 3, 4].map((n) => entry(n).data));
    expect(rows[1]!.prev_hash).toBe(rows[0]!.hash);
    expect(await headSeq()).toBe(before + 4);
    // A retried chunk appends nothing and leaves the head where it was.
    expect(await appendAuditMany(stack.db, [entry(2), entry(3)])).toEqual([]);
    expect(await headSeq()).toBe(before + 4);
    const r = await verify();
    expect(r.body).toMatchObject({ ok: true, head_seq: before + 4, rows: before + 4 });
  });

  it('the table refuses updates and deletes from the application', async () => {
    await expect(sql`update audit_log set actor = 'x' where seq = 1`.execute(stack.db)).rejects.toThrow(/append-only/);
    await expect(sql`delete from audit_log where seq = 1`.execute(stack.db)).rejects.toThrow(/append-only/);
  });

  it('the checkpoints refuse updates, deletes and truncation from the application', async () => {
    expect((await stack.admin('POST', '/v1/admin/audit/checkpoints')).status).toBe(201);
    await expect(sql`update audit_checkpoints set head_hash = 'x'`.execute(stack.db)).rejects.toThrow(/append-only/);
    await expect(sql`delete from audit_checkpoints`.execute(stack.db)).rejects.toThrow(/append-only/);
    await expect(sql`truncate audit_checkpoints`.execute(stack.db)).rejects.toThrow(/append-only/);
    expect((await stack.db.selectFrom('audit_checkpoints').select('seq').execute()).length).toBe(1);
  });

  it('reports a missing checkpoint, a fresh one, and a stale one', async () => {
    const none = await verify();
    expect(none.body).toMatchObject({ ok: true, checkpoint: null, checkpoint_status: 'missing', unprotected_rows: await headSeq() });
    const cp = await stack.admin('POST', '/v1/admin/audit/checkpoints');
    // The checkpoint's own audit row follows it: one fresh unprotected row.
    const fresh = await verify();
    expect(fresh.body).toMatchObject({ ok: true, checkpoint: { seq: cp.body.seq, signed: true }, checkpoint_status: 'fresh', unprotected_rows: 1 });
    // A checkpoint (taken without its own audit row), then a row that has waited longer than
    // CHECKPOINT_STALE_MS for the next one: the tail is stale.
    const quiet = await writeCheckpoint(stack.db, AUDIT_KEY);
    expect(Number(quiet.seq)).toBe(await headSeq());
    expect((await verify()).body).toMatchObject({ checkpoint_status: 'fresh', unprotected_rows: 0 });
    const longAgo = new Date(Date.now() - CHECKPOINT_STALE_MS - 60_000);
    await appendAudit(stack.db, { actor: 'system', tenantId: null, action: 'test.waiting', target: null, data: {}, idempotencyKey: null, at: longAgo });
    const stale = await verify();
    expect(stale.status).toBe(200);
    expect(stale.body).toMatchObject({ ok: true, checkpoint_status: 'stale', unprotected_rows: 1, unprotected_since: longAgo.toISOString() });
  });

  it('verifies incrementally from the latest checkpoint; a full verify is for the super admin only', async () => {
    const cp = await stack.admin('POST', '/v1/admin/audit/checkpoints');
    const head = await headSeq();
    const inc = await verify();
    expect(inc.body).toMatchObject({ ok: true, mode: 'incremental', verified_from_seq: cp.body.seq + 1, verified_to_seq: head, rows: head - cp.body.seq, complete: true });
    const full = await stack.admin('GET', '/v1/admin/audit/verify?full=true');
    expect(full.body).toMatchObject({ ok: true, mode: 'full', verified_from_seq: 1, rows: head });
    expect((await stack.admin('GET', '/v1/admin/audit/verify?full=yes')).status).toBe(400);
    // A query parameter a route does not read is refused, named (`?tenant=` for `?tenant_id=`, `?after=` for `?before=`).
    for (const [path, param] of [['/v1/admin/usage?tenant=t', 'tenant'], ['/v1/admin/audit?after=3', 'after'], ['/v1/admin/audit/verify?mode=full', 'mode']] as const) {
      const r = await stack.admin('GET', path);
      expect(r.status, path).toBe(400);
      expect(r.body.error, path).toMatchObject({ type: 'invalid_request_error', code: 'unknown_parameter', param });
    }
    const { key } = await stack.createTenantKey({ role: 'tenant_admin' });
    const asTenant = (q: string) => fetch(`${stack.url}/v1/admin/audit/verify${q}`, { headers: { Authorization: `Bearer ${key}` } });
    expect((await asTenant('')).status).toBe(200);
    const refused = await asTenant('?full=true');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as any).error).toMatchObject({ code: 'full_verify_not_allowed', param: 'full' });
  });

  it('an updated row is named', async () => {
    await tamper(`update audit_log set data = jsonb_set(data, '{after,name}', '"renamed"') where seq = 3`);
    const r = await verify();
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ ok: false, first_bad_seq: 3 });
  });

  it('a deleted row is named', async () => {
    await tamper('delete from audit_log where seq = 4');
    expect((await verify()).body).toMatchObject({ ok: false, first_bad_seq: 4, reason: 'row 4 is missing' });
  });

  it('reordered rows are named', async () => {
    // Swap the content of rows 3 and 4, each keeping its sequence number.
    await tamper(`
      update audit_log a set created_at = b.created_at, actor = b.actor, tenant_id = b.tenant_id, action = b.action,
        target = b.target, data = b.data, prev_hash = b.prev_hash, hash = b.hash
      from audit_snapshot b where (a.seq, b.seq) in ((3, 4), (4, 3))`);
    const r = await verify();
    expect(r.status).toBe(409);
    expect(r.body.first_bad_seq).toBe(3);
  });

  it('a cut tail is named while the head still points past it', async () => {
    const head = await headSeq();
    await tamper(`delete from audit_log where seq > ${head - 2}`);
    expect((await verify()).body).toMatchObject({ ok: false, first_bad_seq: head - 1 });
  });

  it('a cut tail with the head moved back is caught by a signed checkpoint', async () => {
    const cp = await stack.admin('POST', '/v1/admin/audit/checkpoints');
    expect(cp.status).toBe(201);
    expect(cp.body).toMatchObject({ signed: true });
    const cutTo = cp.body.seq - 2;
    const cut = async () => {
      await tamper(`delete from audit_log where seq > ${cutTo}`);
      await sql`update audit_head set seq = ${cutTo}, hash = (select hash from audit_log where seq = ${cutTo})`.execute(stack.db);
    };
    await cut();
    const r = await verify();
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ ok: false, first_bad_seq: cutTo + 1 });
    expect(r.body.reason).toMatch(/cut/);

    // Without the checkpoint the same cut is invisible (but verify says no checkpoint covers the
    // tail): this is what checkpoints are for, and why they are append-only too.
    await tamperCheckpoints(() => sql`delete from audit_checkpoints`.execute(stack.db));
    const unprotected = await verify();
    expect(unprotected.status).toBe(200);
    expect(unprotected.body).toMatchObject({ checkpoint: null, checkpoint_status: 'missing', unprotected_rows: cutTo });
  });

  it('a consistently rewritten chain is caught by the checkpoint, and a forged checkpoint by its signature', async () => {
    const cp = await stack.admin('POST', '/v1/admin/audit/checkpoints');
    expect(cp.status).toBe(201);
    // Rewrite row 2 and recompute every later hash, as someone with the code but not the key would.
    await tamper(`update audit_log set target = 'rewritten' where seq = 2`);
    const rows = await stack.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    let prev = rows[0]!.hash;
    await sql`alter table audit_log disable trigger user`.execute(stack.db);
    for (const row of rows.slice(1)) {
      const hash = auditHash(prev, row);
      await sql`update audit_log set prev_hash = ${prev}, hash = ${hash} where seq = ${row.seq}`.execute(stack.db);
      prev = hash;
    }
    await sql`alter table audit_log enable trigger user`.execute(stack.db);
    await sql`update audit_head set hash = ${prev}`.execute(stack.db);
    const r = await verify();
    expect(r.status).toBe(409);
    expect(r.body.first_bad_seq).toBeLessThanOrEqual(2);
    expect(r.body.reason).toMatch(/rewritten/);

    // Re-signing the checkpoint over the new head needs the key; a guessed one fails.
    await tamperCheckpoints(() => sql`update audit_checkpoints set head_hash = ${prev}, signature = ${checkpointSignature('not-the-key', cp.body.seq, prev)}`.execute(stack.db));
    const forged = await verify();
    expect(forged.status).toBe(409);
    expect(forged.body).toMatchObject({ first_bad_seq: cp.body.seq, reason: `checkpoint at ${cp.body.seq} has an invalid signature` });
  });

  it('checkpoints are admin-only', async () => {
    const { key } = await stack.createTenantKey({ role: 'tenant_admin' });
    const res = await fetch(`${stack.url}/v1/admin/audit/checkpoints`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    expect(res.status).toBe(403);
  });
});
