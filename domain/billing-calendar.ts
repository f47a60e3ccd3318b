/**
 * The billing calendar in UTC, in one place: periods (`YYYY-MM`, the budget and invoice month),
 * days (`YYYY-MM-DD`, the day close), rate-limit minutes, their bounds and the ones before. Pure.
 */

/** `YYYY-MM`, a calendar month in UTC. */
export const PERIOD_PATTERN = /^\d{4}-(0[1-9]|1[0-2])$/;

/** The calendar month (UTC) before the one holding `at`. */
export function previousPeriod(at: Date): string {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
}

/** `YYYY-MM-DD`, a calendar day in UTC. */
export const DAY_PATTERN = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** The UTC day before the one holding `at`. */
export function previousDay(at: Date): string {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() - 1)).toISOString().slice(0, 10);
}

/** Calendar month of a UTC instant, `YYYY-MM`: the budget and billing period. */
export function periodOf(at: Date): string {
  return at.toISOString().slice(0, 7);
}

/** Start of the UTC minute holding `at`: the rate-limit window. */
export function minuteOf(at: Date): Date {
  return new Date(Math.floor(at.getTime() / 60_000) * 60_000);
}

/** `[start, end)` of a `YYYY-MM` period, UTC. */
export function periodRange(period: string): { start: Date; end: Date } {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(period);
  if (!m) throw new RangeError(`period must be YYYY-MM, got '${period}'`);
  const year = Number(m[1]);
  const month = Number(m[2]) - 1;
  return { start: new Date(Date.UTC(year, month, 1)), end: new Date(Date.UTC(year, month + 1, 1)) };
}

/** `YYYY-MM-DD` → the day's bounds in UTC; throws a RangeError on anything else. */
export function dayRange(day: string): { start: Date; end: Date } {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  const start = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!start || start.toISOString().slice(0, 10) !== day) throw new RangeError(`day must be a date YYYY-MM-DD, got '${day}'`);
  return { start, end: new Date(start.getTime() + 86_400_000) };
}
