/**
 * The spine's user flows with the official `openai` client against real Temporal, PostgreSQL and
 * llama.cpp (the generated tiny model: its text is gibberish, so shapes and counts are asserted).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { settled, startTestStack, type TestStack } from '../support/stack.js';
import { TEMPORAL_CLI } from '../../scripts/lib/temporal-dev-server.js';
import { hashKey } from '../../db/repositories/keys.js';
import { startMetricsServer } from '../../runtime/metrics-server.js';

let stack: TestStack;
let client: OpenAI;
let tenantId: string;
let key: string;

beforeAll(async () => {
  stack = await startTestStack();
  ({ tenantId, key } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

async function usageRows(requestId: string) {
  return stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).execute();
}

/** The `SluiceStatus` each search-attribute upsert of a request's workflow wrote, in order. */
async function statusUpserts(workflowId: string): Promise<string[]> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const field = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.SluiceStatus?.data;
    return field ? [JSON.parse(Buffer.from(field).toString()) as string] : [];
  });
}

/** The attributes each search-attribute upsert of a request's workflow wrote, by name, in order. */
async function upsertedKeys(workflowId: string): Promise<string[][]> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const fields = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields;
    return fields ? [Object.keys(fields).sort()] : [];
  });
}

async function poll(id: string, until: (status: string) => boolean, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${key}` } });
    const job: any = await res.json();
    if (until(job.status) || Date.now() > deadline) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('sync API with the openai client', () => {
  it('lists models', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain('sluice-tiny');
    expect(models.data[0]).toMatchObject({ object: 'model', owned_by: 'sluice' });
  });

  it('answers a chat completion with real token counts, billed once', async () => {
    const completion = await client.chat.completions.create({
      model: 'sluice-tiny', messages: [{ role: 'user', content: 'Say hello to the world' }], max_tokens: 12, temperature: 0,
    });
    expect(completion.id).toMatch(/^chatcmpl-req_/);
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('sluice-tiny');
    expect(typeof completion.created).toBe('number');
    expect(completion.choices).toHaveLength(1);
    expect(completion.choices[0]?.message.role).toBe('assistant');
    expect(typeof completion.choices[0]?.message.content).toBe('string');
    expect(['stop', 'length']).toContain(completion.choices[0]?.finish_reason);
    const usage = completion.usage!;
    expect(usage.prompt_tokens).toBeGreaterThan(3);
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(12);
    if (completion.choices[0]?.finish_reason === 'length') expect(usage.completion_tokens).toBe(12);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);

    const requestId = completion.id.replace('chatcmpl-', '');
    await settled(stack, completion);
    const rows = await usageRows(requestId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ tenant_id: tenantId, input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens, model: 'sluice-tiny' });
    // 0.10 USD / 1M input, 0.20 USD / 1M output, rounded up to a whole micro-USD.
    const expected = Math.ceil((usage.prompt_tokens * 100_000 + usage.completion_tokens * 200_000) / 1_000_000);
    expect(rows[0]?.cost_micros).toBe(expected);
    const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', requestId).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('settled');
  });

  it('is deterministic at temperature 0', async () => {
    const body = { model: 'sluice-tiny', messages: [{ role: 'user' as const, content: 'Determinism check' }], max_tokens: 16, temperature: 0 };
    const [a, b] = await Promise.all([client.chat.completions.create(body), client.chat.completions.create(body)]);
    expect(a.id).not.toBe(b.id);
    expect(a.choices[0]?.message.content).toBe(b.choices[0]?.message.content);
    expect(a.usage).toEqual(b.usage);
  });
});

describe('async jobs', () => {
  it('returns 202 with a job and polls it to the same completion', async () => {
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', Prefer: 'respond-async' },
      body: JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'async please' }], max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(202);
    const job: any = await res.json();
    expect(res.headers.get('location')).toBe(`/v1/jobs/${job.id}`);
    expect(['queued', 'running', 'succeeded']).toContain(job.status);
    const done: any = await poll(job.id, (s) => s === 'succeeded');
    expect(done.status).toBe('succeeded');
    expect(done.result.object).toBe('chat.completion');
    expect(done.result.id).toBe(`chatcmpl-${job.id}`);
    const sync = await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'async please' }], max_tokens: 8, temperature: 0 });
    expect(sync.choices[0]?.message.content).toBe(done.result.choices[0].message.content);
    expect(await usageRows(job.id)).toHaveLength(1);
    // An async job is `queued` until its attempt starts: the attempt upserts `running` (and its
    // model, pool and variant), the end its final status.
    expect(await statusUpserts(`chat-${job.id}`)).toEqual(['running', 'succeeded']);
  });

  it('another tenant cannot see the job', async () => {
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', Prefer: 'respond-async' },
      body: JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'mine' }], max_tokens: 4 }),
    });
    const job: any = await res.json();
    const other = await stack.createTenantKey();
    const peek = await fetch(`${stack.url}/v1/jobs/${job.id}`, { headers: { Authorization: `Bearer ${other.key}` } });
    expect(peek.status).toBe(404);
    const cancel = await fetch(`${stack.url}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${other.key}` } });
    expect(cancel.status).toBe(404);
  });
});

describe('idempotency', () => {
  it('the same Idempotency-Key returns the same result from the same workflow, billed once', async () => {
    const body = { model: 'sluice-tiny', messages: [{ role: 'user' as const, content: 'idempotent' }], max_tokens: 6 };
    const headers = { 'Idempotency-Key': 'order-42' };
    const first = await client.chat.completions.create(body, { headers });
    const second = await client.chat.completions.create(body, { headers });
    expect(second).toEqual(first);
    const requestId = first.id.replace('chatcmpl-', '');
    expect(await usageRows(requestId)).toHaveLength(1);
  });

  it('the same key with a different body is a 422 conflict and starts nothing', async () => {
    const headers = { 'Idempotency-Key': 'order-43' };
    await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'one' }], max_tokens: 4 }, { headers });
    const err = await client.chat.completions
      .create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'two' }], max_tokens: 4 }, { headers })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(422);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('idempotency_key_reused');
  });

  it('keys are per tenant: another tenant using the same Idempotency-Key gets its own request', async () => {
    const other = await stack.createTenantKey();
    const otherClient = new OpenAI({ apiKey: other.key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const headers = { 'Idempotency-Key': 'order-42' };
    const mine = await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'idempotent' }], max_tokens: 6 }, { headers });
    const theirs = await otherClient.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 6 }, { headers });
    expect(theirs.id).not.toBe(mine.id);
  });
});

describe('operations', () => {
  it('ops find the request by tenant in Temporal with model, pool, variant and status', async () => {
    const completion = await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'ops' }], max_tokens: 4 });
    const workflowId = `chat-${completion.id.replace('chatcmpl-', '')}`;
    await settled(stack, completion);
    // Visibility is eventually consistent: retry the list briefly.
    let rows: Array<Record<string, any>> = [];
    for (let i = 0; i < 50; i++) {
      const { stdout } = await promisify(execFile)(TEMPORAL_CLI, [
        'workflow', 'list', '--address', stack.temporal.address, '--query', `SluiceTenant="${tenantId}" AND SluiceStatus="succeeded"`, '--output', 'json',
      ]);
      rows = stdout.trim() ? JSON.parse(stdout) : [];
      if (rows.some((r) => r.execution?.workflowId === workflowId)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const row = rows.find((r) => r.execution?.workflowId === workflowId);
    expect(row).toBeDefined();
    const handle = stack.client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    expect(d.searchAttributes).toMatchObject({
      SluiceKind: ['sync'], SluiceTenant: [tenantId], SluiceModel: ['sluice-tiny'], SluicePool: ['local'], SluiceVariant: ['none'], SluiceStatus: ['succeeded'],
    });
    // A sync request starts as `running`: its model, pool and variant are written with its final
    // status, in one upsert at its end (not one more at the attempt: workflows/request-workflow.ts).
    expect(await statusUpserts(workflowId)).toEqual(['succeeded']);
    // Its model is the one it started with (no variant changed it): the end writes pool, variant and status only.
    expect(await upsertedKeys(workflowId)).toEqual([['SluicePool', 'SluiceStatus', 'SluiceVariant']]);
    const history = await handle.fetchHistory();
    // Regular activities name their type in the scheduled event; local ones in their marker's data.
    const steps = (history.events ?? []).flatMap((e) => {
      const scheduled = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (scheduled) return [scheduled];
      const data = e.markerRecordedEventAttributes?.details?.data?.payloads?.[0]?.data;
      return data ? [JSON.parse(Buffer.from(data).toString()).activity_type as string] : [];
    });
    // Admission (authorize → reserve → experiment → route → circuit) and completion (settle →
    // audit) are one local activity each; the admission's result shows what each step decided.
    expect(steps).toEqual(['admit', 'infer', 'complete']);
    const admitMarker = (history.events ?? []).find((e) => {
      const data = e.markerRecordedEventAttributes?.details?.data?.payloads?.[0]?.data;
      return data && JSON.parse(Buffer.from(data).toString()).activity_type === 'admit';
    });
    const admitted = JSON.parse(Buffer.from(admitMarker?.markerRecordedEventAttributes?.details?.result?.payloads?.[0]?.data ?? '{}').toString());
    expect(admitted).toMatchObject({
      authorized: { model: 'sluice-tiny' }, maxTokens: 4, assignment: { variant: null }, acquired: 0,
      deployments: [{ pool: 'local', provider: 'llama-cpp' }],
    });
    expect(admitted.estCostMicros).toBeGreaterThan(0);
  });

  it('serves /healthz, /readyz and Prometheus /metrics', async () => {
    expect((await fetch(`${stack.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${stack.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as any).checks).toMatchObject({ postgres: 'ok', temporal: 'ok', 'pool:local': 'ok' });
    // The API port serves no metrics without SLUICE_METRICS_TOKEN (test/unit/metrics-endpoint.test.ts): they are on the metrics listener.
    expect((await fetch(`${stack.url}/metrics`)).status).toBe(404);
    const listener = await startMetricsServer(stack.metrics, 0, { host: '127.0.0.1' });
    const metrics = await (await fetch(listener.url)).text().finally(() => listener.stop());
    expect(metrics).toMatch(/sluice_chat_requests_total\{model="sluice-tiny",status="200",tenant="ten_/);
    expect(metrics).toMatch(/sluice_tokens_total\{.*direction="completion"/);
    expect(metrics).toContain('sluice_workflow_outcomes_total');
  });

  it('never writes a key secret to logs, audit rows or errors', async () => {
    const audit = JSON.stringify(await stack.db.selectFrom('audit_log').selectAll().execute());
    const logs = stack.logs.join('\n');
    for (const secret of [key, stack.adminKey]) {
      expect(audit).not.toContain(secret);
      expect(logs).not.toContain(secret);
      expect(audit).not.toContain(hashKey(secret));
    }
  });
});
