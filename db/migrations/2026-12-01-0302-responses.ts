/**
 * Stored responses of `POST /v1/responses` (issue 14): one row per response created with
 * `store: true`, kept per tenant. `response` is the response object as returned, `input_items`
 * the request's input items (`GET /v1/responses/{id}/input_items`), `conversation` every turn up
 * to and including the response's output (what `previous_response_id` continues). JSON (`json`,
 * not `jsonb`): a generation may hold U+0000, which `jsonb` refuses. Removed by the tenant's
 * retention and by an erase, like request results.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table responses (
      id text primary key,
      tenant_id text not null references tenants (id),
      model text not null,
      previous_response_id text,
      response json not null,
      input_items json not null,
      conversation json not null,
      created_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index responses_tenant_created on responses (tenant_id, created_at)`.execute(db);
  await sql`create index responses_created on responses (created_at)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table if exists responses`.execute(db);
}
