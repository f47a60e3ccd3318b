/**
 * Stored responses (`/v1/responses` with `store: true`): written once by the `responseRequest`
 * workflow's `storeResponse` step, read and deleted by the API, always within one tenant. Their
 * removal by retention and erase lives with the other content in `retention.ts`.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { StoredResponseRow } from '../tables/index.js';

export interface NewStoredResponse {
  id: string;
  tenantId: string;
  model: string;
  previousResponseId: string | null;
  response: unknown;
  inputItems: unknown;
  conversation: unknown;
}

/**
 * Stores a response once (a retried or replayed step changes nothing). Nothing is stored for a
 * tenant that was erased meanwhile: an erase removes what was stored before it, and a request
 * still running then must not write its content back after it. Returns whether a row was written.
 */
export async function insertStoredResponse(db: Db, r: NewStoredResponse): Promise<boolean> {
  // Text cast to json (never through jsonb): a generation may hold U+0000.
  const { rows } = await sql<{ id: string }>`
    insert into responses (id, tenant_id, model, previous_response_id, response, input_items, conversation)
    select ${r.id}, t.id, ${r.model}, ${r.previousResponseId}, ${JSON.stringify(r.response)}::json,
           ${JSON.stringify(r.inputItems)}::json, ${JSON.stringify(r.conversation)}::json
    from tenants t where t.id = ${r.tenantId} and t.erased_at is null
    on conflict (id) do nothing
    returning id`.execute(db);
  return rows.length > 0;
}

/** A stored response of `tenantId` (another tenant's, or one removed, is null). */
export async function getStoredResponse(db: Db, id: string, tenantId: string): Promise<StoredResponseRow | null> {
  return (await db.selectFrom('responses').selectAll().where('id', '=', id).where('tenant_id', '=', tenantId).executeTakeFirst()) ?? null;
}

/** Deletes a stored response of `tenantId`; false when it has none of that ID. */
export async function deleteStoredResponse(db: Db, id: string, tenantId: string): Promise<boolean> {
  const res = await db.deleteFrom('responses').where('id', '=', id).where('tenant_id', '=', tenantId).executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}
