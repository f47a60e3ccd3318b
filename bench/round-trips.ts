/**
 * The round trips of one sync request (issue 18), counted on the real stack (embedded PostgreSQL,
 * Temporal dev server, the instant backend, all in this process like `pipeline.ts`): every SQL
 * statement the API and the workers send (pg's `Client.query`, counted per statement text, in
 * order, and whether it ran before the workflow start, inside the workflow or after its result),
 * the Temporal client's calls, the dev server's persistence calls and tasks per request (its
 * metrics), and the request workflow's history: its events and the bytes of the payloads each carries. Averages over `--requests` requests after a warm-up.
 * Also the statements PostgreSQL parses per request (`parse_per_request`: pg's Parse messages,
 * i.e. the unnamed statements and a named one's first use on a connection) by phase. Not timed.
 *
 * Run: `npx tsx bench/round-trips.ts [--requests 20] [--sa-refresh-on-read default|true|false]` (`npm run bench -- round-trips`).
 */
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import proto from '@temporalio/proto';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startInfra, startStack } from '../scripts/lib/system.js';
import { chatWorkflowId } from '../contracts/ids.js';
import { freePort } from '../scripts/lib/free-port.js';
import { countersPer, temporalCounters } from './temporal-counters.js';
import { interceptQueries } from './instrument.js';
import { benchEnv, machine, addInstantModel, addTenantKey, runBench, syncChat } from './setup.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '20' },
    /** The dev server's `system.forceSearchAttributesCacheRefreshOnRead` (`default`: what scripts/lib/temporal-dev-server.ts sets). */
    'sa-refresh-on-read': { type: 'string', default: 'default' },
  },
});
const SA_REFRESH = values['sa-refresh-on-read'];
if (!['default', 'true', 'false'].includes(SA_REFRESH)) throw new Error('--sa-refresh-on-read must be default, true or false');
const REQUESTS = Number(values.requests);

/** Where a statement ran, by what the route was waiting for when it was sent. */
type Phase = 'api before start' | 'workflow (admit, complete)' | 'api after result';

/**
 * Bytes of the payloads an event carries (inputs, results, marker details, search attributes):
 * each `Payload`'s data and metadata values.
 */
function payloadBytes(value: unknown): number {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return 0;
  const o = value as Record<string, unknown>;
  if (o.data instanceof Uint8Array && typeof o.metadata === 'object' && o.metadata !== null) {
    return o.data.length + Object.values(o.metadata as Record<string, unknown>).reduce<number>((a, v) => a + (v instanceof Uint8Array ? v.length : 0), 0);
  }
  return Object.values(o).reduce<number>((a, v) => a + payloadBytes(v), 0);
}

/** The statement's text with its literals and whitespace folded, so each query counts as one kind. */
function shapeOf(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/\$\d+/g, '$').slice(0, 110);
}

