/**
 * The parts of streaming that need no Temporal: the publisher's coalescing (one row per batch of
 * tokens, never one per token while an insert is in flight) and the pinned fetch's streamed
 * bodies (handed on as they arrive, under the same size cap; a dropped stream errors the body).
 */
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createStreamPublisher } from '../../activities/stream-publisher.js';
import { createPinnedFetch, ResponseTooLargeError } from '../../activities/backends/pinned-fetch.js';

/** A publish step that stores each content and resolves when the test says so. */
function gatedPublish(rows: string[], gate: { release: (() => void) | null }) {
  return async (content: string) => {
    rows.push(content);
    await new Promise<void>((resolve) => {
      gate.release = resolve;
    });
  };
}

describe('stream publisher', () => {
  it('coalesces deltas pushed while an insert is in flight into the next chunk', async () => {
    const rows: string[] = [];
    const gate: { release: (() => void) | null } = { release: null };
    let first = 0;
    const publisher = createStreamPublisher({ publish: gatedPublish(rows, gate), onFirstChunk: () => first++, onClosed: () => undefined });
    publisher.push('a');
    publisher.push('b');
    publisher.push('c');
    expect(publisher.started).toBe(true);
    await new Promise((r) => setImmediate(r));
    gate.release?.();
    await new Promise((r) => setImmediate(r));
    publisher.push('d');
    gate.release?.();
    await new Promise((r) => setImmediate(r));
    gate.release?.();
    await publisher.flush();
    expect(rows.join('')).toBe('abcd');
    expect(rows).toEqual(['a', 'bc', 'd']);
    expect(first).toBe(1);
    expect(publisher.pushed).toBe('abcd');
  });
});

describe('pinned fetch, streamed bodies', () => {
  let server: http.Server | null = null;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = null;
  });

  async function serve(handler: http.RequestListener): Promise<string> {
    server = http.createServer(handler);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  }

  it('hands on an event stream before it ends', async () => {
    let finish: (() => void) | null = null;
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: one\n\n');
      finish = () => res.end('data: two\n\n');
    });
    const pinned = createPinnedFetch({ allow: ['127.0.0.1'], maxResponseBytes: 1024 });
    try {
      const res = await pinned.fetch(url);
      const reader = res.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toBe('data: one\n\n');
      (finish as (() => void) | null)?.();
      let rest = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
      expect(rest).toBe('data: two\n\n');
    } finally {
      pinned.close();
    }
  });

  it('fails an event stream past the size cap, and one whose connection drops', async () => {
    const url = await serve((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      if (req.url === '/big') {
        res.write(`data: ${'x'.repeat(2048)}\n\n`);
        return;
      }
      res.write('data: partial\n\n', () => res.destroy());
    });
    const pinned = createPinnedFetch({ allow: ['127.0.0.1'], maxResponseBytes: 1024 });
    try {
      const big = await pinned.fetch(`${url}big`);
      await expect(big.text()).rejects.toThrow(ResponseTooLargeError);
      const dropped = await pinned.fetch(`${url}drop`);
      await expect(dropped.text()).rejects.toThrow();
    } finally {
      pinned.close();
    }
  });
});
