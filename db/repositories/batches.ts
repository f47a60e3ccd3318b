/** Batches: the row the API shows, its status transitions, live counts, and the lines' outcomes. */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { BatchLineError, BatchRow, BatchStatus, RequestStatus } from '../tables/index.js';

export interface NewBatch {
  id: string;
  tenantId: string;
  keyId: string;
  endpoint: string;
  inputFileId: string;
  completionWindow: string;
  metadata: Record<string, string> | null;
  expiresAt: Date;
}

export async function insertBatch(db: Db, b: NewBatch): Promise<BatchRow> {
  return db
    .insertInto('batches')
    .values({
      id: b.id, tenant_id: b.tenantId, key_id: b.keyId, endpoint: b.endpoint, input_file_id: b.inputFileId,
      completion_window: b.completionWindow, status: 'validating', metadata: b.metadata === null ? null : JSON.stringify(b.metadata),
      expires_at: b.expiresAt,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteBatch(db: Db, id: string): Promise<void> {
  await db.deleteFrom('batches').where('id', '=', id).execute();
}

/** A batch, visible only to its own tenant (or to everyone when `tenantId` is null). */
export async function getBatch(db: Db, id: string, tenantId: string | null): Promise<BatchRow | null> {
  let q = db.selectFrom('batches').selectAll().where('id', '=', id);
  if (tenantId !== null) q = q.where('tenant_id', '=', tenantId);
  return (await q.executeTakeFirst()) ?? null;
}

/** Newest first; `after` is the last ID of the previous page. */
export async function listBatches(db: Db, opts: { tenantId: string | null; limit: number; after: string | null }): Promise<BatchRow[]> {
  let q = db.selectFrom('batches').selectAll();
  if (opts.tenantId !== null) q = q.where('tenant_id', '=', opts.tenantId);
  if (opts.after !== null) q = q.where('id', '<', opts.after);
  return q.orderBy('id', 'desc').limit(opts.limit).execute();
}

const TIMESTAMP_OF: Partial<Record<BatchStatus, 'in_progress_at' | 'finalizing_at' | 'completed_at' | 'failed_at' | 'expired_at' | 'cancelling_at' | 'cancelled_at'>> = {
  in_progress: 'in_progress_at', finalizing: 'finalizing_at', completed: 'completed_at', failed: 'failed_at',
  expired: 'expired_at', cancelling: 'cancelling_at', cancelled: 'cancelled_at',
};

/**
 * Moves the batch to `to` if it is in one of `from` (stamping `<to>_at`), with extra fields.
 * Returns whether it moved: a replayed or raced transition changes nothing.
 */
export async function transitionBatch(
  db: Db,
  id: string,
  from: readonly BatchStatus[],
  to: BatchStatus,
  at: Date,
  extra: { total?: number; completed?: number; failed?: number; errors?: BatchLineError[] | null; model?: string | null; estimatedCostMicros?: number | null; outputFileId?: string | null; errorFileId?: string | null } = {},
): Promise<boolean> {
  const stamp = TIMESTAMP_OF[to];
  const r = await db
    .updateTable('batches')
    .set({
      status: to,
      ...(stamp ? { [stamp]: at } : {}),
      ...(extra.total !== undefined ? { total: extra.total } : {}),
      ...(extra.completed !== undefined ? { completed: extra.completed } : {}),
      ...(extra.failed !== undefined ? { failed: extra.failed } : {}),
      ...(extra.errors !== undefined ? { errors: extra.errors === null ? null : JSON.stringify(extra.errors) } : {}),
      ...(extra.model !== undefined ? { model: extra.model } : {}),
      ...(extra.estimatedCostMicros !== undefined ? { estimated_cost_micros: extra.estimatedCostMicros } : {}),
      ...(extra.outputFileId !== undefined ? { output_file_id: extra.outputFileId } : {}),
      ...(extra.errorFileId !== undefined ? { error_file_id: extra.errorFileId } : {}),
    })
    .where('id', '=', id)
    .where('status', 'in', [...from])
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Live counts (absolute values, so a replayed write is harmless). */
export async function recordBatchCounts(db: Db, id: string, counts: { completed: number; failed: number }): Promise<void> {
  await db.updateTable('batches').set({ completed: counts.completed, failed: counts.failed }).where('id', '=', id).execute();
}

/** Monthly budget left for the tenant in `period`, or null when it has none. */
export async function remainingBudget(db: Db, tenantId: string, period: string): Promise<number | null> {
  const row = await db
    .selectFrom('tenants')
    .leftJoin('tenant_spend', (j) => j.onRef('tenant_spend.tenant_id', '=', 'tenants.id').on('tenant_spend.period', '=', period))
    .select(['tenants.monthly_budget_micros', 'tenant_spend.spent_micros', 'tenant_spend.reserved_micros'])
    .where('tenants.id', '=', tenantId)
    .executeTakeFirst();
  if (!row || row.monthly_budget_micros === null) return null;
  return row.monthly_budget_micros - (row.spent_micros ?? 0) - (row.reserved_micros ?? 0);
}

/**
 * Creates the `requests` rows of a page of lines (kind `batch`); existing ones are left alone.
 * The rows go as one array per column (`unnest`): five parameters whatever their number (a
 * multi-row `values` was seven per row, 1,792 for a page of 256 lines).
 */
export async function insertLineRequests(
  db: Db,
  rows: ReadonlyArray<{ id: string; tenantId: string; keyId: string; model: string; bodyHash: string }>,
): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    insert into requests (id, tenant_id, key_id, kind, model, idempotency_key, body_hash)
    select r.id, r.tenant_id, r.key_id, 'batch', r.model, null, r.body_hash
    from unnest(${rows.map((r) => r.id)}::text[], ${rows.map((r) => r.tenantId)}::text[], ${rows.map((r) => r.keyId)}::text[],
      ${rows.map((r) => r.model)}::text[], ${rows.map((r) => r.bodyHash)}::text[]) as r(id, tenant_id, key_id, model, body_hash)
    on conflict (id) do nothing`.execute(db);
}

export interface LineOutcome {
  line_no: number;
  content: string;
  request_id: string | null;
  status: RequestStatus | null;
  result: unknown;
  error: unknown;
}

/**
 * A page of the input file's lines with the outcome of each line's request (null when the line
 * never started). `requestPrefix` + line number is the line's request ID.
 */
export async function lineOutcomes(db: Db, fileId: string, requestPrefix: string, afterLineNo: number, limit: number): Promise<LineOutcome[]> {
  return db
    .selectFrom('file_lines')
    .leftJoin('requests', (j) => j.on('requests.id', '=', sql<string>`${requestPrefix} || file_lines.line_no::text`))
    .select(['file_lines.line_no', 'file_lines.content', 'requests.id as request_id', 'requests.status', 'requests.result', 'requests.error'])
    .where('file_lines.file_id', '=', fileId)
    .where('file_lines.line_no', '>', afterLineNo)
    .orderBy('file_lines.line_no')
    .limit(limit)
    .execute();
}
