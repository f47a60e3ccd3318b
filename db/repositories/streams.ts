/**
 * The token channel of streamed completions (migration 0202): chunks published by an inference
 * attempt (one row per batch of tokens, with a `NOTIFY` so API processes wake at once), read back
 * in order by the API process holding the client (or any other, on resume).
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';

/** The `LISTEN` channel; its payload is the request ID (far under NOTIFY's 8,000-byte limit). */
export const STREAM_CHANNEL = 'sluice_stream';

/** A published chunk as the API reads it. */
export interface StreamChunk {
  id: number;
  attempt: string;
  content: string;
  /** The model that generated it (null: a chunk from before migration 0203). */
  model: string | null;
}

/** The error a chunk insert raises once the stream's client is gone (see {@link closeStream}). */
export function isStreamClosedError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { hint?: unknown }).hint === 'sluice_stream_closed';
}

/**
 * Appends a chunk and notifies listeners, in one statement (one round trip). Throws an error
 * {@link isStreamClosedError} recognises when the stream was closed by its client.
 */
export async function publishChunk(db: Db, chunk: { requestId: string; attempt: string; model: string; content: string }): Promise<number> {
  // `synchronous_commit = off` for this transaction only: the commit (and so the NOTIFY) does not
  // wait for the WAL flush (measured 5.3 → see BENCHMARKS.md, "Streaming"). Chunks are not the
  // source of truth: the workflow's completion is; a PostgreSQL crash may lose the last few
  // hundred ms of chunks, which a resume then gets in the final `c` event from the completion.
  const { rows } = await sql<{ id: number }>`
    with s as (select set_config('synchronous_commit', 'off', true) as v),
    c as (
      insert into stream_chunks (request_id, attempt, model, content) values (${chunk.requestId}, ${chunk.attempt}, ${chunk.model}, ${chunk.content})
      returning id
    )
    select c.id, pg_notify(${STREAM_CHANNEL}, ${chunk.requestId}) from c, s`.execute(db);
  return rows[0]?.id ?? 0;
}

/** The request's chunks after `afterId`, in order, at most `limit`. */
export async function readChunks(db: Db, requestId: string, afterId: number, limit = 500): Promise<StreamChunk[]> {
  return db.selectFrom('stream_chunks')
    .select(['id', 'attempt', 'model', 'content'])
    .where('request_id', '=', requestId)
    .where('id', '>', afterId)
    .orderBy('id')
    .limit(limit)
    .execute();
}

/** Marks the stream closed by its client: later chunk inserts for it raise. Idempotent. */
export async function closeStream(db: Db, requestId: string): Promise<void> {
  await db.insertInto('stream_closed').values({ request_id: requestId }).onConflict((oc) => oc.column('request_id').doNothing()).execute();
}
