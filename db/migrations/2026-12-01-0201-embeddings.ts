/**
 * Model capabilities for `/v1/embeddings` (issue 14): `models.kind` says what a model serves
 * (`chat` completions or `embeddings`; every existing model is a chat model) and
 * `models.accepts_dimensions` whether an embeddings request may ask for fewer `dimensions`.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table models add column kind text not null default 'chat'
    constraint models_kind_check check (kind in ('chat', 'embeddings'))`.execute(db);
  await sql`alter table models add column accepts_dimensions boolean not null default false`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table models drop column accepts_dimensions`.execute(db);
  await sql`alter table models drop column kind`.execute(db);
}
