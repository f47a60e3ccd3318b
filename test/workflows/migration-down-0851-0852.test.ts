/**
 * The `down` of migrations 0851 (`request-rollup-guard`) and 0852 (`finish-requests-plpgsql`) on a
 * real PostgreSQL: migrating a database at the latest version back to 0841 leaves both functions
 * as a database migrated only to 0841 has them (0641's trigger function and 0811's SQL-language
 * `sluice_finish_requests`), and they still work there: the trigger applies every statement's
 * (empty) deltas again, the finish still finishes. Migrating up again gives back the latest
 * definitions and the guard. (0801's down is tested in test/api/experiment-rollups.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Migrator, sql, type Kysely, type Migration } from 'kysely';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { migrations } from '../../db/migrations/index.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { insertRequest } from '../../db/repositories/requests.js';

/** The last migration before 0851 and 0852. */
const BEFORE = '2026-12-02-0841-settle-lock-order';
const FUNCTIONS = ['experiment_rollup_on_requests', 'sluice_finish_requests'];

let before: Db;
let db: Db;
let tenantId: string;
let keyId: string;

function migrator(on: Kysely<any>): Migrator {
  return new Migrator({ db: on, provider: { getMigrations: async (): Promise<Record<string, Migration>> => migrations } });
}

async function migrateTo(on: Kysely<any>, name: string): Promise<void> {
  const { error, results } = await migrator(on).migrateTo(name);
  if (error !== undefined) throw error;
  expect(results?.every((r) => r.status === 'Success')).toBe(true);
}

/** Each function's language and definition (whitespace collapsed: the migrations restate bodies in their own indentation). */
async function definitions(on: Db): Promise<Record<string, { language: string; body: string }>> {
  const { rows } = await sql<{ name: string; language: string; body: string }>`
    select p.proname as name, l.lanname as language, p.prosrc as body
    from pg_proc p join pg_language l on l.oid = p.prolang join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public' and p.proname in (${sql.join(FUNCTIONS)})`.execute(on);
  return Object.fromEntries(rows.map((r) => [r.name, { language: r.language, body: r.body.replace(/\s+/g, ' ').trim() }]));
}

/**
 * The apply's calls this backend counted and has not yet sent to the statistics: since
 * PostgreSQL 15 `pg_stat_xact_user_functions` reads these pending counts, which a transaction less
 * than a second after the last flush still carries over from the one before, so a transaction's
 * own calls are the difference of two readings.
 */
async function applyCallsPending(trx: Db): Promise<number> {
  const { rows } = await sql<{ calls: number }>`
    select coalesce(sum(calls), 0)::int as calls from pg_stat_xact_user_functions where funcname = 'experiment_rollup_apply'`.execute(trx);
  return rows[0]?.calls ?? 0;
}

/** Inserts, finishes (through `sluice_finish_requests`) and deletes a request in no experiment, in one transaction: the trigger's apply calls in it, and what the finish returned. */
async function plainRequestRoundTrip(id: string): Promise<{ applyCalls: number; finished: string[] }> {
  return db.transaction().execute(async (trx) => {
    await sql`set local track_functions = 'all'`.execute(trx);
    const pending = await applyCallsPending(trx);
    await insertRequest(trx, { id, tenantId, keyId, kind: 'sync', model: 'm', idempotencyKey: null, bodyHash: 'h' });
    const { rows: finished } = await sql<{ id: string }>`
      select id from sluice_finish_requests(${[id]}::text[], ${['succeeded']}::text[], ${['{"ok":true}']}::text[], ${[null]}::text[],
        ${[null]}::text[], ${['local']}::text[], now())`.execute(trx);
    const row = await trx.selectFrom('requests').select(['status', 'pool']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'succeeded', pool: 'local' });
    await trx.deleteFrom('requests').where('id', '=', id).execute();
    return { applyCalls: (await applyCallsPending(trx)) - pending, finished: finished.map((r) => r.id) };
  });
}

beforeAll(async () => {
  before = createDb({ connectionString: await createDatabase(), max: 1 }).db;
  await migrateTo(before, BEFORE);
  db = createDb({ connectionString: await createDatabase(), max: 1 }).db;
  await migrateToLatest(db);
  tenantId = (await createTenant(db, {
    name: 'down', plan: 'standard',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: null, allowed_models: null },
  })).id;
  keyId = (await createKey(db, { tenantId, role: 'developer', name: 'k', scopes: null, expiresAt: null })).key.id;
});
afterAll(async () => {
  await before?.destroy();
  await db?.destroy();
});

describe('migrations 0852 and 0851 down, then up again', () => {
  it('down to 0841 restores 0641\'s trigger function and 0811\'s SQL-language finish, which still work; up gives back the latest', async () => {
    const atBefore = await definitions(before);
    const atLatest = await definitions(db);
    expect(Object.keys(atBefore).sort()).toEqual([...FUNCTIONS].sort());
    expect(atBefore.sluice_finish_requests?.language).toBe('sql');
    expect(atLatest.sluice_finish_requests?.language).toBe('plpgsql');
    expect(atLatest.experiment_rollup_on_requests).not.toEqual(atBefore.experiment_rollup_on_requests);
    // The latest: no apply for a request in no experiment (0851), the finish in PL/pgSQL (0852).
    expect(await plainRequestRoundTrip('req_down_latest')).toEqual({ applyCalls: 0, finished: ['req_down_latest'] });

    await migrateTo(db, BEFORE);
    expect(await definitions(db)).toEqual(atBefore);
    // 0641's trigger applies the (empty) deltas of every statement: the insert, the finish, the delete.
    expect(await plainRequestRoundTrip('req_down_before')).toEqual({ applyCalls: 3, finished: ['req_down_before'] });

    await migrateToLatest(db);
    expect(await definitions(db)).toEqual(atLatest);
    expect(await plainRequestRoundTrip('req_down_again')).toEqual({ applyCalls: 0, finished: ['req_down_again'] });
  });
});
