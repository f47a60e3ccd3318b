/**
 * The admission and settlement steps on their own (issue 3): authorize + reserve + settle per
 * request, called as the workflow calls them (the activities, over a real PostgreSQL), at
 * concurrency 1 and 32 — p50/p99 per request — and whether budget enforcement stays exact under
 * that concurrency: a budget that admits exactly K requests must admit exactly K and spend ≤ budget.
 *
 * Run: `npx tsx bench/quota.ts [--requests 400]`
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ApplicationFailure } from '@temporalio/common';
import { startEmbeddedPostgres } from '../scripts/lib/embedded-postgres.js';
import { createDb } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { createControlActivities } from '../activities/index.js';
import { percentile } from './stats.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench } from './setup.js';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '400' } } });
const REQUESTS = Number(values.requests);

/** 10 prompt + 2 output tokens at 1 USD / 1M each way, estimate = actual = 12 micro-USD. */
const PROMPT = 10;
const OUTPUT = 2;

async function main() {
  const { dir, env } = await benchEnv('quota');
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: Number(env.SLUICE_PG_PORT) });
  const { db } = createDb({ connectionString: pg.url, max: 40 });
  const results: Record<string, unknown> = { machine: machine(), requests: REQUESTS };
  try {
    await migrateToLatest(db);
    await addInstantModel(db, { deploymentId: 'instant-q', pool: 'q', input: 1_000_000, output: 1_000_000, effectiveFrom: new Date(Date.now() - 60_000) });
    const a = createControlActivities({ db });
    let seq = 0;

    /** One request's admission and settlement; returns its latency, or null if quota refused it. */
    async function one(tenantId: string, keyId: string): Promise<number | null> {
      const requestId = `req_bench_${seq++}`;
      const t = performance.now();
      await a.authorize({ requestId, tenantId, keyId, model: 'instant' });
      try {
        await a.reserveQuota({ requestId, tenantId, model: 'instant', promptTokensEstimate: PROMPT, maxTokens: OUTPUT });
      } catch (err) {
        if (err instanceof ApplicationFailure && err.type === 'QuotaExceeded') return null;
        throw err;
      }
      await a.settle({ requestId, step: 'infer', tenantId, keyId, kind: 'sync', model: 'instant', deploymentId: 'instant-q', pool: 'q', variant: null, promptTokens: PROMPT, completionTokens: OUTPUT, latencyMs: 0 });
      return performance.now() - t;
    }

    async function run(concurrency: number, tenantId: string, keyId: string, total: number) {
      const latencies: number[] = [];
      let refused = 0;
      let next = 0;
      const started = performance.now();
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < total) {
          next += 1;
          const ms = await one(tenantId, keyId);
          if (ms === null) refused += 1;
          else latencies.push(ms);
        }
      }));
      const seconds = (performance.now() - started) / 1000;
      return { concurrency, admitted: latencies.length, refused, rps: Math.round(((latencies.length + refused) / seconds) * 10) / 10, p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99) };
    }

    const unlimited = await addTenantKey(db, null);
    await run(4, unlimited.tenantId, unlimited.keyId, 50); // warm-up
    results.latency = [await run(1, unlimited.tenantId, unlimited.keyId, REQUESTS), await run(32, unlimited.tenantId, unlimited.keyId, REQUESTS)];

    // Exactness: a budget for exactly K requests, 4K attempts at concurrency 32.
    const k = Math.floor(REQUESTS / 4);
    const limited = await addTenantKey(db, k * (PROMPT + OUTPUT));
    const race = await run(32, limited.tenantId, limited.keyId, 4 * k);
    const spend = await db.selectFrom('tenant_spend').selectAll().where('tenant_id', '=', limited.tenantId).executeTakeFirstOrThrow();
    const held = await db.selectFrom('reservations').select('request_id').where('tenant_id', '=', limited.tenantId).where('status', '=', 'held').execute();
    results.budget_race = {
      ...race, expected_admitted: k, exact: race.admitted === k && spend.spent_micros <= k * (PROMPT + OUTPUT) && held.length === 0,
      budget_micros: k * (PROMPT + OUTPUT), spent_micros: spend.spent_micros, reserved_micros: spend.reserved_micros, held_reservations: held.length,
    };
  } finally {
    await db.destroy();
    await pg.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
