/**
 * A hostile or broken OpenAI-compatible upstream, through a whole stack (Temporal, PostgreSQL, the
 * API, the inference worker), with the fake upstream standing in for the paid service: redirects
 * are not followed, an oversized completion fails once and is never bought again, usage above
 * what was reserved is not billed, and internal details (an upstream's text naming internal
 * hosts, what a webhook host resolves to) reach the logs but never a client: not the HTTP error,
 * the job body, the batch error file, the `job.failed` payload or a webhook's `last_error`.
 * This stack runs without SLUICE_ENABLE_INSTANT_BACKEND, so the instant test backend is refused.
 */
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { addModel, pollJob, settled, startJob, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { privateRangeOf } from '../../activities/net/address-guard.js';

/** What a hostile upstream's error says: an internal host name and address (it must not reach tenants). */
const MARKER = 'pg-primary-7.internal.example';
const MARKER_ADDRESS = '10.77.66.55';

let stack: TestStack;
let upstream: FakeUpstream;
let internal: FakeUpstream;
let key: string;
let tenantId: string;

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text ? JSON.parse(text) : null };
}

const chat = (maxTokens = 4) => ({ model: 'hostile', messages: [{ role: 'user', content: 'hello there' }], max_tokens: maxTokens });

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  upstream = await startFakeUpstream();
  internal = await startFakeUpstream();
  stack = await startTestStack({ env: { SLUICE_ENABLE_INSTANT_BACKEND: 'false' } });
  await addModel(stack, {
    id: 'hostile', context_length: 4096, max_output_tokens: 16,
    deployments: [{
      id: 'hostile-up', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'm',
      price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 1_000_000 },
    }],
  });
  const t = await stack.createTenantKey({ role: 'tenant_admin' });
  key = t.key;
  tenantId = t.tenantId;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
  await internal?.close();
});

beforeEach(() => {
  upstream.setBehaviour({ kind: 'succeed' });
});

describe('the instant test backend', () => {
  it('is refused by the admin API unless SLUICE_ENABLE_INSTANT_BACKEND is set', async () => {
    const r = await stack.admin('POST', '/v1/admin/models', {
      id: 'fake-ok', context_length: 1024, max_output_tokens: 8, deployments: [{ provider: 'instant', pool: 'local' }],
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'provider_disabled', param: 'deployments[0].provider' });
    expect((await stack.admin('GET', '/v1/admin/models')).body.data.map((m: { id: string }) => m.id)).not.toContain('fake-ok');
  });
});

describe('a hostile upstream', () => {
  it('does not follow a redirect to an internal address', async () => {
    upstream.setBehaviour({ kind: 'redirect', status: 307, location: `${internal.url}/chat/completions` });
    const before = upstream.calls;
    const r = await call('POST', '/v1/chat/completions', chat());
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('model_unavailable');
    expect(upstream.calls).toBeGreaterThan(before);
    expect(internal.calls).toBe(0);
    expect(r.text).not.toContain(internal.url);
  });

  it('fails a completion over the payload limit once, without buying it again', async () => {
    // One "word" of 2.5 MB: one token to the fake, over Temporal's 2 MB payload limit as a result.
    upstream.setBehaviour({ kind: 'succeed', content: 'x'.repeat(2_500_000), usage: { promptTokens: 3, completionTokens: 1 } });
    const before = upstream.calls;
    const r = await call('POST', '/v1/chat/completions', chat());
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('completion_too_large');
    // The request is over (its workflow has failed): no retry or fallback can call again.
    expect(upstream.calls).toBe(before + 1);
    const billed = await stack.db.selectFrom('usage').select(['billable']).where('tenant_id', '=', tenantId).where('billable', '=', true).execute();
    expect(billed).toEqual([]);
    // What the upstream charged for is on record, unbilled.
    const spent = await stack.db.selectFrom('usage').select(['input_tokens', 'output_tokens']).where('tenant_id', '=', tenantId).where('billable', '=', false).execute();
    expect(spent).toEqual([{ input_tokens: 3, output_tokens: 1 }]);
  });

  it('bills completion tokens above max_tokens at max_tokens', async () => {
    upstream.setBehaviour({ kind: 'succeed', usage: { promptTokens: 3, completionTokens: 5000 } });
    const r = await call('POST', '/v1/chat/completions', chat(4));
    expect(r.status).toBe(200);
    expect(r.body.usage.completion_tokens).toBe(4);
    const requestId = String(r.body.id).replace(/^chatcmpl-/, '');
    await settled(stack, requestId);
    const row = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).where('billable', '=', true).executeTakeFirstOrThrow();
    expect(row.output_tokens).toBe(4);
    expect(row.input_tokens).toBe(3);
    expect(row.cost_micros).toBe(7); // (3 + 4) tokens at 1 micro-USD each
  });
});

