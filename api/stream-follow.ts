/**
 * Following a streamed request's chunks (`stream_chunks`) until its workflow has settled: the one
 * loop under the chat completion stream (`routes/chat-stream.ts`) and the Responses stream
 * (`routes/responses-stream.ts`). It reads in pages, is woken by the stream hub (`LISTEN`) or polls,
 * keeps to the first attempt's chunks (a second attempt's never join them: the workflow fails such
 * a request), and makes one last read after the workflow settled, so no chunk written before the
 * end is missed.
 */
import type { Db } from '../db/database.js';
import { readChunks, type StreamChunk } from '../db/repositories/streams.js';
import type { StreamHub } from './stream-hub.js';

/** Longest wait for a notification before reading the chunks again (a lost NOTIFY costs this). */
const POLL_MS = 1000;
/** Chunks read per query. */
const READ_LIMIT = 500;

export interface FollowState {
  /** True once the request's workflow has settled (checked before each read). */
  finished(): boolean;
  /** True once the client has left: following stops. */
  gone(): boolean;
}

/**
 * Calls `onChunk` for each chunk of the request's first attempt, in order, until the workflow has
 * settled (`settled` resolves then; it wakes the wait) and every chunk is read. Returns the last
 * chunk row ID read (0: none) and the text of the chunks, or null when the client left.
 */
export async function followChunks(
  deps: { db: Db; streams: StreamHub }, requestId: string, settled: Promise<unknown>, state: FollowState,
  onChunk: (chunk: StreamChunk) => void | Promise<void>,
): Promise<{ last: number; text: string } | null> {
  let last = 0;
  let text = '';
  let attempt: string | null = null;
  for (;;) {
    if (state.gone()) return null;
    const finished = state.finished();
    const rows = await readChunks(deps.db, requestId, last, READ_LIMIT);
    for (const r of rows) {
      last = r.id;
      if (attempt !== null && r.attempt !== attempt) continue;
      attempt = r.attempt;
      text += r.content;
      await onChunk(r);
    }
    if (rows.length === READ_LIMIT) continue;
    if (finished) break;
    await Promise.race([deps.streams.wait(requestId, POLL_MS), settled]);
  }
  return state.gone() ? null : { last, text };
}
