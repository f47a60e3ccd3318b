/** Text formatting of the CLI's tables and values. Pure. */

/** Prints one line (no trailing newline). */
export type Out = (line: string) => void;

/** Left-aligned columns separated by `gap` spaces; the last column is not padded. */
export function formatTable(rows: readonly (readonly string[])[], gap = 2): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + gap))).join('').trimEnd());
}

/** A table of `items` under `head`, or `empty` when there are none. */
export function printList<T>(items: readonly T[], out: Out, empty: string, head: string[], row: (item: T) => string[]): void {
  if (items.length === 0) out(empty);
  else out(formatTable([head, ...items.map(row)]).join('\n'));
}

/** A limit for display: `null` is `unlimited`. */
export function formatLimit(n: number | null): string {
  return n === null ? 'unlimited' : String(n);
}

/** Integer micro-USD as dollars, exact (no floats): 1500000 → `$1.50`, 1234 → `$0.001234`. */
export function formatMicros(micros: number | bigint | string): string {
  const n = BigInt(micros);
  const sign = n < 0n ? '-' : '';
  const abs = n < 0n ? -n : n;
  const fraction = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '').padEnd(2, '0');
  return `${sign}$${abs / 1_000_000n}.${fraction}`;
}

/** Unix seconds or an ISO string as `YYYY-MM-DD HH:MM:SSZ` (UTC). */
export function formatTime(t: number | string): string {
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}
