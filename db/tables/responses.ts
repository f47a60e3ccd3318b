/** Stored responses of `/v1/responses` (migration 0302). */
import type { Selectable } from 'kysely';
import type { CreatedAt } from './columns.js';

/** One stored response: the object as returned, its input items and the conversation a chain continues. */
export interface ResponsesTable {
  /** `resp_…`: the response's ID, also its request's. */
  id: string;
  tenant_id: string;
  model: string;
  previous_response_id: string | null;
  /** The response object (`ResponseObject`, contracts/responses.ts), as JSON text on insert. */
  response: unknown;
  /** `ResponseInputItem[]` (messages, function calls and their outputs). */
  input_items: unknown;
  /** `ChatMessageInput[]`: every turn up to and including the output. */
  conversation: unknown;
  created_at: CreatedAt;
}

export type StoredResponseRow = Selectable<ResponsesTable>;

export interface ResponseTables {
  responses: ResponsesTable;
}
