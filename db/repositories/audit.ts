/**
 * The audit log: append-only, gap-free sequence, each row's hash covering the previous hash and
 * the row's canonical content. Appends serialise on the single `audit_head` row.
 */
import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Db } from '../database.js';
import type { AuditRow, Database } from '../tables/index.js';
import { sql, type Selectable } from 'kysely';
import { canonicalJson } from '../../domain/canonical-json.js';

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

type HashedFields = Pick<AuditRow, 'seq' | 'created_at' | 'actor' | 'tenant_id' | 'action' | 'target' | 'data'>;

/** The canonical content a row's hash covers. */
function auditContent(row: HashedFields): string {
  return canonicalJson({
    seq: row.seq,
    created_at: row.created_at.toISOString(),
    actor: row.actor,
    tenant_id: row.tenant_id,
    action: row.action,
    target: row.target,
    data: row.data,
  });
}

/** The hash of a row given the previous hash: SHA-256 over prev hash and canonical content. */
export function auditHash(prevHash: string, row: HashedFields): string {
  return createHash('sha256').update(prevHash).update('\n').update(auditContent(row)).digest('hex');
}

/**
 * The canonical content of a row whose `seq` is not known yet, split where the seq goes: the
 * content is `before + String(seq) + after`. The top-level key `seq` sorts after `data`, and no
 * escaped string can hold `"seq":`, so its last occurrence is the row's own.
 */
export function auditContentAround(row: Omit<HashedFields, 'seq'>): { before: string; after: string } {
  const content = auditContent({ ...row, seq: 0 });
  const at = content.lastIndexOf('"seq":0') + '"seq":'.length;
  return { before: content.slice(0, at), after: content.slice(at + 1) };
}

/**
 * The canonical content of a row whose `seq` and top-level `data[key]` (a safe integer) are not
 * known yet, split at both: the content is `parts[0] + String(value) + parts[1] + String(seq) +
 * parts[2]`. The value's place is found by a random marker, which no other string of the row holds.
 */
export function auditContentAroundValue(row: Omit<HashedFields, 'seq'>, key: string): [string, string, string] {
  const value = `\u0000${randomUUID()}`;
  const marker = JSON.stringify(value);
  const { before, after } = auditContentAround({ ...row, data: { ...row.data, [key]: value } });
  const at = before.indexOf(marker);
  if (at < 0 || before.indexOf(marker, at + 1) >= 0) throw new Error(`audit data key ${key} not found once`);
  return [before.slice(0, at), before.slice(at + marker.length), after];
}

/** The entry's hashed fields as they will be stored (and read back). */
export function storedFields(entry: AuditEntry): Omit<HashedFields, 'seq'> {
  return {
    // Whole milliseconds, and the data round-tripped through JSON: what timestamptz and jsonb give back.
    created_at: new Date(Math.floor(entry.at.getTime())),
    actor: entry.actor, tenant_id: entry.tenantId, action: entry.action, target: entry.target,
    data: JSON.parse(JSON.stringify(entry.data)) as Record<string, unknown>,
  };
}

/** A row of the chain as it will be inserted: `seq` and hashes computed from the head. */
function chained(head: { seq: number; hash: string }, entries: readonly AuditEntry[]) {
  let { seq, hash: prevHash } = head;
  return entries.map((entry) => {
    const fields = storedFields(entry);
    seq += 1;
    const hash = auditHash(prevHash, { ...fields, seq });
    const row = { ...fields, seq, data: JSON.stringify(fields.data), idempotency_key: entry.idempotencyKey, prev_hash: prevHash, hash };
    prevHash = hash;
    return row;
  });
}

/**
 * Appends the rows and moves the head to the last one, in one statement; the caller holds the
 * head's lock. A row whose idempotency key is already in the log is left out, and the head moves
 * only if a row went in: right for one row (a retry appends nothing). Several rows must not hold
 * such a key (their chain would skip it): `appendAuditMany` drops those entries first.
 * The rows go as one array per column (`unnest`): ten parameters and the same SQL text whatever
 * their number, where a multi-row `values` was ten parameters per row (2,560 for a batch chunk of
 * 256) for Kysely to build and compile, `pg` to send and PostgreSQL to parse and plan.
 * Returns the appended rows' sequence numbers only: the caller computed their content, and a
 * chunk's 256 rows read back whole (hashes, JSON data, dates parsed) were work for nothing.
 */
