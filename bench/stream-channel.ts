/**
 * The token channel candidates for streamed completions (issue 13), side by side in one run:
 * - `pg-notify`: what Sluice uses. The publisher inserts a chunk row and `pg_notify`s in one
 *   statement (db/repositories/streams.ts); the API's hub (api/stream-hub.ts, one LISTEN
 *   connection) wakes the stream, which reads the new rows. Durable: any API process resumes.
 * - `http-push`: the inference worker POSTs each chunk to the API process holding the client
 *   (keep-alive connection). Nothing stored: a second API process cannot resume, and the worker
 *   must be able to reach every API replica.
 * Temporal Workflow Streams (`@temporalio/workflow-streams`) pins @temporalio 1.23 (Sluice is on
 * 1.24) and documents ~100 ms per batch round trip: not measured, see BENCHMARKS.md.
 *
 * Each: delivery latency of one chunk (publish → the consumer holds it), p50/p99, one stream;
 * chunks/s with 8 and 32 streams publishing at once. Run: `npx tsx bench/stream-channel.ts [--chunks 400]`
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { startEmbeddedPostgres } from '../scripts/lib/embedded-postgres.js';
import { createDb } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { publishChunk, readChunks } from '../db/repositories/streams.js';
import { createStreamHub } from '../api/stream-hub.js';
import { createLogger } from '../runtime/logger.js';
import { percentile } from './stats.js';
import { benchEnv, machine, runBench } from './setup.js';

const { values } = parseArgs({ options: { chunks: { type: 'string', default: '400' } } });
const CHUNKS = Number(values.chunks);
const CONTENT = 'hello '; // a token or two, as a chunk of a fast model

/** A channel: `publish` sends one chunk of `stream`; `consume` resolves when the consumer holds chunk `n` (1-based). */
interface Channel {
  publish(stream: string): Promise<void>;
  received(stream: string, n: number): Promise<void>;
  close(): Promise<void>;
}

async function pgChannel(pool: pg.Pool, db: ReturnType<typeof createDb>['db']): Promise<Channel> {
  const hub = createStreamHub(pool, createLogger('warn', { process: 'bench' }));
  const cursors = new Map<string, { last: number; count: number }>();
  return {
    publish: async (stream) => {
      await publishChunk(db, { requestId: stream, attempt: 'a', model: 'bench', content: CONTENT });
    },
    async received(stream, n) {
      const c = cursors.get(stream) ?? { last: 0, count: 0 };
      cursors.set(stream, c);
      while (c.count < n) {
        const rows = await readChunks(db, stream, c.last);
        for (const r of rows) {
          c.last = r.id;
          c.count += 1;
        }
        if (c.count < n) await hub.wait(stream, 1000);
      }
    },
    close: () => hub.close(),
  };
}

async function httpChannel(): Promise<Channel> {
  const counts = new Map<string, number>();
  const waiters = new Map<string, Array<{ n: number; resolve: () => void }>>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const { stream } = JSON.parse(body) as { stream: string };
      const n = (counts.get(stream) ?? 0) + 1;
      counts.set(stream, n);
      const ws = waiters.get(stream) ?? [];
      waiters.set(stream, ws.filter((w) => (w.n <= n ? (w.resolve(), false) : true)));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  return {
    publish: (stream) => new Promise<void>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/push', method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ stream, content: CONTENT }));
    }),
    received: (stream, n) => new Promise<void>((resolve) => {
      if ((counts.get(stream) ?? 0) >= n) return resolve();
      const ws = waiters.get(stream) ?? [];
      ws.push({ n, resolve });
      waiters.set(stream, ws);
    }),
    close: async () => {
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One stream, chunk after chunk: publish → held by the consumer, per chunk (ms). */
async function latency(channel: Channel, stream: string): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 1; i <= CHUNKS; i++) {
    const t = performance.now();
    const got = channel.received(stream, i);
    await channel.publish(stream);
    await got;
    samples.push(performance.now() - t);
  }
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** `streams` streams publishing CHUNKS / 4 chunks each, all at once: delivered chunks per second. */
async function throughput(channel: Channel, prefix: string, streams: number): Promise<number> {
  const per = Math.max(1, Math.floor(CHUNKS / 4));
  const t = performance.now();
  await Promise.all(Array.from({ length: streams }, async (_, s) => {
    const stream = `${prefix}-${s}`;
    const got = channel.received(stream, per);
    for (let i = 0; i < per; i++) await channel.publish(stream);
    await got;
  }));
  return Math.round((streams * per) / ((performance.now() - t) / 1000));
}

async function main() {
  const { dir, env } = await benchEnv('stream-channel');
  const postgres = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: Number(env.SLUICE_PG_PORT) });
  const { db, pool } = createDb({ connectionString: postgres.url, max: 40 });
  const results: Record<string, unknown> = { machine: machine(), chunks: CHUNKS };
  try {
    await migrateToLatest(db);
    for (const [name, make] of [['pg-notify', () => pgChannel(pool, db)], ['http-push', httpChannel]] as const) {
      const channel = await make();
      await latency(channel, `${name}-warm`); // warm-up: connections, JIT
      results[name] = {
        latency_ms: await latency(channel, `${name}-lat`),
        chunks_per_s_c8: await throughput(channel, `${name}-c8`, 8),
        chunks_per_s_c32: await throughput(channel, `${name}-c32`, 32),
      };
      await channel.close();
    }
  } finally {
    await db.destroy();
    await postgres.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

runBench(main);
