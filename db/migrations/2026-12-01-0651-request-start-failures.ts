/**
 * Requests refused by a server-side failure before their workflow existed (issue 16): the API
 * wrote the request's row, `client.workflow.start` failed (Temporal unreachable → 503
 * `temporal_unavailable`, anything else → 500 `internal_error`), and the row was deleted so that
 * a retry of the same `Idempotency-Key` starts afresh. One row here per such answer, so the
 * availability SLI counts it as a failed request: a request row never exists for it, so nothing is
 * counted twice. No content: IDs, model, kind, the code and status answered.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table request_start_failures (
      id bigserial primary key,
      request_id text not null,
      tenant_id text not null references tenants (id),
      kind text not null,
      model text not null,
      code text not null,
      status integer not null check (status >= 500 and status < 600),
      created_at timestamptz not null default now()
    )`.execute(db);
  // The SLO queries read a time range of them, as they do requests (requests_sli_idx).
  await sql`create index request_start_failures_sli_idx on request_start_failures (created_at) include (tenant_id, model)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table if exists request_start_failures`.execute(db);
}