async function insertChained(trx: Db, rows: ReturnType<typeof chained>): Promise<number[]> {
  const last = rows[rows.length - 1] as (typeof rows)[number];
  const column = <T>(f: (row: (typeof rows)[number]) => T) => rows.map(f);
  const { rows: appended } = await sql<{ seq: string | number }>`
    with appended as (
      insert into audit_log (seq, created_at, actor, tenant_id, action, target, data, idempotency_key, prev_hash, hash)
      select * from unnest(${column((r) => r.seq)}::bigint[], ${column((r) => r.created_at.toISOString())}::timestamptz[],
        ${column((r) => r.actor)}::text[], ${column((r) => r.tenant_id)}::text[], ${column((r) => r.action)}::text[],
        ${column((r) => r.target)}::text[], ${column((r) => r.data)}::jsonb[], ${column((r) => r.idempotency_key)}::text[],
        ${column((r) => r.prev_hash)}::text[], ${column((r) => r.hash)}::text[])
      on conflict (idempotency_key) do nothing
      returning seq
    ), moved as (
      update audit_head set seq = ${last.seq}, hash = ${last.hash} where id = 1 and exists (select 1 from appended)
    )
    select seq from appended order by seq`.execute(trx);
  return appended.map((r) => Number(r.seq));
}

/**
 * Appends one entry in one statement (`sluice_audit_append`, migration 2026-12-02-0711): under the
 * head's lock, the row already holding the entry's idempotency key (a retry), else the next row
 * of the chain, hashed in PostgreSQL from the content computed here.
 */
export async function appendAudit(db: Db, entry: AuditEntry): Promise<AuditRow> {
  const f = storedFields(entry);
  const { before, after } = auditContentAround(f);
  const { rows } = await sql<AuditRow>`
    select * from sluice_audit_append(${f.created_at}, ${f.actor}, ${f.tenant_id}, ${f.action}, ${f.target},
      ${JSON.stringify(f.data)}::jsonb, ${entry.idempotencyKey}, ${before}, ${after})`.execute(db);
  const [row] = rows;
  if (!row) throw new Error('sluice_audit_append returned no row');
  return row;
}

/**
 * Appends many entries under one lock of the head, in order, in three statements whatever their
 * number: entries whose idempotency key is already in the log are skipped (a retried chunk).
 * Returns the sequence numbers of the rows appended now, in order.
 */