async function main() {
  const { dir, env } = await benchEnv('round-trips', { SLUICE_SLOTS: '8' });
  const log = createLogger('warn');
  const config = loadConfig(env);
  const metricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const infra = await startInfra(config, log, undefined, [
    '--metrics-port', String(metricsPort),
    ...(SA_REFRESH === 'default' ? [] : ['--dynamic-config-value', `system.forceSearchAttributesCacheRefreshOnRead=${SA_REFRESH}`]),
  ]);
  const counting = { on: false, phase: 'api before start' as Phase };
  const statements = new Map<string, { phase: Phase; n: number; order: number }>();
  let order = 0;
  const parses = new Map<Phase, number>();
  const connection = pg.Connection.prototype as unknown as { parse: (...args: unknown[]) => unknown };
  const parse = connection.parse;
  connection.parse = function counted(this: unknown, ...args: unknown[]) {
    if (counting.on) parses.set(counting.phase, (parses.get(counting.phase) ?? 0) + 1);
    return parse.apply(this, args);
  };
  const restoreQuery = interceptQueries(({ text }) => {
    if (!counting.on) return;
    const key = `${counting.phase} | ${shapeOf(text === '' ? '?' : text)}`;
    const s = statements.get(key) ?? { phase: counting.phase, n: 0, order: order++ };
    s.n += 1;
    statements.set(key, s);
  });
  const results: Record<string, unknown> = { machine: machine(), requests: REQUESTS, sa_refresh_on_read: SA_REFRESH };
  try {
    const stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: ['bench'], log });
    try {
      await addInstantModel(stack.db);
      const key = (await addTenantKey(stack.db)).secret;
      const url = stack.url as string;
      for (let i = 0; i < 30; i++) await syncChat(url, key);
      // Phases from the client's calls: the route starts the workflow, then waits for its result.
      const client = stack.client.workflow;
      const start = client.start.bind(client);
      const rpcs = new Map<string, number>();
      const count = (name: string) => rpcs.set(name, (rpcs.get(name) ?? 0) + 1);
      client.start = (async (...args: Parameters<typeof start>) => {
        count('workflow.start (eager)');
        const handle = await start(...args);
        counting.phase = 'workflow (admit, complete)';
        return handle;
      }) as typeof start;
      const getHandle = client.getHandle.bind(client);
      client.getHandle = ((...args: Parameters<typeof getHandle>) => {
        const handle = getHandle(...args);
        const result = handle.result.bind(handle);
        handle.result = (async () => {
          count('result (history long poll)');
          const r = await result();
          counting.phase = 'api after result';
          return r;
        }) as typeof handle.result;
        return handle;
      }) as typeof getHandle;
      const ids: string[] = [];
      await new Promise((r) => setTimeout(r, 2000)); // the warm-up's counts reported first
      const before = await temporalCounters(metricsUrl);
      for (let i = 0; i < REQUESTS; i++) {
        counting.phase = 'api before start';
        counting.on = true;
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: 'benchmark' }], max_tokens: 2 }),
        });
        const body = await res.json() as { id: string };
        counting.on = false;
        ids.push(body.id.replace(/^chatcmpl-/, ''));
      }
      // The dev server's persistence calls and tasks per request (its metrics are reported every second or so).
      await new Promise((r) => setTimeout(r, 2000));
      results.temporal_per_request = countersPer(before, await temporalCounters(metricsUrl), REQUESTS);
      // The history of the last one: events, and the payload bytes each event type carries.
      const history = await stack.client.workflow.getHandle(chatWorkflowId(ids[ids.length - 1] as string)).fetchHistory();
      const events = (history.events ?? []).map((e) => {
        const type = Object.keys(e).find((k) => k.endsWith('EventAttributes')) ?? '?';
        const bytes = JSON.stringify(e, (_k, v: unknown) => (v instanceof Uint8Array ? 'x'.repeat(v.length) : v)).length;
        return { type: type.replace(/EventAttributes$/, ''), json_bytes: bytes, payload_bytes: payloadBytes(e) };
      });
      const sorted = [...statements.entries()].sort((a, b) => a[1].order - b[1].order);
      const perPhase: Record<string, number> = {};
      for (const [, s] of sorted) perPhase[s.phase] = (perPhase[s.phase] ?? 0) + s.n / REQUESTS;
      results.sql_per_request = perPhase;
      results.parse_per_request = Object.fromEntries([...parses.entries()].map(([k, n]) => [k, n / REQUESTS]));
      results.sql_statements = sorted.map(([k, s]) => ({ per_request: Math.round((s.n / REQUESTS) * 100) / 100, statement: k }));
      results.client_rpcs_per_request = Object.fromEntries([...rpcs.entries()].map(([k, n]) => [k, n / REQUESTS]));
      results.history = {
        events: events.length, json_bytes: events.reduce((a, e) => a + e.json_bytes, 0), payload_bytes: events.reduce((a, e) => a + e.payload_bytes, 0),
        encoded_bytes: proto.temporal.api.history.v1.History.encode(history).finish().length, by_event: events,
      };
    } finally {
      await stack.stop();
    }
  } finally {
    restoreQuery();
    connection.parse = parse;
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
