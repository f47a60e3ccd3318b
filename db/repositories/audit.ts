/**
 * The audit log: append-only, gap-free sequence, each row's hash covering the previous hash and
 * the row's canonical content. Appends serialise on the single `audit_head` row.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Db } from '../database.js';
import type { AuditRow, Database } from '../tables/index.js';
import type { Selectable } from 'kysely';
import { canonicalJson } from './canonical-json.js';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEntry {
  /** Who: `key:<id>`, `system`, `workflow:<id>`. Never a secret. */
  actor: string;
  tenantId: string | null;
  action: string;
  target: string | null;
  data: Record<string, unknown>;
  /** Makes the append idempotent: a second append with the same key returns the first row. */
  idempotencyKey: string | null;
  at: Date;
}

/** The hash of a row given the previous hash: SHA-256 over prev hash and canonical content. */
export function auditHash(prevHash: string, row: Pick<AuditRow, 'seq' | 'created_at' | 'actor' | 'tenant_id' | 'action' | 'target' | 'data'>): string {
  const content = canonicalJson({
    seq: row.seq,
    created_at: row.created_at.toISOString(),
    actor: row.actor,
    tenant_id: row.tenant_id,
    action: row.action,
    target: row.target,
    data: row.data,
  });
  return createHash('sha256').update(prevHash).update('\n').update(content).digest('hex');
}

/** A row of the chain as it will be inserted: `seq` and hashes computed from the head. */
function chained(head: { seq: number; hash: string }, entries: readonly AuditEntry[]) {
  let { seq, hash: prevHash } = head;
  return entries.map((entry) => {
    // Round-trip the data through JSON so the hashed content is what jsonb will give back.
    const data = JSON.parse(JSON.stringify(entry.data)) as Record<string, unknown>;
    const createdAt = new Date(Math.floor(entry.at.getTime()));
    seq += 1;
    const hash = auditHash(prevHash, {
      seq, created_at: createdAt, actor: entry.actor, tenant_id: entry.tenantId, action: entry.action, target: entry.target, data,
    });
    const row = {
      seq, created_at: createdAt, actor: entry.actor, tenant_id: entry.tenantId, action: entry.action, target: entry.target,
      data: JSON.stringify(data), idempotency_key: entry.idempotencyKey, prev_hash: prevHash, hash,
    };
    prevHash = hash;
    return row;
  });
}

/**
 * Appends the rows and moves the head to the last one, in one statement; the caller holds the
 * head's lock. A row whose idempotency key is already in the log is left out, and the head moves
 * only if a row went in: right for one row (a retry appends nothing). Several rows must not hold
 * such a key (their chain would skip it): `appendAuditMany` drops those entries first.
 */
async function insertChained(trx: Db, rows: ReturnType<typeof chained>): Promise<AuditRow[]> {
  const last = rows[rows.length - 1] as (typeof rows)[number];
  return trx
    .with('appended', (q) => q.insertInto('audit_log').values(rows).onConflict((oc) => oc.column('idempotency_key').doNothing()).returningAll())
    .with('moved', (q) => q
      .updateTable('audit_head')
      .set({ seq: last.seq, hash: last.hash })
      .where('id', '=', 1)
      .where((eb) => eb.exists(eb.selectFrom('appended').select('appended.seq'))))
    .selectFrom('appended')
    .selectAll()
    .orderBy('seq')
    .execute();
}

export async function appendAudit(db: Db, entry: AuditEntry): Promise<AuditRow> {
  return db.transaction().execute(async (trx) => {
    const head = await trx.selectFrom('audit_head').selectAll().where('id', '=', 1).forUpdate().executeTakeFirstOrThrow();
    // One statement: the row (none if its idempotency key was appended before: a retry), and the
    // head moved only if the row went in. The head's lock orders every append.
    const [row] = await insertChained(trx, chained(head, [entry]));
    if (row) return row;
    return trx.selectFrom('audit_log').selectAll().where('idempotency_key', '=', entry.idempotencyKey).executeTakeFirstOrThrow();
  });
}

/**
 * Appends many entries under one lock of the head, in order, in three statements whatever their
 * number: entries whose idempotency key is already in the log are skipped (a retried chunk).
 * Returns the rows appended now.
 */
export async function appendAuditMany(db: Db, entries: readonly AuditEntry[]): Promise<AuditRow[]> {
  if (entries.length === 0) return [];
  return db.transaction().execute(async (trx) => {
    const head = await trx.selectFrom('audit_head').selectAll().where('id', '=', 1).forUpdate().executeTakeFirstOrThrow();
    const keys = entries.flatMap((e) => (e.idempotencyKey === null ? [] : [e.idempotencyKey]));
    const existing = keys.length === 0 ? [] : await trx.selectFrom('audit_log').select('idempotency_key').where('idempotency_key', 'in', keys).execute();
    const seen = new Set(existing.map((r) => r.idempotency_key));
    const fresh = entries.filter((e) => {
      if (e.idempotencyKey === null) return true;
      if (seen.has(e.idempotencyKey)) return false;
      seen.add(e.idempotencyKey); // the same key twice in one call: the first one
      return true;
    });
    if (fresh.length === 0) return [];
    return insertChained(trx, chained(head, fresh));
  });
}