export async function appendAuditMany(db: Db, entries: readonly AuditEntry[]): Promise<number[]> {
  if (entries.length === 0) return [];
  return db.transaction().execute(async (trx) => {
    const head = await trx.selectFrom('audit_head').selectAll().where('id', '=', 1).forUpdate().executeTakeFirstOrThrow();
    const keys = entries.flatMap((e) => (e.idempotencyKey === null ? [] : [e.idempotencyKey]));
    // One array parameter, not one per key (`in (...)`: 256 for a batch chunk).
    const existing = keys.length === 0 ? [] : await trx.selectFrom('audit_log').select('idempotency_key').where('idempotency_key', '=', sql<string>`any(${keys}::text[])`).execute();
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

/** A checkpoint is stale once more rows than this were appended after it… @default 10000 */
export const CHECKPOINT_STALE_ROWS = 10_000;
/** …or once the oldest row after it is older than this (three reconciler runs), ms. @default 900000 */
export const CHECKPOINT_STALE_MS = 15 * 60_000;
/** Most rows an incremental verify rehashes in one call; past it the answer says `complete: false`. @default 50000 */
export const INCREMENTAL_VERIFY_MAX_ROWS = 50_000;

/**
 * How well the tail is protected: `fresh` (no row after the latest checkpoint, or few and recent),
 * `stale` (more than `CHECKPOINT_STALE_ROWS` rows, or rows older than `CHECKPOINT_STALE_MS`, after
 * it: they could have been rewritten unnoticed), `missing` (rows but no checkpoint that counts).
 */
export type CheckpointStatus = 'fresh' | 'stale' | 'missing';

export interface CheckpointReport {
  status: CheckpointStatus;
  /** The latest checkpoint that counts (signed, when a key is configured). */
  latest: { seq: number; signed: boolean; createdAt: Date } | null;
  /** Rows after it: not covered by any checkpoint. */
  unprotectedRows: number;
  /** When the first of those was written. */
  unprotectedSince: Date | null;
}

export type AuditVerification =
  | {
    ok: true; mode: 'full' | 'incremental'; rows: number; headSeq: number; headHash: string;
    /** First and last sequence rehashed by this call. */
    fromSeq: number; toSeq: number;
    /** False when an incremental verify stopped at `INCREMENTAL_VERIFY_MAX_ROWS` before the head. */
    complete: boolean;
    checkpoint: { seq: number; signed: boolean } | null;
    checkpoints: CheckpointReport;
  }
  | { ok: false; mode: 'full' | 'incremental'; rows: number; firstBadSeq: number; reason: string };

export interface VerifyOptions {
  auditKey?: string | null;
  pageSize?: number;
  /** Rehash the whole chain from row 1 (and check every checkpoint's signature), not only from the latest checkpoint. @default false */
  full?: boolean;
  /** @default INCREMENTAL_VERIFY_MAX_ROWS */
  maxRows?: number;
  /** @default CHECKPOINT_STALE_ROWS */
  staleRows?: number;
  /** @default CHECKPOINT_STALE_MS */
  staleMs?: number;
  now?: Date;
}

/**
 * Verifies the chain and reports how fresh its latest checkpoint is.
 *
 * Incremental (the default): checks the latest checkpoint's signature (only signed ones count when
 * `auditKey` is given), that the row at its sequence still has its hash, that every older
 * checkpoint's row still has its hash (one query), then rehashes only the rows after it up to the
 * head (at most `maxRows`). Rows before the latest checkpoint are trusted to the extent that
 * checkpoint is: a consistent rewrite changes the hash at the checkpoint and is caught; an
 * inconsistent edit of an old row is what `full` is for.
 *
 * Full: every checkpoint's signature, then every row from 1, as before. Both name the first row
 * that does not fit: a gap, a prev_hash that is not the previous row's hash, a hash that does not
 * match the content, a head past the last row (a cut tail), a checkpoint past the head (a cut tail
 * with the head moved back), or a checkpoint whose row has another hash (rewritten).
 */
export async function verifyAudit(db: Db, opts: VerifyOptions = {}): Promise<AuditVerification> {
  const pageSize = opts.pageSize ?? 5000;
  const key = opts.auditKey ?? null;
  const mode = opts.full ? 'full' : 'incremental';
  const maxRows = opts.full ? Number.POSITIVE_INFINITY : opts.maxRows ?? INCREMENTAL_VERIFY_MAX_ROWS;
  const now = opts.now ?? new Date();
  const fail = (rows: number, firstBadSeq: number, reason: string): AuditVerification => ({ ok: false, mode, rows, firstBadSeq, reason });

  // The head first: rows appended while this runs lie past it and are left for the next call.
  const head = await db.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
  const headSeq = Number(head.seq);

  let checkpoints: AuditCheckpoint[];
  if (opts.full) {
    let q = db.selectFrom('audit_checkpoints').selectAll().orderBy('seq');
    if (key !== null) q = q.where('signature', 'is not', null);
    checkpoints = await q.execute();
  } else {
    let q = db.selectFrom('audit_checkpoints').selectAll().orderBy('seq', 'desc').limit(1);
    if (key !== null) q = q.where('signature', 'is not', null);
    checkpoints = await q.execute();
  }
  checkpoints = checkpoints.map((cp) => ({ ...cp, seq: Number(cp.seq) }));
  if (key !== null) {
    const forged = checkpoints.find((cp) => !signatureValid(key, cp));
    if (forged) return fail(0, forged.seq, `checkpoint at ${forged.seq} has an invalid signature`);
  }
  const latest = checkpoints.at(-1) ?? null;
  if (latest && latest.seq > headSeq) {
    return fail(0, headSeq + 1, `the chain ends at ${headSeq} but a checkpoint was taken at ${latest.seq}: rows were cut`);
  }

  // Incremental: start at the latest checkpoint, whose row must still carry its hash; and every
  // older checkpoint's row too (a rewrite before it that was not carried through to it).
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  if (!opts.full && latest && latest.seq > 0) {
    const mismatch = await db
      .selectFrom('audit_checkpoints as cp')
      .leftJoin('audit_log as l', 'l.seq', 'cp.seq')
      .select(['cp.seq', 'l.seq as row_seq'])
      .where('cp.seq', '>', 0)
      .where('cp.seq', '<=', latest.seq)
      .where((eb) => eb.or([eb('l.seq', 'is', null), eb('l.hash', '!=', eb.ref('cp.head_hash'))]))
      .$if(key !== null, (q) => q.where('cp.signature', 'is not', null))
      .orderBy('cp.seq')
      .limit(1)
      .executeTakeFirst();
    if (mismatch) {
      const bad = Number(mismatch.seq);
      if (mismatch.row_seq === null) return fail(0, bad, `row ${bad} is missing`);
      const before = await db.selectFrom('audit_checkpoints').select('seq').where('seq', '<', bad).orderBy('seq', 'desc').limit(1).executeTakeFirst();
      const goodUpTo = before ? Number(before.seq) : 0;
      return fail(0, goodUpTo + 1, `rows ${goodUpTo + 1}-${bad} do not match the checkpoint at ${bad}: they were rewritten`);
    }
    prevHash = latest.head_hash;
    expectedSeq = latest.seq + 1;
  }
  const fromSeq = expectedSeq;

  const wanted = new Map(checkpoints.map((cp) => [cp.seq, cp.head_hash]));
  const seen = new Map<number, string>();
  let rows = 0;
  let unprotectedSince: Date | null = null;
  const protectedUpTo = latest?.seq ?? 0;
  while (expectedSeq <= headSeq && rows < maxRows) {
    const page = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>=', expectedSeq)
      .where('seq', '<=', headSeq)
      .orderBy('seq')
      .limit(Math.min(pageSize, maxRows - rows))
      .execute();
    for (const row of page) {
      if (row.seq !== expectedSeq) return fail(rows, expectedSeq, `row ${expectedSeq} is missing`);
      if (row.prev_hash !== prevHash) return fail(rows, row.seq, 'prev_hash does not match the previous row');
      if (auditHash(prevHash, row) !== row.hash) return fail(rows, row.seq, 'content does not match its hash');
      if (wanted.has(row.seq)) seen.set(row.seq, row.hash);
      if (row.seq === protectedUpTo + 1) unprotectedSince = row.created_at;
      prevHash = row.hash;
      expectedSeq += 1;
      rows += 1;
    }
    if (page.length === 0) break;
  }
  const lastSeq = expectedSeq - 1;
  const complete = lastSeq === headSeq || rows < maxRows;
  if (complete && (lastSeq !== headSeq || prevHash !== head.hash)) {
    return fail(rows, Math.min(headSeq, expectedSeq), `head is at ${headSeq} but the chain ends at ${lastSeq}`);
  }
  if (opts.full) {
    let goodUpTo = 0;
    for (const cp of checkpoints) {
      if (cp.seq > 0 && seen.get(cp.seq) !== cp.head_hash) {
        return fail(rows, goodUpTo + 1, `rows ${goodUpTo + 1}-${cp.seq} do not match the checkpoint at ${cp.seq}: they were rewritten`);
      }
      goodUpTo = cp.seq;
    }
  }

  const unprotectedRows = headSeq - protectedUpTo;
  if (unprotectedRows > 0 && unprotectedSince === null) {
    const first = await db.selectFrom('audit_log').select('created_at').where('seq', '=', protectedUpTo + 1).executeTakeFirst();
    unprotectedSince = first?.created_at ?? null;
  }
  const staleRows = opts.staleRows ?? CHECKPOINT_STALE_ROWS;
  const staleMs = opts.staleMs ?? CHECKPOINT_STALE_MS;
  let status: CheckpointStatus = 'fresh';
  if (unprotectedRows > 0 && latest === null) status = 'missing';
  else if (unprotectedRows > staleRows || (unprotectedSince !== null && now.getTime() - unprotectedSince.getTime() > staleMs)) status = 'stale';
  const signed = latest !== null && latest.signature !== null && key !== null;
  return {
    ok: true, mode, rows, headSeq, headHash: head.hash, fromSeq, toSeq: lastSeq, complete,
    checkpoint: latest ? { seq: latest.seq, signed } : null,
    checkpoints: {
      status, latest: latest ? { seq: latest.seq, signed, createdAt: latest.created_at } : null, unprotectedRows,
      unprotectedSince: unprotectedRows > 0 ? unprotectedSince : null,
    },
  };
}
