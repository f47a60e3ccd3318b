/**
 * Hot statements built and compiled once (issue 18 target 1). A {@link preparedQuery} is a Kysely
 * query built once over placeholders and compiled once; each call puts its values into the
 * compiled SQL's parameter slots, so a request pays neither Kysely's builder nor its compiler.
 * Its SQL text is also registered under a statement name, which {@link usePreparedNames} gives
 * to `pg` on each connection: PostgreSQL parses it once per connection and can keep its plan.
 *
 * Rules for a template (checked when it is first compiled, so its first test run fails otherwise):
 *  - every placeholder is used as it is (no arithmetic on a date, no `toUpperCase()` on a string:
 *    a derived value would be compiled in as a constant); each must appear in the SQL;
 *  - a named statement's result columns are named, never a table's `*` (or are JSON): a statement
 *    prepared on an open connection fails with "cached plan must not change result type" once a
 *    migration adds a column to a table it returns `*` of. A template that returns `*` says
 *    `{ named: false }`: it is still compiled once, and sent unnamed.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { createQueryId, type Compilable, type CompiledQuery } from 'kysely';
import type { Db } from './database.js';

/** The SQL text of every compiled template → its statement name: one entry per template in the code. */
const STATEMENT_NAMES = new Map<string, string>();

/**
 * What a placeholder stands for: a text (or a text or null), a timestamp, or any other parameter
 * value as it is (`value`: a number, a boolean, null, an array; typed by the statement's SQL).
 */
type Kind = 'string' | 'string-or-null' | 'date' | 'value';
type ValueOf<K extends Kind> = K extends 'date' ? Date : K extends 'string-or-null' ? string | null : K extends 'value' ? unknown : string;

const MARK = '\u0000sluice-placeholder:';
/** The mark as a derived text still shows it (`JSON.stringify` writes U+0000 as `\\u0000`). */
const MARK_TEXT = 'sluice-placeholder:';

interface Template<R> {
  compiled: CompiledQuery<R>;
  /** For each parameter of the compiled SQL: the name of the input it is, or the constant it holds. */
  slots: ReadonlyArray<{ input: string } | { constant: unknown }>;
}

type Inputs<S extends Record<string, Kind>> = { [K in keyof S]: ValueOf<S[K]> };

function valuePlaceholder(name: string): object {
  const text = `${MARK}${name}`;
  return Object.freeze({ toString: () => text, toJSON: () => text, valueOf: () => text });
}

function compileTemplate<S extends Record<string, Kind>, R>(db: Db, spec: S, build: (db: Db, p: Inputs<S>) => Compilable<R>, named: boolean): Template<R> {
  const placeholders = new Map<unknown, string>();
  const p: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(spec)) {
    // A distinct object per date or value placeholder: it is recognised by identity. A value
    // placeholder turned into text (`String(v)`, `JSON.stringify(v)`) carries the mark, so a
    // derived parameter is refused as a string one is.
    const value = kind === 'date' ? new Date(0) : kind === 'value' ? valuePlaceholder(name) : `${MARK}${name}`;
    placeholders.set(value, name);
    p[name] = value;
  }
  const compiled = build(db, p as Inputs<S>).compile();
  const used = new Set<string>();
  const slots = compiled.parameters.map((value) => {
    const input = placeholders.get(value);
    if (input !== undefined) {
      used.add(input);
      return { input };
    }
    if ((typeof value === 'string' && value.toLowerCase().includes(MARK_TEXT)) || value instanceof Date) {
      throw new Error(`preparedQuery: a parameter was derived from a placeholder (${String(value).slice(0, 80)}); use the placeholder as it is`);
    }
    return { constant: value };
  });
  for (const name of Object.keys(spec)) if (!used.has(name)) throw new Error(`preparedQuery: placeholder '${name}' is not a parameter of the SQL`);
  if (named) STATEMENT_NAMES.set(compiled.sql, `sluice_${createHash('sha256').update(compiled.sql).digest('hex').slice(0, 24)}`);
  return { compiled, slots };
}

/**
 * A query compiled once from `build` over placeholders of `spec`'s kinds (on the first call's
 * `db`: every `Db` is PostgreSQL's, so it compiles the same); the returned function gives the
 * compiled query for one call's values, to run with `db.executeQuery`. `options.named: false`
 * for a template whose result has a table's `*` (see the rules above). @default named
 */
export function preparedQuery<S extends Record<string, Kind>, R>(
  spec: S, build: (db: Db, p: Inputs<S>) => Compilable<R>, options: { named?: boolean } = {},
): (db: Db, values: Inputs<S>) => CompiledQuery<R> {
  // One template per `Db`: compiled through that Db's own plugins (a test's statement counter or
  // fault injection), never another's. A process has one Db, so this compiles once there.
  const templates = new WeakMap<Db, Template<R>>();
  return (db, values) => {
    let template = templates.get(db);
    if (template === undefined) {
      template = compileTemplate(db, spec, build, options.named ?? true);
      templates.set(db, template);
    }
    const parameters = template.slots.map((s) => ('input' in s ? (values as Record<string, unknown>)[s.input] : s.constant));
    return { ...template.compiled, parameters, queryId: createQueryId() };
  };
}

/**
 * Gives the statements of {@link preparedQuery} their names on `client` (a pool's new connection):
 * `pg` then sends their Parse once per connection, and PostgreSQL keeps the parsed statement.
 * Every other statement is sent as before (unnamed).
 */
export function usePreparedNames(client: pg.PoolClient): void {
  // The prototype's query looked up at each call, not bound once: whatever wraps `pg.Client`'s
  // query later (bench/round-trips.ts and the tests count statements there) still sees every statement.
  const query = (...args: unknown[]): unknown => (Object.getPrototypeOf(client) as { query: (...a: unknown[]) => unknown }).query.apply(client, args);
  client.query = ((text: unknown, values?: unknown, callback?: unknown) => {
    const name = typeof text === 'string' && Array.isArray(values) ? STATEMENT_NAMES.get(text) : undefined;
    if (name !== undefined) return callback === undefined ? query({ name, text, values }) : query({ name, text, values }, callback);
    return callback === undefined ? (values === undefined ? query(text) : query(text, values)) : query(text, values, callback);
  }) as typeof client.query;
}