export async function listAudit(
  db: Db,
  opts: { tenantId: string | null; limit: number; beforeSeq: number | null },
): Promise<AuditRow[]> {
  let q = db.selectFrom('audit_log').selectAll();
  if (opts.tenantId !== null) q = q.where('tenant_id', '=', opts.tenantId);
  if (opts.beforeSeq !== null) q = q.where('seq', '<', opts.beforeSeq);
  return q.orderBy('seq', 'desc').limit(opts.limit).execute();
}

export type AuditCheckpoint = Selectable<Database['audit_checkpoints']>;

/** The checkpoint's signature: HMAC-SHA256 over `seq` and the head hash, hex. */
export function checkpointSignature(key: string, seq: number, headHash: string): string {
  return createHmac('sha256', key).update(`sluice-audit-checkpoint\n${seq}\n${headHash}`).digest('hex');
}

function signatureValid(key: string, cp: AuditCheckpoint): boolean {
  if (cp.signature === null || !/^[0-9a-f]{64}$/.test(cp.signature)) return false;
  return timingSafeEqual(Buffer.from(cp.signature, 'hex'), Buffer.from(checkpointSignature(key, cp.seq, cp.head_hash), 'hex'));
}

/**
 * Records the chain's current head as a checkpoint, signed when `key` is given. Idempotent: a
 * second call at the same head returns the existing checkpoint.
 */
export async function writeCheckpoint(db: Db, key: string | null): Promise<AuditCheckpoint> {
  const head = await db.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
  const inserted = await db
    .insertInto('audit_checkpoints')
    .values({ seq: head.seq, head_hash: head.hash, signature: key === null ? null : checkpointSignature(key, head.seq, head.hash) })
    .onConflict((oc) => oc.column('seq').doNothing())
    .returningAll()
    .executeTakeFirst();
  return inserted ?? (await db.selectFrom('audit_checkpoints').selectAll().where('seq', '=', head.seq).executeTakeFirstOrThrow());
}

export type AuditVerification =
  | { ok: true; rows: number; headSeq: number; headHash: string; checkpoint: { seq: number; signed: boolean } | null }
  | { ok: false; rows: number; firstBadSeq: number; reason: string };

/**
 * Recomputes the chain from the first row, in pages, and names the first row that does not fit:
 * a gap in the sequence, a prev_hash that is not the previous row's hash, a hash that does not
 * match the content, or a head that points past the last row (a cut tail). Then holds the chain
 * against the checkpoints: with `auditKey`, only signed ones count and a bad signature fails; a
 * checkpoint past the chain's end is a cut tail even when the head was moved back with it, and a
 * checkpoint whose hash differs means the rows up to it were rewritten.
 */
export async function verifyAudit(db: Db, opts: { auditKey?: string | null; pageSize?: number } = {}): Promise<AuditVerification> {
  const pageSize = opts.pageSize ?? 5000;
  const key = opts.auditKey ?? null;
  let cpQuery = db.selectFrom('audit_checkpoints').selectAll().orderBy('seq');
  if (key !== null) cpQuery = cpQuery.where('signature', 'is not', null);
  const checkpoints = await cpQuery.execute();
  if (key !== null) {
    const forged = checkpoints.find((cp) => !signatureValid(key, cp));
    if (forged) return { ok: false, rows: 0, firstBadSeq: forged.seq, reason: `checkpoint at ${forged.seq} has an invalid signature` };
  }
  const wanted = new Map(checkpoints.map((cp) => [cp.seq, cp.head_hash]));
  const seen = new Map<number, string>();

  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let rows = 0;
  for (;;) {
    const page = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>=', expectedSeq)
      .orderBy('seq')
      .limit(pageSize)
      .execute();
    for (const row of page) {
      if (row.seq !== expectedSeq) return { ok: false, rows, firstBadSeq: expectedSeq, reason: `row ${expectedSeq} is missing` };
      if (row.prev_hash !== prevHash) return { ok: false, rows, firstBadSeq: row.seq, reason: 'prev_hash does not match the previous row' };
      if (auditHash(prevHash, row) !== row.hash) return { ok: false, rows, firstBadSeq: row.seq, reason: 'content does not match its hash' };
      if (wanted.has(row.seq)) seen.set(row.seq, row.hash);
      prevHash = row.hash;
      expectedSeq += 1;
      rows += 1;
    }
    if (page.length < pageSize) break;
  }
  const lastSeq = expectedSeq - 1;
  const head = await db.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
  if (head.seq !== lastSeq || head.hash !== prevHash) {
    return { ok: false, rows, firstBadSeq: Math.min(head.seq, expectedSeq), reason: `head is at ${head.seq} but the chain ends at ${lastSeq}` };
  }
  let goodUpTo = 0;
  for (const cp of checkpoints) {
    if (cp.seq > lastSeq) {
      return { ok: false, rows, firstBadSeq: lastSeq + 1, reason: `the chain ends at ${lastSeq} but a checkpoint was taken at ${cp.seq}: rows were cut` };
    }
    if (cp.seq > 0 && seen.get(cp.seq) !== cp.head_hash) {
      return { ok: false, rows, firstBadSeq: goodUpTo + 1, reason: `rows ${goodUpTo + 1}-${cp.seq} do not match the checkpoint at ${cp.seq}: they were rewritten` };
    }
    goodUpTo = cp.seq;
  }
  const latest = checkpoints.at(-1) ?? null;
  return {
    ok: true, rows, headSeq: head.seq, headHash: head.hash,
    checkpoint: latest ? { seq: latest.seq, signed: latest.signature !== null && key !== null } : null,
  };
}
