/** Requests (jobs): one row per chat request, created by the API, finished by the workflow. */
import type { Db } from '../database.js';
import type { RequestRow, RequestKind, RequestStatus } from '../tables/index.js';

export interface NewRequest {
  id: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  model: string;
  idempotencyKey: string | null;
  bodyHash: string;
}

/** Inserts the request, or returns the existing row with the same ID (idempotent retry). */
export async function insertRequest(db: Db, r: NewRequest): Promise<{ created: boolean; row: RequestRow }> {
  const inserted = await db
    .insertInto('requests')
    .values({
      id: r.id,
      tenant_id: r.tenantId,
      key_id: r.keyId,
      kind: r.kind,
      model: r.model,
      idempotency_key: r.idempotencyKey,
      body_hash: r.bodyHash,
    })
    .onConflict((oc) => oc.column('id').doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return { created: true, row: inserted };
  const row = await db.selectFrom('requests').selectAll().where('id', '=', r.id).executeTakeFirstOrThrow();
  return { created: false, row };
}

/** A request, visible only to its own tenant (or to everyone when `tenantId` is null). */
export async function getRequest(db: Db, id: string, tenantId: string | null): Promise<RequestRow | null> {
  let q = db.selectFrom('requests').selectAll().where('id', '=', id);
  if (tenantId !== null) q = q.where('tenant_id', '=', tenantId);
  return (await q.executeTakeFirst()) ?? null;
}

/** Removes a request whose workflow could not be started (nothing else refers to it yet). */
export async function deleteUnstartedRequest(db: Db, id: string): Promise<void> {
  await db.deleteFrom('requests').where('id', '=', id).where('status', '=', 'queued').execute();
}

export async function markRequestRunning(db: Db, id: string): Promise<void> {
  await db.updateTable('requests').set({ status: 'running' }).where('id', '=', id).where('status', '=', 'queued').execute();
}

/** Records the outcome once; a replayed call for a finished request changes nothing. */
export async function finishRequest(
  db: Db,
  id: string,
  outcome: { status: Extract<RequestStatus, 'succeeded' | 'failed' | 'cancelled'>; result: unknown; error: unknown },
): Promise<void> {
  await db
    .updateTable('requests')
    .set({
      status: outcome.status,
      result: outcome.result === null ? null : JSON.stringify(outcome.result),
      error: outcome.error === null ? null : JSON.stringify(outcome.error),
      finished_at: new Date(),
    })
    .where('id', '=', id)
    .where('status', 'in', ['queued', 'running'])
    .execute();
}
