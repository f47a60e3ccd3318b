/**
 * The dev server's memory bound: its history service's mutable-state cache takes the cap Sluice
 * sets (`history.hostLevelCacheMaxSize`). Read back from the server's own metrics, because a key
 * the server does not know is ignored without a word (Server 1.32 dropped `history.cacheMaxSize`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_SERVER_MUTABLE_STATE_CACHE, startTemporalDevServer, type RunningDevServer } from '../../scripts/lib/temporal-dev-server.js';
import { freePort } from '../../scripts/lib/free-port.js';

let server: RunningDevServer;
let metricsUrl: string;

beforeAll(async () => {
  const metricsPort = await freePort();
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  server = await startTemporalDevServer({ dbFile: null, uiPort: null, extraArgs: ['--metrics-port', String(metricsPort)] });
});

afterAll(async () => {
  await server?.stop();
});

/**
 * `cache_size{cache_type="mutablestate",…}` from the server's metrics, waiting until it is exported
 * with its size: the gauge reads 0 from the server's start until the first periodic report.
 */
async function mutableStateCacheSize(deadlineMs: number): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const text = await fetch(metricsUrl).then((r) => r.text(), () => '');
    const m = /^cache_size\{[^}]*cache_type="mutablestate"[^}]*\} (\d+)$/m.exec(text);
    if (m && Number(m[1]) > 0) return Number(m[1]);
    if (Date.now() > deadline) throw new Error(`no mutable-state cache_size in ${metricsUrl} within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('the Temporal dev server Sluice starts', () => {
  it('caps the history mutable-state cache at DEV_SERVER_MUTABLE_STATE_CACHE entries, not the server default of 128,000', async () => {
    expect(DEV_SERVER_MUTABLE_STATE_CACHE).toBeLessThan(128_000);
    expect(await mutableStateCacheSize(30_000)).toBe(DEV_SERVER_MUTABLE_STATE_CACHE);
  });
});
