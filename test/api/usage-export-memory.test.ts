/**
 * A month of 1,000,000 usage rows exported as CSV by the API process (`npm run api`'s entry point,
 * `scripts/api.ts`) running with its V8 heap capped at 64 MiB: the export is streamed from a
 * database cursor, so it completes with every row; an export that gathered the rows (~170 MiB of
 * CSV, far more as objects) would die of heap exhaustion instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { startTestStack, type TestStack } from '../support/stack.js';
import { freePort } from '../support/global-setup.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ROWS = 1_000_000;
const HEAP_MIB = 64;

let stack: TestStack;
let api: ChildProcess;
let apiUrl: string;
let tenantId: string;
const apiOutput: string[] = [];

beforeAll(async () => {
  stack = await startTestStack({ pools: [] });
  ({ tenantId } = await stack.createTenantKey());
  // A month of rows spread over July 2025 (UTC), as the ledger would hold them.
  await sql`
    insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant,
                       input_tokens, output_tokens, cost_micros, latency_ms, created_at)
    select 'req_export_' || g, 'infer', ${tenantId}, 'key_' || (g % 4), case when g % 10 = 0 then 'batch' else 'sync' end,
           'export-model', 'export-dep', 'local', case when g % 2 = 0 then 'A' else 'B' end,
           100 + g % 50, 20 + g % 30, 30 + g % 7, 5,
           '2025-07-01T00:00:00Z'::timestamptz + (g::double precision / ${ROWS}) * interval '31 days'
    from generate_series(0, ${ROWS - 1}) g`.execute(stack.db);

  const port = await freePort();
  api = spawn(process.execPath, [`--max-old-space-size=${HEAP_MIB}`, '--import', 'tsx', path.join(ROOT, 'scripts/api.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '', DATABASE_URL: stack.databaseUrl, TEMPORAL_ADDRESS: stack.temporal.address,
      PORT: String(port), SLUICE_DATA_DIR: stack.config.dataDir, SLUICE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const collect = (chunk: Buffer) => apiOutput.push(chunk.toString());
  api.stdout?.on('data', collect);
  api.stderr?.on('data', collect);
  apiUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (api.exitCode !== null) throw new Error(`API exited at start: ${apiOutput.join('')}`);
    const ok = await fetch(`${apiUrl}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`API did not start: ${apiOutput.join('')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 300_000);

afterAll(async () => {
  if (api && api.exitCode === null) {
    const exited = new Promise((r) => api.once('exit', r));
    api.kill('SIGTERM');
    await exited;
  }
  await stack?.stop();
});

describe('usage export at volume', () => {
  it(`streams 1,000,000 rows as CSV from an API whose heap is capped at ${HEAP_MIB} MiB`, async () => {
    const res = await fetch(`${apiUrl}/v1/admin/usage/export?period=2025-07&format=csv&tenant_id=${tenantId}`, {
      headers: { Authorization: `Bearer ${stack.adminKey}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/csv/);
    let lines = 0;
    let first = '';
    let last = '';
    let partial = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      const text = partial + decoder.decode(chunk, { stream: true });
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        if (lines === 0) first = line;
        last = line;
        lines += 1;
      }
    }
    expect(partial).toBe('');
    expect(api.exitCode, apiOutput.join('').slice(-2000)).toBeNull(); // still serving: it did not run out of heap
    expect(lines).toBe(ROWS + 1); // the header and every row
    expect(first.split(',')).toEqual(expect.arrayContaining(['request_id', 'tenant_id', 'cost_micros', 'billable']));
    expect(last).toContain(tenantId);
  }, 600_000);
});