describe('internal details', () => {
  const leak = { kind: 'fail' as const, status: 400, message: `could not reach ${MARKER} (${MARKER_ADDRESS}): connection reset` };

  it('never reach the HTTP error, which carries a request ID; the log has them', async () => {
    upstream.setBehaviour(leak);
    const r = await call('POST', '/v1/chat/completions', chat(), { 'X-Request-Id': 'client-trace-42' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', code: 'upstream_bad_request' });
    expect(r.text).not.toContain(MARKER);
    expect(r.text).not.toContain(MARKER_ADDRESS);
    expect(r.headers.get('x-request-id')).toBe('client-trace-42');
    expect(stack.logs.some((l) => l.includes(MARKER) && l.includes('client-trace-42'))).toBe(true);
  });

  it('never reach a job body, a job.failed payload or a webhook last_error', async () => {
    // A webhook host name that resolves to loopback (not allowed on this stack): refused at connect.
    const host = os.hostname();
    const resolved = (await lookup(host, { all: true })).map((a) => a.address);
    expect(resolved.some((a) => privateRangeOf(a) !== null)).toBe(true);
    const receiver = http.createServer((_req, res) => res.writeHead(200).end());
    await new Promise<void>((resolve) => receiver.listen(0, '0.0.0.0', resolve));
    try {
      const hook = await call('POST', '/v1/admin/webhooks', { url: `http://${host}:${(receiver.address() as AddressInfo).port}/hook`, events: ['job.failed'] });
      expect(hook.status).toBe(201);
      upstream.setBehaviour(leak);
      const job = await startJob(stack, key, chat());
      const done = await pollJob(stack, key, job.id, (s) => s === 'failed');
      expect(done.status).toBe('failed');
      expect(done.error.code).toBe('upstream_bad_request');
      expect(JSON.stringify(done)).not.toContain(MARKER);

      const event = await stack.db.selectFrom('webhook_events').select(['body']).where('tenant_id', '=', tenantId).where('type', '=', 'job.failed').executeTakeFirstOrThrow();
      expect(event.body).not.toContain(MARKER);
      expect(event.body).not.toContain(MARKER_ADDRESS);

      const delivery = await waitFor('a failed delivery', async () => {
        const d = (await call('GET', `/v1/admin/webhooks/${hook.body.id}/deliveries`)).body.data[0];
        return d?.status === 'failed' ? d : null;
      });
      expect(delivery.last_error).toMatch(/address refused/);
      const endpoint = (await call('GET', `/v1/admin/webhooks/${hook.body.id}`)).body;
      for (const address of resolved) {
        expect(delivery.last_error).not.toContain(address);
        expect(String(endpoint.disabled_reason)).not.toContain(address);
      }
      expect(stack.logs.some((l) => l.includes('webhook delivery failed') && resolved.some((a) => l.includes(a)))).toBe(true);
      expect(stack.logs.some((l) => l.includes(MARKER) && l.includes(job.id))).toBe(true);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });

  it('never reach a batch error line', async () => {
    upstream.setBehaviour(leak);
    const line = JSON.stringify({ custom_id: 'l1', method: 'POST', url: '/v1/chat/completions', body: chat() });
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${line}\n`]), 'input.jsonl');
    const file = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: form }).then((r) => r.json() as Promise<{ id: string }>);
    const batch = await call('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.status).toBe(200);
    const done = await waitFor('the batch to finish', async () => {
      const b = (await call('GET', `/v1/batches/${batch.body.id}`)).body;
      return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) ? b : null;
    }, 90_000);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 1, completed: 0, failed: 1 } });
    const errors = await call('GET', `/v1/files/${done.error_file_id}/content`);
    expect(errors.text).toContain('upstream_bad_request');
    expect(errors.text).not.toContain(MARKER);
    expect(errors.text).not.toContain(MARKER_ADDRESS);
  });
});
