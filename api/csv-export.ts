/**
 * Streamed CSV/JSON exports: CSV cells safe to open in a spreadsheet, backpressure from the
 * socket, and a client that stops reading cut off instead of holding its slot forever.
 */
import type { Response } from 'express';

/** First characters that make a spreadsheet read a cell as a formula (or hide one): `= + - @`, tab, CR. */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * A CSV field: a cell starting with `= + - @`, tab or CR gets a leading `'` (OWASP's advice
 * against formula injection: the spreadsheet shows it as text); quoted when it holds a comma,
 * quote or line break; dates as ISO 8601. Numbers are written as they are (a negative amount stays a number).
 */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  let s = v instanceof Date ? v.toISOString() : String(v);
  if (FORMULA_START.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Longest wait for a client to read what was written before the export is cut off. */
export const EXPORT_STALL_MS = 60_000;

/** Waits for `drain` or `close`; false when neither came within `ms`. */
function drained(res: Response, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off('drain', onEvent);
      res.off('close', onEvent);
      resolve(ok);
    };
    const onEvent = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    res.on('drain', onEvent);
    res.on('close', onEvent);
  });
}

/**
 * Streams rows as CSV or JSON (`{"object":"list","data":[…]}`) with backpressure: each batch waits
 * for the socket to drain, so memory stays bounded by one batch. A client that goes away stops the
 * reads; one that reads nothing for `stallMs` is disconnected. `release` (the caller's concurrency
 * slot) is called once, whatever happens.
 */
export async function streamExport<R extends object>(
  res: Response, release: () => void, format: 'csv' | 'json', filename: string, columns: ReadonlyArray<keyof R & string>,
  run: (onRows: (rows: R[]) => Promise<boolean>) => Promise<number>, stallMs = EXPORT_STALL_MS,
): Promise<void> {
  try {
    res.status(200);
    res.setHeader('Content-Type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json');
    res.setHeader('Content-Disposition', `attachment; filename="${filename}.${format}"`);
    let closed = false;
    res.on('close', () => (closed = true));
    let first = true;
    const write = async (chunk: string): Promise<boolean> => {
      if (closed) return false;
      if (!res.write(chunk) && !(await drained(res, stallMs))) {
        // The client read nothing for stallMs: cut it off.
        res.destroy();
        return false;
      }
      return !closed;
    };
    await write(format === 'csv' ? `${columns.join(',')}\n` : '{"object":"list","data":[');
    try {
      await run(async (rows) => {
        let chunk = '';
        for (const r of rows) {
          if (format === 'csv') chunk += `${columns.map((c) => csvField(r[c])).join(',')}\n`;
          else {
            chunk += `${first ? '' : ','}${JSON.stringify(r)}`;
            first = false;
          }
        }
        return write(chunk);
      });
    } catch (err) {
      // The status line is gone: cut the connection so the client sees a truncated download, not a 200.
      res.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (closed) return;
    if (format === 'json') await write('],"has_more":false}');
    res.end();
  } finally {
    release();
  }
}

/** Export page queries one API process runs at once (all tenants together), so exports never take more of the pool. */
export const EXPORT_QUERY_SLOTS = 4;

/**
 * A throttle for export page queries: at most `slots` run at once, the others wait their turn
 * (first come, first served). Every other request keeps the rest of the pool.
 */
export function createQueryThrottle(slots: number): <T>(run: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async (run) => {
    if (running >= slots) await new Promise<void>((resolve) => waiting.push(resolve));
    else running += 1;
    try {
      return await run();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running -= 1;
    }
  };
}
