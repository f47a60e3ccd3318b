/** Streamed completions (migration 0202): the text deltas of `stream: true` requests, and the streams whose client left. */
import type { Generated } from 'kysely';
import type { CreatedAt, Timestamp } from './columns.js';

/** One batch of tokens an inference attempt published; `id` orders a request's chunks and is the SSE event ID. */
export interface StreamChunksTable {
  id: Generated<number>;
  request_id: string;
  /** The attempt that produced it (`<deployment>:<activity attempt>`): a stream never mixes two. */
  attempt: string;
  content: string;
  /** The model the attempt runs as (its deployment's, after any experiment variant; migration 0203); null on older rows. */
  model: string | null;
  created_at: CreatedAt;
}

/** A stream whose client disconnected: inserting chunks for it raises, so its generation stops. */
export interface StreamClosedTable {
  request_id: string;
  closed_at: Generated<Timestamp>;
}

export interface StreamTables {
  stream_chunks: StreamChunksTable;
  stream_closed: StreamClosedTable;
}
