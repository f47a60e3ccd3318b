/**
 * Requests answered 5xx because their workflow could not be started (migration 0651): what the
 * availability SLI (db/repositories/slos.ts) counts as failed requests next to the request rows.
 */
import type { Db } from '../database.js';

/** One failed start as answered to the client. */
export interface StartFailure {
  requestId: string;
  tenantId: string;
  /** The request's kind, as `requests.kind` would have held it (sync, async). */
  kind: string;
  model: string;
  /** The error `code` answered (`temporal_unavailable`, `internal_error`). */
  code: string;
  /** The HTTP status answered, 5xx. */
  status: number;
}

/** Records one failed start (every 5xx answer is one row: a retry that fails again is another). */
export async function recordStartFailure(db: Db, f: StartFailure): Promise<void> {
  await db.insertInto('request_start_failures').values({
    request_id: f.requestId, tenant_id: f.tenantId, kind: f.kind, model: f.model, code: f.code, status: f.status,
  }).execute();
}
