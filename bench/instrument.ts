/**
 * What the benchmarks read off the real parts without changing them: each PostgreSQL statement
 * pg's `Client.query` sends (counted, timed), and a history event's time.
 */
import pg from 'pg';
import type proto from '@temporalio/proto';

/** A statement as pg's `Client.query` was given it: its prepared name (if any) and its text. */
export interface QueryCall {
  name: string | undefined;
  text: string;
  /** `performance.now()` when it was sent. */
  sentAt: number;
  /** Settles when pg answers (or never, for a callback-style call: then undefined). */
  answered: Promise<unknown> | undefined;
}

/**
 * Calls `onQuery` for every statement any pg client in this process sends, until the returned
 * function is called (which puts pg's own `query` back).
 */
export function interceptQueries(onQuery: (call: QueryCall) => void): () => void {
  const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  pg.Client.prototype.query = function intercepted(this: pg.Client, ...args: unknown[]) {
    const sentAt = performance.now();
    const result = query.apply(this, args);
    const config = args[0] as string | { name?: string; text?: string } | undefined;
    onQuery({
      name: typeof config === 'object' ? config?.name : undefined,
      text: typeof config === 'string' ? config : (config?.text ?? ''),
      sentAt,
      answered: result instanceof Promise ? result : undefined,
    });
    return result;
  } as typeof pg.Client.prototype.query;
  return () => {
    pg.Client.prototype.query = query as typeof pg.Client.prototype.query;
  };
}

/** A history event's time in ms since the epoch (the server's clock; 0 without one). */
export function eventMs(e: proto.temporal.api.history.v1.IHistoryEvent): number {
  const t = e.eventTime;
  return t ? Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : 0;
}
