/**
 * The inference side of the token channel: one publisher per streamed attempt. Deltas pushed while
 * a chunk insert is in flight are coalesced into the next one, so a fast model writes one row per
 * batch of tokens and a slow one a row per token; rows never go through Temporal history.
 */
import type { Db } from '../db/database.js';
import { isStreamClosedError, publishChunk } from '../db/repositories/streams.js';

/** Stores one chunk of `requestId`'s attempt (`publishChunk` over a stream-writer connection). */
export type PublishChunk = (content: string) => Promise<unknown>;

/** The {@link PublishChunk} of one attempt (`attempt`, running as `model`) over `db`. */
export function chunkPublisherFor(db: Db, requestId: string, attempt: string, model: string): PublishChunk {
  return (content) => publishChunk(db, { requestId, attempt, model, content });
}

export interface StreamPublisher {
  /** Queues `text` for the next chunk. */
  push(text: string): void;
  /** Waits until everything pushed is stored; throws the first publishing error. */
  flush(): Promise<void>;
  /** Text pushed so far. */
  readonly pushed: string;
  /** Whether a chunk was (or is being) stored: from then on the attempt may not be silently retried. */
  readonly started: boolean;
}

export interface StreamPublisherOptions {
  /** Stores a chunk (see {@link chunkPublisherFor}). */
  publish: PublishChunk;
  /** Before the first chunk is stored (the activity heartbeats it, so a retry knows). */
  onFirstChunk: () => void;
  /** The client closed the stream: the caller stops generating. */
  onClosed: () => void;
}

export function createStreamPublisher(options: StreamPublisherOptions): StreamPublisher {
  let pending = '';
  let pushed = '';
  let started = false;
  let running: Promise<void> | null = null;
  let failure: unknown = null;

  async function drain(): Promise<void> {
    while (pending !== '' && failure === null) {
      const content = pending;
      pending = '';
      if (!started) {
        started = true;
        options.onFirstChunk();
      }
      try {
        await options.publish(content);
      } catch (err) {
        failure = err;
        if (isStreamClosedError(err)) options.onClosed();
      }
    }
    running = null;
  }

  return {
    push(text) {
      if (text === '' || failure !== null) return;
      pending += text;
      pushed += text;
      running ??= drain();
    },
    async flush() {
      while (running !== null) await running;
      if (failure !== null) throw failure;
    },
    get pushed() {
      return pushed;
    },
    get started() {
      return started;
    },
  };
}
