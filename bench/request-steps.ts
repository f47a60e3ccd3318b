/**
 * The SQL of one sync request's two local activities, without Temporal or HTTP (issue 18 target 1):
 * `admit` and `complete` of the control activities called directly, one request after another,
 * on embedded PostgreSQL, the instant model and an unlimited tenant, as the request workflow calls
 * them (each request's row inserted first, as the API does). Reports per request: the statements
 * `admit` and `complete` sent (pg's `Client.query`), this process's CPU
 * (Node: building, sending and reading the statements), PostgreSQL's CPU (the postmaster and its
 * backends: parsing, planning and running them) and the wall time, all with the insert. The
 * CPU is the low-noise number on a shared machine; the wall time depends on PostgreSQL's share.
 * With `--api`, each request also runs the API's own statements around them, as the chat route
 * does (the key lookup, the model and precheck read, and after the result the cache status): all
 * seven statements of a sync request, then counted all. `parses_per_request`: the statements
 * PostgreSQL parsed (pg's Parse messages: the unnamed ones; a named one only on a new connection).
 *
 * Run: `npx tsx bench/request-steps.ts [--requests 2000] [--rounds 3] [--api]` (`npm run bench -- request-steps`).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres } from '../scripts/lib/embedded-postgres.js';
import { freePort } from '../scripts/lib/free-port.js';
import { createDb } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { insertRequest } from '../db/repositories/requests.js';
import { findKeyBySecret } from '../db/repositories/keys.js';
import { modelAndPrecheck } from '../db/repositories/quota.js';
import { requestCacheStatus } from '../db/repositories/cache.js';
import { createControlActivities } from '../activities/index.js';
import { addInstantModel, addTenantKey, machine, printResults, runBench } from './setup.js';
import { cpuSpent, perUnit, postgresCpuMs } from './stats.js';
import { interceptQueries } from './instrument.js';

/** A CPU reading in ms as µs (null stays null). */
const microseconds = (ms: number | null) => (ms === null ? null : ms * 1000);

const { values } = parseArgs({ options: { requests: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '3' }, api: { type: 'boolean', default: false } } });
const API = values.api;
const REQUESTS = Number(values.requests);
const ROUNDS = Number(values.rounds);

async function main() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-bench-request-steps-'));
  await fs.chmod(dir, 0o755);
  const pgDir = path.join(dir, 'pg');
  const server = await startEmbeddedPostgres({ dir: pgDir, port: await freePort(), database: 'sluice' });
  const { db } = createDb({ connectionString: server.url });
  let statements = 0;
  const restoreQuery = interceptQueries(() => {
    statements += 1;
  });
  let parses = 0;
  const connection = pg.Connection.prototype as unknown as { parse: (...args: unknown[]) => unknown };
  const parse = connection.parse;
  connection.parse = function counted(this: unknown, ...args: unknown[]) {
    parses += 1;
    return parse.apply(this, args);
  };
  try {
    await migrateToLatest(db);
    await addInstantModel(db);
    const { tenantId, keyId, secret } = await addTenantKey(db);
    const acts = createControlActivities({ db });
    let n = 0;
    async function one(): Promise<void> {
      const requestId = `req_bench_${n++}`;
      if (API) {
        if (!(await findKeyBySecret(db, secret))) throw new Error('no key');
        if (!(await modelAndPrecheck(db, 'instant', tenantId, new Date())).model) throw new Error('no model');
      }
      await insertRequest(db, { id: requestId, tenantId, keyId, kind: 'sync', model: 'instant', idempotencyKey: null, bodyHash: 'bench' });
      const a = await acts.admit({ requestId, tenantId, keyId, model: 'instant', subject: keyId, promptTokensEstimate: 8, maxTokens: 2 });
      const d = a.deployments[a.acquired];
      if (!d) throw new Error('no deployment acquired');
      await acts.complete({
        settle: {
          requestId, step: 'infer', tenantId, keyId, kind: 'sync', model: 'instant', deploymentId: d.id, pool: d.pool,
          variant: null, latencyMs: 1, promptTokens: 8, completionTokens: 2,
        },
        outcome: {
          requestId, tenantId, keyId, kind: 'sync', model: 'instant', status: 'succeeded', result: { id: requestId }, error: null,
          summary: { deployment: d.id, pool: d.pool, variant: null, prompt_tokens: 8, completion_tokens: 2 },
        },
      });
      if (API) await requestCacheStatus(db, requestId, tenantId);
    }
    for (let i = 0; i < 200; i++) await one();
    const rounds = [];
    for (let r = 0; r < ROUNDS; r++) {
      let admitComplete = 0;
      let wall = 0;
      const parses0 = parses;
      const cpu0 = process.cpuUsage();
      const pg0 = postgresCpuMs(pgDir);
      for (let i = 0; i < REQUESTS; i++) {
        const s0 = statements;
        const t0 = performance.now();
        await one();
        wall += performance.now() - t0;
        admitComplete += statements - s0;
      }
      const cpu = process.cpuUsage(cpu0);
      const pg1 = postgresCpuMs(pgDir);
      rounds.push({
        // Less the request row's insert (with --api: all of them).
        statements_per_request: Number((admitComplete / REQUESTS - (API ? 0 : 1)).toFixed(2)),
        parses_per_request: Number(((parses - parses0) / REQUESTS).toFixed(2)),
        node_cpu_us_per_request: Math.round((cpu.user + cpu.system) / REQUESTS),
        postgres_cpu_us_per_request: perUnit(microseconds(cpuSpent(pg0, pg1)), REQUESTS, 0),
        wall_ms_per_request: Number((wall / REQUESTS).toFixed(3)),
      });
    }
    printResults({ machine: machine(), load_average: os.loadavg().map((l) => Number(l.toFixed(2))), requests: REQUESTS, api: API, rounds });
  } finally {
    restoreQuery();
    connection.parse = parse;
    await db.destroy();
    await server.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

runBench(main);
