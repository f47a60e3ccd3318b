/**
 * Streamed completions' token channel (issue 13): `stream_chunks` holds the text deltas an
 * inference attempt publishes for a `stream: true` request, one row per batch of tokens, and
 * `stream_closed` the requests whose client went away (a chunk insert for one of them raises, so
 * the generation stops at its next flush without waiting for Temporal's cancellation). Each insert
 * is followed by `pg_notify('sluice_stream', request_id)`; API processes LISTEN and read the rows.
 * `sluice_stream_writer`: the narrow role an inference worker may use (insert chunks, read back
 * only their IDs).
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table stream_chunks (
      id bigserial primary key,
      request_id text not null,
      attempt text not null,
      content text not null,
      created_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index stream_chunks_request on stream_chunks (request_id, id)`.execute(db);
  await sql`
    create table stream_closed (
      request_id text primary key,
      closed_at timestamptz not null default now()
    )`.execute(db);
  await sql`
    create function stream_chunks_refuse_closed() returns trigger language plpgsql security definer as $$
    begin
      if exists (select 1 from stream_closed where request_id = new.request_id) then
        raise exception 'stream closed' using errcode = 'P0001', hint = 'sluice_stream_closed';
      end if;
      return new;
    end;
    $$`.execute(db);
  await sql`
    create trigger stream_chunks_refuse_closed before insert on stream_chunks
    for each row execute function stream_chunks_refuse_closed()`.execute(db);
  await sql`
    do $$
    begin
      if not exists (select 1 from pg_roles where rolname = 'sluice_stream_writer') then
        create role sluice_stream_writer nologin;
      end if;
    end;
    $$`.execute(db);
  await sql`grant insert on stream_chunks to sluice_stream_writer`.execute(db);
  // `insert … returning id` needs to read the ID it made, and only that column.
  await sql`grant select (id) on stream_chunks to sluice_stream_writer`.execute(db);
  await sql`grant usage on sequence stream_chunks_id_seq to sluice_stream_writer`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table if exists stream_chunks`.execute(db);
  await sql`drop table if exists stream_closed`.execute(db);
  await sql`drop function if exists stream_chunks_refuse_closed()`.execute(db);
}
