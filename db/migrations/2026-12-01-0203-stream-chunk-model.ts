/**
 * The model a streamed attempt runs as, on each of its chunks (issue 13): a request answered by an
 * experiment variant or a fallback shows the model that generated the text on every
 * `chat.completion.chunk`, as its final completion does, instead of the model the client asked for.
 * Nullable: chunks published before this migration carry none (the API then shows the request's).
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table stream_chunks add column model text`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table stream_chunks drop column if exists model`.execute(db);
}
