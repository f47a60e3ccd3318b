/**
 * Command specs and the validation of option values, shared by every command group. Pure: a
 * spec's `build` turns parsed values into an action or throws a {@link UsageError} (exit code 2).
 */

/** A mistake in the command line: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** One option of a command, as its spec declares it. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  /** Placeholder shown in help, for string options. */
  arg?: string;
  help: string;
  short?: string;
}

/** Option values by option name (`max-concurrent`, `wait`), as given on the command line. */
export type Values = Readonly<Record<string, string | boolean | undefined>>;

/** One command: where it sits, its help, and how its arguments become an action. */
export interface CommandSpec<A> {
  /** Words that select the command: `['tenants', 'create']`, `['usage']`. */
  path: readonly string[];
  /** Arguments after the path, for help. */
  synopsis: string;
  summary: string;
  options: Readonly<Record<string, OptionSpec>>;
  /** Names of the positional arguments; with `variadic`, the last one takes the rest (at least one). */
  args: readonly string[];
  variadic?: boolean;
  build(values: Values, args: readonly string[]): A;
}

/** `--limit` and `--after` of the list commands. */
export const PAGE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  limit: { type: 'string', arg: 'N', help: 'page size, 1-100 (default 20)' },
  after: { type: 'string', arg: 'ID', help: 'start after this ID (the cursor printed under a full page)' },
};

/** A string option's value; undefined when it is not given. */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A string option that must be given and not blank. */
export function requiredStr(values: Values, name: string): string {
  const v = str(values, name);
  if (v === undefined || v.trim() === '') throw new UsageError(`--${name} is required`);
  return v;
}

function parseInteger(raw: string, label: string, min: number): number {
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${label} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

/** An integer option (decimal digits only, at least `min`). */
export function intOpt(values: Values, name: string, min = 0): number | undefined {
  const v = str(values, name);
  return v === undefined ? undefined : parseInteger(v, `--${name}`, min);
}

/** A limit: a non-negative integer, or `unlimited` (null). */
export function limitOpt(values: Values, name: string): number | null | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  return v === 'unlimited' ? null : parseInteger(v, `--${name}`, 0);
}

/** A comma-separated list with at least one item. */
export function listOpt(values: Values, name: string): string[] | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const items = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`--${name} needs at least one comma-separated value`);
  return items;
}

/** A time the API accepts: ISO 8601 or unix seconds. */
export function timeOpt(values: Values, name: string): string | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) && Number.isNaN(new Date(v).getTime())) throw new UsageError(`--${name} must be ISO 8601 (e.g. 2025-01-31T00:00:00Z) or unix seconds, got '${v}'`);
  return v;
}

/** `--limit` and `--after` as the cursor of a list call. */
export function pageOf(values: Values): { limit: number | null; after: string | null } {
  return { limit: intOpt(values, 'limit', 1) ?? null, after: str(values, 'after') ?? null };
}

const PERIOD = /^\d{4}-(0[1-9]|1[0-2])$/;

const DAY = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** `--day YYYY-MM-DD`, required. */
export function dayOpt(values: Values): string {
  const d = requiredStr(values, 'day');
  if (!DAY.test(d)) throw new UsageError(`--day must be YYYY-MM-DD, got '${d}'`);
  return d;
}

/** `--period YYYY-MM`; required unless `optional`. */
export function periodOpt(values: Values, optional: true): string | undefined;
export function periodOpt(values: Values): string;
export function periodOpt(values: Values, optional = false): string | undefined {
  const p = optional ? str(values, 'period') : requiredStr(values, 'period');
  if (p !== undefined && !PERIOD.test(p)) throw new UsageError(`--period must be YYYY-MM, got '${p}'`);
  return p;
}
