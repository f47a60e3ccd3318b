/**
 * The hot statements of `preparedQuery` (db/prepared-query.ts) on a real PostgreSQL connection:
 * after the API's and admission's hot queries ran, the connection holds exactly their four named
 * statements (`findKeyBySecret`, `insertRequest`, `requestCacheStatus`, `admissionFacts`: each
 * names its columns or returns JSON, none a table's `*`), each parsed once and run every time
 * since. A column added by a migration-like `alter table` (from another connection, as a migrating
 * process would) leaves every one of them working on the open connection, returning the columns
 * they name (not the new one); a named `select *`, which the rules forbid, fails there instead
 * ("cached plan must not change result type"): what the rule is for.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type pg from 'pg';
import { createDatabase } from '../support/stack.js';
import { createInstantTestModel } from '../support/db-models.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey, findKeyBySecret } from '../../db/repositories/keys.js';
import { insertRequest } from '../../db/repositories/requests.js';
import { requestCacheStatus } from '../../db/repositories/cache.js';
import { admissionFacts } from '../../db/repositories/admission-facts.js';
import { recordCircuit } from '../../db/repositories/circuit.js';
import { DEFAULT_BREAKER_CONFIG } from '../../domain/circuit-breaker.js';

let url: string;
/** One connection: the statements it holds are the ones these calls sent. */
let db: Db;
let pool: pg.Pool;
/** Another connection, as a process running a migration. */
let migrator: Db;
let tenantId: string;
let keyId: string;
let secret: string;

beforeAll(async () => {
  url = await createDatabase();
  ({ db, pool } = createDb({ connectionString: url, max: 1 }));
  migrator = createDb({ connectionString: url, max: 1 }).db;
  await migrateToLatest(migrator);
  await createInstantTestModel(migrator, 64);
  tenantId = (await createTenant(migrator, {
    name: 'prepared', plan: 'standard',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: null, allowed_models: null },
  })).id;
  ({ key: { id: keyId }, secret } = await createKey(migrator, { tenantId, role: 'developer', name: 'k', scopes: null, expiresAt: null }));
  // One failure recorded: the deployment has a circuit row, which admission reads as `*` inside its JSON.
  await recordCircuit(migrator, 'm-local', false, new Date(), DEFAULT_BREAKER_CONFIG);
});
afterAll(async () => {
  await db?.destroy();
  await migrator?.destroy();
});

/** The API's and admission's hot queries, once each, on `db`'s one connection. */
async function hotQueries(n: number) {
  const key = await findKeyBySecret(db, secret);
  const id = `req_prepared_${n}`;
  const inserted = await insertRequest(db, { id, tenantId, keyId, kind: 'sync', model: 'm', idempotencyKey: null, bodyHash: 'h' });
  const cache = await requestCacheStatus(db, id, tenantId);
  const facts = await admissionFacts(db, { keyId, tenantId, model: 'm', at: new Date() });
  return { key, inserted, cache, facts };
}

async function backendPid(): Promise<number> {
  return (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0]?.pid as number;
}

/** The statements the connection holds, by name: their text and how often each ran. */
async function held(): Promise<Array<{ name: string; statement: string; runs: number }>> {
  const { rows } = await sql<{ name: string; statement: string; runs: number }>`
    select name, statement, (generic_plans + custom_plans)::int as runs from pg_prepared_statements order by name`.execute(db);
  return rows;
}

describe('named statements on a real PostgreSQL connection', () => {
  it('holds the four named hot statements, each parsed once; a migration adding columns leaves all four working', async () => {
    const pid = await backendPid();
    for (let i = 1; i <= 3; i++) {
      const { key, inserted, cache, facts } = await hotQueries(i);
      expect(key?.id).toBe(keyId);
      expect(inserted.created).toBe(true);
      expect(cache).toBeNull();
      expect(facts.authorization).not.toBeNull();
      expect(facts.deployments.map((d) => d.id)).toEqual(['m-local']);
      expect([...facts.circuits.keys()]).toEqual(['m-local']);
    }
    const before = await held();
    // Named `sluice_` + the first 24 hex digits of its text's SHA-256: all four name their columns or return JSON.
    expect(before).toHaveLength(4);
    for (const s of before) {
      expect(s.name).toBe(`sluice_${createHash('sha256').update(s.statement).digest('hex').slice(0, 24)}`);
      expect(s.runs).toBe(3);
    }
    expect(before.some((s) => /select "cache" from "requests"/.test(s.statement))).toBe(true);
    expect(before.some((s) => /"circuit_state"/.test(s.statement))).toBe(true);
    expect(before.some((s) => /"api_keys"/.test(s.statement))).toBe(true);
    expect(before.some((s) => /^insert into "requests"/.test(s.statement))).toBe(true);
    // None of them returns a table's `*` as columns (admission's `*` is inside its one JSON value).
    expect(before.filter((s) => !s.statement.startsWith('select (select to_json(')).some((s) => /\.\*|select \*|returning \*/.test(s.statement))).toBe(false);

    // A named `select *` on the same connection: the kind of statement the rules forbid.
    const client = await pool.connect();
    const star = { name: 'probe_star', text: 'select * from requests where id = $1', values: ['req_prepared_1'] };
    try {
      await client.query(star);
    } finally {
      client.release();
    }

    // Another connection adds a column to every table whose `*` these statements read.
    for (const table of ['requests', 'api_keys', 'circuit_state', 'deployments', 'experiments']) {
      await sql`alter table ${sql.table(table)} add column prepared_test_extra text`.execute(migrator);
    }

    const after = await hotQueries(4);
    expect(after.key?.id).toBe(keyId);
    // They return the columns they name: the new one is not among them.
    expect(after.key).not.toHaveProperty('prepared_test_extra');
    expect(after.inserted.row).not.toHaveProperty('prepared_test_extra');
    expect(after.inserted.row.id).toBe('req_prepared_4');
    expect(after.cache).toBeNull();
    expect(after.facts.deployments.map((d) => d.id)).toEqual(['m-local']);
    expect([...after.facts.circuits.keys()]).toEqual(['m-local']);
    // Still the same connection and the same four statements, now run four times.
    expect(await backendPid()).toBe(pid);
    expect((await held()).filter((s) => s.name !== 'probe_star')).toEqual(before.map((s) => ({ ...s, runs: 4 })));

    // The forbidden kind fails on the open connection: the named hot statements did not.
    const again = await pool.connect();
    try {
      await expect(again.query(star)).rejects.toThrow(/cached plan must not change result type/);
    } finally {
      again.release();
    }
  });
});
