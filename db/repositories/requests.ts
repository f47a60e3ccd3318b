/** Requests (jobs): one row per chat request, created by the API, finished by the workflow. */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { RequestRow, RequestKind, RequestStatus } from '../tables/index.js';
import { preparedQuery } from '../prepared-query.js';

export interface NewRequest {
  id: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  model: string;
  idempotencyKey: string | null;
  bodyHash: string;
}

/** Every column of `requests`, as the insert returns them (a column the table gains and this misses fails the type check below). */
const REQUEST_COLUMNS = [
  'id', 'tenant_id', 'key_id', 'kind', 'model', 'idempotency_key', 'body_hash', 'status', 'result', 'error', 'created_at', 'finished_at', 'cache',
  'latency_ms', 'ttft_ms', 'failure_type', 'pool',
] as const satisfies ReadonlyArray<keyof RequestRow>;
const EVERY_REQUEST_COLUMN: Exclude<keyof RequestRow, (typeof REQUEST_COLUMNS)[number]> extends never ? true : never = true;
void EVERY_REQUEST_COLUMN;

/**
 * The insert of {@link insertRequest}, compiled once and named (every request runs it): it returns
 * the columns by name, so PostgreSQL parses it once per connection.
 */
const insertRequestQuery = preparedQuery(
  { id: 'string', tenantId: 'string', keyId: 'string', kind: 'string', model: 'string', idempotencyKey: 'string-or-null', bodyHash: 'string' },
  (db, r) => db
    .insertInto('requests')
    .values({
      id: r.id,
      tenant_id: r.tenantId,
      key_id: r.keyId,
      kind: r.kind as RequestKind,
      model: r.model,
      idempotency_key: r.idempotencyKey,
      body_hash: r.bodyHash,
    })
    .onConflict((oc) => oc.column('id').doNothing())
    .returning(REQUEST_COLUMNS),
);

/** Inserts the request, or returns the existing row with the same ID (idempotent retry). */
export async function insertRequest(db: Db, r: NewRequest): Promise<{ created: boolean; row: RequestRow }> {
  const inserted = (await db.executeQuery(insertRequestQuery(db, r))).rows[0];
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

/** An outcome to record on a request. */
export interface RequestOutcome {
  id: string;
  status: Extract<RequestStatus, 'succeeded' | 'failed' | 'cancelled'>;
  result: unknown;
  error: unknown;
  /** The `ApplicationFailure` type of a failed or cancelled request. @default null */
  failureType?: string | null;
  /** The pool of the deployment that served (or last tried) the request, when one did. @default null */
  pool?: string | null;
}

/** A result or error as `sluice_finish_requests` takes it: JSON text, or null. */
export function outcomeText(v: unknown): string | null {
  return v === null || v === undefined ? null : JSON.stringify(v);
}

/**
 * Records each request's outcome once (one statement for all of them); a replayed call for a
 * finished request changes nothing. The same statement stores what the SLOs measure
 * (migration 0501; the statement is `sluice_finish_requests`, migration 0811, which
 * `sluice_complete` runs too): `latency_ms` from acceptance (`created_at`) to now, and for a stream
 * `ttft_ms`, from acceptance to the insert of its first chunk (the `stream_chunks` row's own
 * time, so nothing extra is written while streaming). Returns the requests this call finished,
 * each with the seconds from its creation: a retried activity finds them finished and gets
 * nothing back, so what is counted per outcome is counted once.
 */
export async function finishRequests(db: Db, outcomes: readonly RequestOutcome[]): Promise<Array<{ id: string; seconds: number }>> {
  if (outcomes.length === 0) return [];
  // Text, cast to json in the function, never through a JSON function: a completion may hold
  // U+0000, which json stores as written but json_to_recordset and jsonb refuse.
  const { rows } = await sql<{ id: string; seconds: number | string }>`
    select * from sluice_finish_requests(${outcomes.map((o) => o.id)}::text[], ${outcomes.map((o) => o.status)}::text[],
      ${outcomes.map((o) => outcomeText(o.result))}::text[], ${outcomes.map((o) => outcomeText(o.error))}::text[],
      ${outcomes.map((o) => o.failureType ?? null)}::text[], ${outcomes.map((o) => o.pool ?? null)}::text[], ${new Date()}::timestamptz)`.execute(db);
  return rows.map((row) => ({ id: row.id, seconds: Math.max(0, Number(row.seconds)) }));
}

