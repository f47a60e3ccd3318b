/**
 * A batch chunk's reserve and settle in PostgreSQL alone (issue 18 target 2): `sluice_reserve_many`
 * + `sluice_settle_many` as migration 0611 wrote them (one `sluice_reserve` / `sluice_settle` per
 * item) against migration 0831's (each counter and spend row written once per call), on one
 * embedded PostgreSQL, the same chunks of a budgeted tenant with every limit set, alternating
 * sides per round. Per line: the backend's CPU (one connection, /proc of its pid), the WAL it
 * wrote, wall time per chunk; and `EXPLAIN (ANALYZE, BUFFERS)` of one chunk's two calls per side.
 *
 * Run: `npx tsx bench/chunk-sql.ts [--lines 256] [--chunks 20] [--rounds 2]`
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { startEmbeddedPostgres } from '../scripts/lib/embedded-postgres.js';
import { createDb, type Db } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { up as perItemUp } from '../db/migrations/2026-12-01-0611-quota-many.js';
import { BUDGET_THRESHOLDS } from '../db/repositories/quota.js';
import { minuteOf, periodOf } from '../domain/billing-calendar.js';
import { cpuMs, percentile } from './stats.js';
import { addInstantModel, addTenantKey, benchEnv, machine, runBench } from './setup.js';

const { values } = parseArgs({ options: { lines: { type: 'string', default: '256' }, chunks: { type: 'string', default: '20' }, rounds: { type: 'string', default: '2' } } });
const LINES = Number(values.lines);
const CHUNKS = Number(values.chunks);
const ROUNDS = Number(values.rounds);
const SIDES = ['per_item', 'sums'] as const;
type Side = typeof SIDES[number];

/** The 0831 functions renamed `*_sums`, then the 0611 ones (per item) created and renamed `*_per_item`. */
async function installBoth(db: Db): Promise<void> {
  await sql`alter function sluice_reserve_many(jsonb, integer[]) rename to sluice_reserve_many_sums`.execute(db);
  await sql`alter function sluice_settle_many(jsonb, text, integer[]) rename to sluice_settle_many_sums`.execute(db);
  await perItemUp(db);
  await sql`alter function sluice_reserve_many(jsonb, integer[]) rename to sluice_reserve_many_per_item`.execute(db);
  await sql`alter function sluice_settle_many(jsonb, text, integer[]) rename to sluice_settle_many_per_item`.execute(db);
}

async function main(): Promise<void> {
  const { dir, env } = await benchEnv('chunk-sql');
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: Number(env.SLUICE_PG_PORT) });
  const { db } = createDb({ connectionString: pg.url, max: 1 });
  const results: Record<string, unknown> = { machine: machine(), lines_per_chunk: LINES, chunks: CHUNKS, rounds: ROUNDS };
  try {
    await migrateToLatest(db);
    await installBoth(db);
    await addInstantModel(db, { deploymentId: 'instant-c', pool: 'c', input: 1_000_000, output: 1_000_000, effectiveFrom: new Date(Date.now() - 60_000) });
    const backend = Number((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0]?.pid);
    const thresholds = sql.val([...BUDGET_THRESHOLDS]);
    let seq = 0;

    /** One chunk through `side`'s functions: reserve then settle, with a fresh tenant's key each round. */
    const chunk = async (side: Side, t: { tenantId: string; keyId: string }, explain: boolean) => {
      const at = new Date();
      const ids = Array.from({ length: LINES }, () => `req_${side}_${seq++}`);
      const reserve = JSON.stringify(ids.map((id) => ({ request_id: id, tenant_id: t.tenantId, est_tokens: 12, est_cost: 12, window: minuteOf(at).toISOString(), period: periodOf(at) })));
      const settle = JSON.stringify(ids.map((id) => ({
        request_id: id, step: 'infer', tenant_id: t.tenantId, key_id: t.keyId, kind: 'batch', model: 'instant', deployment_id: 'instant-c', pool: 'c',
        variant: null, price_id: null, tenant_price_id: null, at: at.toISOString(), input_tokens: 10, output_tokens: 1, cost: 11, latency_ms: 1,
      })));
      const prefix = sql.raw(explain ? 'explain (analyze, buffers, format text) ' : '');
      const r = await sql<Record<string, string>>`${prefix}select * from ${sql.raw(`sluice_reserve_many_${side}`)}(${reserve}::jsonb, ${thresholds}::integer[])`.execute(db);
      const s = await sql<Record<string, string>>`${prefix}select * from ${sql.raw(`sluice_settle_many_${side}`)}(${settle}::jsonb, ${periodOf(at)}, ${thresholds}::integer[])`.execute(db);
      return explain ? { reserve: r.rows.map((x) => Object.values(x)[0]), settle: s.rows.map((x) => Object.values(x)[0]) } : null;
    };

    const rounds: Array<Record<string, unknown>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of round % 2 === 0 ? SIDES : [...SIDES].reverse()) {
        const t = await addTenantKey(db, 1_000_000_000_000, `chunk-${side}-${round}`);
        await sql`update tenants set requests_per_minute = 1000000, tokens_per_minute = 1000000000, max_concurrent = 1000000 where id = ${t.tenantId}`.execute(db);
        await chunk(side, t, false); // warm: plans and caches
        const wal0 = (await sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(db)).rows[0]?.lsn;
        const cpu0 = cpuMs(backend) ?? 0;
        const walls: number[] = [];
        for (let c = 0; c < CHUNKS; c++) {
          const t0 = performance.now();
          await chunk(side, t, false);
          walls.push(performance.now() - t0);
        }
        const cpu = (cpuMs(backend) ?? 0) - cpu0;
        const wal = Number((await sql<{ bytes: string }>`select pg_wal_lsn_diff(pg_current_wal_lsn(), ${wal0}::pg_lsn) as bytes`.execute(db)).rows[0]?.bytes);
        const lines = LINES * CHUNKS;
        rounds.push({
          round: round + 1, side,
          backend_cpu_us_per_line: Math.round((cpu * 1000) / lines),
          wal_bytes_per_line: Math.round(wal / lines),
          chunk_ms_p50: Math.round((percentile(walls, 50) ?? 0) * 10) / 10,
        });
        if (round === 0) results[`explain_${side}`] = await chunk(side, t, true);
      }
    }
    results.rounds = rounds;
  } finally {
    await db.destroy();
    await pg.stop();
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
