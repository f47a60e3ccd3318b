/**
 * The requests table's rollup trigger (migration 0851) applies deltas only for a request in an
 * experiment: inserting a request, finishing it and deleting it, all outside any experiment, call
 * `experiment_rollup_apply` not once (it was called, and planned, on every statement); the same
 * writes for an exposed request still reach the rollups. Counted by PostgreSQL itself
 * (`track_functions`, `pg_stat_xact_user_functions`: this transaction's calls).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { createExperiment, experimentSums, recordExposure } from '../../db/repositories/experiments.js';
import { insertRequest } from '../../db/repositories/requests.js';

let db: Db;
let tenantId: string;
let keyId: string;
let experimentId: string;

beforeAll(async () => {
  db = createDb({ connectionString: await createDatabase(), max: 2 }).db;
  await migrateToLatest(db);
  tenantId = (await createTenant(db, {
    name: 'guard', plan: 'standard',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: null, allowed_models: null },
  })).id;
  keyId = (await createKey(db, { tenantId, role: 'developer', name: 'k', scopes: null, expiresAt: null })).key.id;
  experimentId = (await createExperiment(db, {
    name: 'guard', model: 'm', tenantId: null, status: 'running', startsAt: null, endsAt: null, trafficAllocation: 1, targetKeyIds: null,
    targetMetadata: null, controlVariant: 'a', variants: [{ name: 'a', weight: 1, overrides: {} }],
  })).id;
});
afterAll(async () => {
  await db?.destroy();
});

/** Inserts, finishes and deletes request `id` in one transaction (exposed to the experiment first when `exposed`); the apply's calls in it. */
async function applyCallsFor(id: string, exposed: boolean): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await sql`set local track_functions = 'all'`.execute(trx);
    const pending = await applyCalls(trx);
    await insertRequest(trx, { id, tenantId, keyId, kind: 'sync', model: 'm', idempotencyKey: null, bodyHash: 'h' });
    if (exposed) await recordExposure(trx, { requestId: id, experimentId, tenantId, subject: 's', variant: 'a' });
    await trx.updateTable('requests').set({ status: 'succeeded', finished_at: new Date() }).where('id', '=', id).execute();
    if (!exposed) await trx.deleteFrom('requests').where('id', '=', id).execute();
    return (await applyCalls(trx)) - pending;
  });
}

/**
 * The apply's calls this backend counted and has not yet sent to the statistics: since
 * PostgreSQL 15 `pg_stat_xact_user_functions` reads these pending counts, which a transaction less
 * than a second after the last flush carries over from the one before (on the same connection),
 * so a transaction's own calls are the difference of two readings.
 */
async function applyCalls(trx: Db): Promise<number> {
  const { rows } = await sql<{ calls: number }>`
    select coalesce(sum(calls), 0)::int as calls from pg_stat_xact_user_functions where funcname = 'experiment_rollup_apply'`.execute(trx);
  return rows[0]?.calls ?? 0;
}

describe('the requests rollup trigger', () => {
  it('does not call experiment_rollup_apply for a request in no experiment', async () => {
    expect(await applyCallsFor('req_guard_plain', false)).toBe(0);
  });

  it('still applies an exposed request finishing', async () => {
    // The exposure's own trigger calls it once; finishing the exposed request calls it again.
    expect(await applyCallsFor('req_guard_exposed', true)).toBe(2);
    const sums = await experimentSums(db, experimentId, null);
    expect(sums.variants.find((v) => v.variant === 'a')).toMatchObject({ exposures: 1, succeeded: 1 });
  });
});
