/**
 * Traces exported as configured by the standard `OTEL_*` variables: the stack installs tracing
 * from its config and its control worker bundles `workflows/` with the interceptor module, as
 * every entry point does, and its spans reach an OTLP/HTTP collector (a local HTTP server that
 * records what it is sent) with the configured service name and headers.
 * Pipeline only (docs/testing.md): the `instant` model; the export is what is tested.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addInstantModel, settled, startTestStack, type TestStack } from '../support/stack.js';

interface Received { path: string; headers: Record<string, string | string[] | undefined>; body: any }

let collector: Server;
let collectorUrl: string;
const received: Received[] = [];
let stack: TestStack | null = null;

beforeAll(async () => {
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
}, 30_000);

afterAll(async () => {
  await stack?.stop();
  await new Promise<void>((resolve) => collector.close(() => resolve()));
});

/** Every span the collector was sent, with its resource's service name. */
function exportedSpans(): Array<{ service: string; name: string; traceId: string; spanId: string; parentSpanId: string }> {
  return received.flatMap((r) => (r.body.resourceSpans ?? []).flatMap((rs: any) => {
    const service = (rs.resource?.attributes ?? []).find((a: any) => a.key === 'service.name')?.value?.stringValue ?? '';
    return (rs.scopeSpans ?? []).flatMap((ss: any) => (ss.spans ?? []).map((s: any) => ({ service, name: s.name, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '' })));
  }));
}

describe('OTLP export from OTEL_* variables', () => {
  it("a request's spans, the workflow's included, reach the OTLP endpoint with the service name and headers; flushed at stop", async () => {
    stack = await startTestStack({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
        OTEL_SERVICE_NAME: 'sluice-otlp-test',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20collector-token',
      },
    });
    await addInstantModel(stack);
    const { key } = await stack.createTenantKey();
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: 'export me' }] }),
    });
    expect(res.status).toBe(200);
    const traceId = (res.headers.get('traceparent') ?? '').split('-')[1];
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    // The settlement (its `complete` span) follows the answer: the stack stops once it has run.
    await settled(stack, (await res.json()) as { id: string });
    // The batch processor exports on its timer; stopping the stack flushes what is left.
    await stack.stop();
    stack = null;

    expect(received.length).toBeGreaterThan(0);
    for (const r of received) {
      expect(r.path).toBe('/v1/traces');
      expect(r.headers.authorization).toBe('Bearer collector-token');
      expect(String(r.headers['content-type'])).toContain('application/json');
    }
    const spans = exportedSpans().filter((s) => s.traceId === traceId);
    const names = spans.map((s) => s.name);
    for (const name of ['POST /v1/chat/completions', 'StartWorkflow:chatRequest', 'RunWorkflow:chatRequest', 'RunActivity:admit', 'RunActivity:infer', 'RunActivity:complete', 'backend.generate']) {
      expect(names, name).toContain(name);
    }
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['sluice-otlp-test']));
    const http = spans.find((s) => s.name === 'POST /v1/chat/completions');
    const start = spans.find((s) => s.name === 'StartWorkflow:chatRequest');
    expect(start?.parentSpanId).toBe(http?.spanId);
  }, 180_000);
});
