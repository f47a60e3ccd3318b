/**
 * The API side of the token channel: one `LISTEN sluice_stream` connection per API process, fanning
 * each notification (its payload is a request ID) out to the streams of that request waiting in
 * this process. The rows themselves are read from `stream_chunks` (db/repositories/streams.ts), so
 * a notification lost while reconnecting costs at most one poll interval, never a chunk.
 */
import type pg from 'pg';
import { STREAM_CHANNEL } from '../db/repositories/streams.js';
import type { Logger } from '../runtime/logger.js';

export interface StreamHub {
  /** Resolves at the next chunk notification for `requestId`, or after `ms` at the latest. */
  wait(requestId: string, ms: number): Promise<void>;
  close(): Promise<void>;
}

/** Pause after a failed LISTEN connection before trying again. */
const RECONNECT_MS = 1000;

/**
 * A hub over `pool` (one client taken for LISTEN, lazily, on the first stream). Without a pool the
 * hub only polls: every wait lasts its `ms`.
 */
export function createStreamHub(pool: pg.Pool | null, log: Logger): StreamHub {
  const waiters = new Map<string, Set<() => void>>();
  let client: pg.PoolClient | null = null;
  let connecting: Promise<void> | null = null;
  let retryAt = 0;
  let closed = false;

  function wake(requestId: string): void {
    const set = waiters.get(requestId);
    if (!set) return;
    waiters.delete(requestId);
    for (const resolve of set) resolve();
  }

  function ensureListening(): void {
    if (pool === null || closed || client !== null || connecting !== null || Date.now() < retryAt) return;
    connecting = (async () => {
      let c: pg.PoolClient | null = null;
      try {
        c = await pool.connect();
        const conn = c;
        conn.on('notification', (n) => {
          if (n.channel === STREAM_CHANNEL && n.payload) wake(n.payload);
        });
        conn.on('error', (err) => {
          log.warn('stream listener lost its connection', { error: err.message });
          if (client === conn) client = null;
          retryAt = Date.now() + RECONNECT_MS;
          conn.release(err);
        });
        await conn.query(`LISTEN ${STREAM_CHANNEL}`);
        client = conn;
      } catch (err) {
        log.warn('stream listener could not connect', { error: err instanceof Error ? err.message : String(err) });
        c?.release(err instanceof Error ? err : true);
        retryAt = Date.now() + RECONNECT_MS;
      } finally {
        connecting = null;
      }
    })();
  }

  return {
    wait(requestId, ms) {
      ensureListening();
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          const set = waiters.get(requestId);
          set?.delete(done);
          if (set?.size === 0) waiters.delete(requestId);
          resolve();
        };
        const timer = setTimeout(done, ms);
        let set = waiters.get(requestId);
        if (!set) waiters.set(requestId, (set = new Set()));
        set.add(done);
      });
    },
    async close() {
      closed = true;
      await connecting;
      const c = client;
      client = null;
      if (c) {
        await c.query(`UNLISTEN ${STREAM_CHANNEL}`).catch(() => undefined);
        c.release();
      }
      for (const id of [...waiters.keys()]) wake(id);
    },
  };
}
