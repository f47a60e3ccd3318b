/**
 * Splits a byte stream into lines on `\n`, in time linear in its length: each chunk is scanned
 * once from where the last line ended, and a line's pieces are joined once, when it ends. A line
 * longer than `maxLineBytes` is refused as soon as it gets that long (it is never buffered whole).
 */

/** A line grew past the limit before its newline came. */
export class LineTooLongError extends Error {
  override readonly name = 'LineTooLongError';
  constructor(readonly lineNo: number, readonly maxLineBytes: number) {
    super(`line ${lineNo} is longer than ${maxLineBytes} bytes`);
  }
}

export interface LineSplitter {
  /** The lines that `chunk` completes (without their `\n`), in order. Throws {@link LineTooLongError}. */
  push(chunk: Uint8Array): Buffer[];
  /** The last line if the stream did not end with `\n`, else null. */
  end(): Buffer | null;
  /** Lines returned so far. */
  readonly lines: number;
  /** Bytes scanned plus bytes copied so far: what the splitter's time is proportional to. */
  readonly work: number;
}

const NEWLINE = 0x0a;

/** A {@link LineSplitter} that refuses lines over `maxLineBytes` bytes (the `\n` not counted). */
export function createLineSplitter(maxLineBytes: number): LineSplitter {
  let pieces: Buffer[] = [];
  let pendingBytes = 0;
  let lines = 0;
  let work = 0;

  const take = (tail: Buffer): Buffer => {
    let line = tail;
    if (pieces.length > 0) {
      const total = pendingBytes + tail.length;
      line = Buffer.concat(tail.length > 0 ? [...pieces, tail] : pieces, total);
      work += total;
    }
    pieces = [];
    pendingBytes = 0;
    lines += 1;
    return line;
  };

  return {
    push(chunk) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const out: Buffer[] = [];
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(NEWLINE, start);
        const end = nl < 0 ? buf.length : nl;
        work += end - start + (nl < 0 ? 0 : 1);
        if (pendingBytes + (end - start) > maxLineBytes) throw new LineTooLongError(lines + 1, maxLineBytes);
        if (nl < 0) break;
        out.push(take(buf.subarray(start, nl)));
        start = nl + 1;
      }
      if (start < buf.length) {
        pieces.push(buf.subarray(start));
        pendingBytes += buf.length - start;
      }
      return out;
    },
    end() {
      return pieces.length === 0 ? null : take(Buffer.alloc(0));
    },
    get lines() {
      return lines;
    },
    get work() {
      return work;
    },
  };
}
