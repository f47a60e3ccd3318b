/**
 * `preparedQuery` (db/prepared-query.ts): a template compiled once gives, for any values, the SQL
 * and parameters that building the same query with those values gives; a placeholder that is
 * transformed, or left out of the SQL, is refused at the first compile; a named template's SQL is
 * sent by `pg` as a named statement and every other statement as before.
 */
import { describe, expect, it } from 'vitest';
import { Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import type { Database } from '../../db/tables/index.js';
import type { Db } from '../../db/database.js';
import { preparedQuery, usePreparedNames } from '../../db/prepared-query.js';

// Compiles only: the pool is never asked for a connection.
const db: Db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: { connect: () => Promise.reject(new Error('no database')), end: async () => undefined } }) });

const direct = (hash: string, at: Date) => db.selectFrom('api_keys').select(['id', 'role'])
  .where('hash', '=', hash).where('revoked_at', 'is', null).where('created_at', '<', at).where('role', '=', 'developer');

describe('preparedQuery', () => {
  it('binds each call’s values where building the query with them would put them', () => {
    const q = preparedQuery({ hash: 'string', at: 'date' }, (_db, { hash, at }) => direct(hash, at));
    for (const [hash, at] of [['aa', new Date('2026-01-01T00:00:00Z')], ['b\u0000c', new Date('2026-12-02T10:00:00Z')]] as const) {
      const built = direct(hash, at).compile();
      const got = q(db, { hash, at });
      expect(got.sql).toBe(built.sql);
      expect(got.parameters).toEqual(built.parameters);
    }
  });

  it('binds any value of a `value` placeholder as it is (numbers, booleans, null, arrays)', () => {
    const build = (n: unknown, flag: unknown, list: unknown) => sql`select f(${n}, ${flag}, ${list}::text[], ${sql.val([80, 100])}::integer[])`;
    const q = preparedQuery({ n: 'value', flag: 'value', list: 'value' }, (d, { n, flag, list }) => ({ compile: () => build(n, flag, list).compile(d) }));
    for (const [n, flag, list] of [[1, true, ['a', 'b']], [null, false, []], [2 ** 40, null, ['\u0000']]] as const) {
      const built = build(n, flag, list).compile(db);
      const got = q(db, { n, flag, list });
      expect(got.sql).toBe(built.sql);
      expect(got.parameters).toEqual(built.parameters);
    }
  });

  it('refuses a placeholder that was transformed or that the SQL does not use', () => {
    const json = preparedQuery({ data: 'value' }, (d, { data }) => ({ compile: () => sql`select ${JSON.stringify(data)}::jsonb`.compile(d) }));
    expect(() => json(db, { data: { a: 1 } })).toThrow(/derived from a placeholder/);
    const derived = preparedQuery({ hash: 'string' }, (_db, { hash }) => db.selectFrom('api_keys').select('id').where('hash', '=', hash.toUpperCase()));
    expect(() => derived(db, { hash: 'x' })).toThrow(/derived from a placeholder/);
    const unused = preparedQuery({ hash: 'string', other: 'string' }, (_db, { hash }) => db.selectFrom('api_keys').select('id').where('hash', '=', hash));
    expect(() => unused(db, { hash: 'x', other: 'y' })).toThrow(/'other' is not a parameter/);
  });

  it('sends a named template as a named statement, an unnamed one and any other statement as before', async () => {
    const named = preparedQuery({ id: 'string' }, (_db, { id }) => db.selectFrom('tenants').select('name').where('id', '=', id));
    const unnamed = preparedQuery({ id: 'string' }, (_db, { id }) => db.selectFrom('tenants').selectAll().where('id', '=', id), { named: false });
    const calls: unknown[][] = [];
    // The query on the prototype, as pg.Client's: usePreparedNames looks it up there at each call.
    class FakeClient { async query(...args: unknown[]) { calls.push(args); return { rows: [] }; } }
    const client = new FakeClient() as unknown as pg.PoolClient;
    usePreparedNames(client);
    const a = named(db, { id: 't1' });
    const b = unnamed(db, { id: 't2' });
    await client.query(a.sql, [...a.parameters]);
    await client.query(b.sql, [...b.parameters]);
    await client.query('select 1');
    expect(calls[0]).toEqual([{ name: expect.stringMatching(/^sluice_[0-9a-f]{24}$/), text: a.sql, values: ['t1'] }]);
    expect(calls[1]).toEqual([b.sql, ['t2']]);
    expect(calls[2]).toEqual(['select 1']);
  });
});
