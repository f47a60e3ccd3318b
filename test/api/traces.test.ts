/**
 * Traces (issue 16) on the real stack, with an in-memory span exporter installed in this process
 * (where the test stack's API, workers and client all run): one request's spans form one trace
 * with the expected parents, HTTP → StartWorkflow → RunWorkflow → StartActivity/RunActivity →
 * backend; an incoming `traceparent` is honoured and the response names the trace; spans carry
 * tenant, model, pool and token counts and never the prompt, the completion or the key; log
 * lines written during a request carry its trace ID.
 *
 * Pipeline only (docs/testing.md) where the model is `instant`: the traces are Sluice's own. The
 * backend span of a real generation runs on llama.cpp (`sluice-tiny`), and a failed upstream call
 * on the fake OpenAI upstream.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { context, trace } from '@opentelemetry/api';
import { readFile, readdir } from 'node:fs/promises';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { inject } from 'vitest';
import { addInstantModel, addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';
import { installTracing, WORKFLOW_INTERCEPTOR_MODULES, type Tracing } from '../../runtime/tracing.js';
import { bundleControlWorkflows } from '../../workers/control-worker.js';
import { createLogger } from '../../runtime/logger.js';
import { chatWorkflowId } from '../../contracts/ids.js';

const exporter = new InMemorySpanExporter();
let tracing: Tracing;
let stack: TestStack;
let upstream: FakeUpstream;
let key: string;
let tenantId: string;

beforeAll(async () => {
  const installed = await installTracing(null, createLogger('silent'), { spanProcessor: new SimpleSpanProcessor(exporter) });
  if (installed === null) throw new Error('tracing was not installed');
  tracing = installed;
  upstream = await startFakeUpstream({ behaviour: { kind: 'fail', status: 400, message: 'the upstream refused it' } });
  stack = await startTestStack({ tracing });
  await addInstantModel(stack);
  await addModel(stack, {
    id: 'refusing-remote', context_length: 1024, max_output_tokens: 16,
    deployments: [{ id: 'refusing-up', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'gpt-fake' }],
  });
  ({ key, tenantId } = await stack.createTenantKey());
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
  await tracing?.shutdown();
});

async function chat(body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: await res.json() as any };
}

/** A completion's request ID (`chatcmpl-<request id>`). */
const requestIdOf = (completionId: string) => completionId.replace(/^chatcmpl-/, '');

/** The trace ID a response's `traceparent` header names. */
function traceIdOf(headers: Headers): string {
  const tp = headers.get('traceparent');
  expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  return (tp as string).split('-')[1] as string;
}

const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);

/**
 * Waits until the trace holds spans named `names` (the workflow's spans reach the exporter
 * through a sink after its last task, a moment after the response). Fails at the deadline.
 */
async function waitForSpans(traceId: string, names: string[], timeoutMs = 20_000): Promise<ReadableSpan[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const spans = spansOf(traceId);
    const missing = names.filter((n) => !spans.some((s) => s.name === n));
    if (missing.length === 0) return spans;
    if (Date.now() > deadline) throw new Error(`trace ${traceId} has no ${missing.join(', ')}; it has ${spans.map((s) => s.name).join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function one(spans: ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  expect(found.map((s) => s.name), name).toEqual([name]);
  return found[0] as ReadableSpan;
}

const idOf = (s: ReadableSpan) => s.spanContext().spanId;

/** Every string a span holds: name, attribute values, event names and attributes, status message, links. */
function textsOf(s: ReadableSpan): string[] {
  const values = (attrs: Record<string, unknown> | undefined) => Object.entries(attrs ?? {}).flatMap(([k, v]) => [k, Array.isArray(v) ? v.join(' ') : String(v)]);
  return [
    s.name, ...values(s.attributes), s.status.message ?? '',
    ...s.events.flatMap((e) => [e.name, ...values(e.attributes)]),
    ...s.links.flatMap((l) => values(l.attributes)),
    ...values(s.resource.attributes),
  ];
}

const PIPELINE = ['StartActivity:admit', 'RunActivity:admit', 'StartActivity:infer', 'RunActivity:infer', 'StartActivity:complete', 'RunActivity:complete'];

describe('one request, one trace', () => {
  it('HTTP → StartWorkflow → RunWorkflow → each activity → the backend call, with tenant, model, pool and tokens', async () => {
    const prompt = `tracing-prompt-${randomBytes(8).toString('hex')}`;
    const r = await chat({ model: 'instant', messages: [{ role: 'user', content: prompt }] });
    expect(r.status).toBe(200);
    const traceId = traceIdOf(r.headers);
    const spans = await waitForSpans(traceId, ['POST /v1/chat/completions', 'StartWorkflow:chatRequest', 'RunWorkflow:chatRequest', ...PIPELINE, 'backend.generate']);

    const http = one(spans, 'POST /v1/chat/completions');
    expect(http.parentSpanId).toBeUndefined();
    expect(http.attributes).toMatchObject({ 'http.route': '/v1/chat/completions', 'http.status_code': 200, 'sluice.tenant_id': tenantId, 'sluice.model': 'instant' });
    const start = one(spans, 'StartWorkflow:chatRequest');
    expect(start.parentSpanId).toBe(idOf(http));
    const run = one(spans, 'RunWorkflow:chatRequest');
    expect(run.parentSpanId).toBe(idOf(start));
    for (const step of ['admit', 'infer', 'complete']) {
      const scheduled = one(spans, `StartActivity:${step}`);
      expect(scheduled.parentSpanId, step).toBe(idOf(run));
      const ran = one(spans, `RunActivity:${step}`);
      expect(ran.parentSpanId, step).toBe(idOf(scheduled));
      expect(ran.attributes, step).toMatchObject({ 'sluice.attempt': 1, 'sluice.request_id': requestIdOf(r.body.id) });
    }
    expect(one(spans, 'RunActivity:admit').attributes).toMatchObject({ 'sluice.tenant_id': tenantId, 'sluice.model': 'instant' });
    const infer = one(spans, 'RunActivity:infer');
    expect(infer.attributes).toMatchObject({
      'sluice.tenant_id': tenantId, 'sluice.deployment': 'instant-local', 'sluice.pool': 'local', 'sluice.provider': 'instant',
      'gen_ai.usage.input_tokens': r.body.usage.prompt_tokens, 'gen_ai.usage.output_tokens': r.body.usage.completion_tokens,
    });
    expect(one(spans, 'RunActivity:complete').attributes).toMatchObject({
      'sluice.tenant_id': tenantId, 'sluice.model': 'instant', 'sluice.deployment': 'instant-local',
      'gen_ai.usage.input_tokens': r.body.usage.prompt_tokens, 'gen_ai.usage.output_tokens': r.body.usage.completion_tokens,
    });
    const backend = one(spans, 'backend.generate');
    expect(backend.parentSpanId).toBe(idOf(infer));
    expect(backend.attributes).toMatchObject({
      'sluice.deployment': 'instant-local', 'sluice.pool': 'local', 'sluice.provider': 'instant', 'sluice.model': 'instant',
      'gen_ai.usage.input_tokens': r.body.usage.prompt_tokens, 'gen_ai.usage.output_tokens': r.body.usage.completion_tokens,
    });
    // Database queries made for the request are spans of the same trace, under the request's spans.
    const queries = spans.filter((s) => s.attributes['db.system'] === 'postgresql');
    expect(queries.length).toBeGreaterThan(0);
    const ids = new Set(spans.map(idOf));
    for (const q of queries) expect(ids.has(q.parentSpanId as string), q.name).toBe(true);
    // Every span of the request's workflow is in this one trace.
    const workflowId = chatWorkflowId(requestIdOf(r.body.id));
    const ofWorkflow = exporter.getFinishedSpans().filter((s) => s.attributes.temporalWorkflowId === workflowId);
    expect(ofWorkflow.length).toBeGreaterThanOrEqual(4);
    expect(new Set(ofWorkflow.map((s) => s.spanContext().traceId))).toEqual(new Set([traceId]));

    // No span of the process holds the prompt or the key, in any attribute, event or name.
    for (const s of exporter.getFinishedSpans()) {
      for (const text of textsOf(s)) {
        expect(text.includes(prompt), `${s.name} holds the prompt`).toBe(false);
        expect(text.includes(key), `${s.name} holds the API key`).toBe(false);
        expect(text.includes(key.slice(-16)), `${s.name} holds part of the API key`).toBe(false);
      }
    }
  }, 60_000);

  it("an incoming traceparent makes the trace the client's, under the client's span", async () => {
    const clientTrace = randomBytes(16).toString('hex');
    const clientSpan = randomBytes(8).toString('hex');
    const r = await chat({ model: 'instant', messages: [{ role: 'user', content: 'hi' }] }, { traceparent: `00-${clientTrace}-${clientSpan}-01` });
    expect(r.status).toBe(200);
    expect(traceIdOf(r.headers)).toBe(clientTrace);
    const spans = await waitForSpans(clientTrace, ['POST /v1/chat/completions', 'RunWorkflow:chatRequest', 'RunActivity:complete']);
    const http = one(spans, 'POST /v1/chat/completions');
    expect(http.parentSpanId).toBe(clientSpan);
    expect(http.spanContext().spanId).toBe((r.headers.get('traceparent') as string).split('-')[2]);
  }, 60_000);

  it('a malformed traceparent is ignored: a new trace, not an error', async () => {
    const r = await chat({ model: 'instant', messages: [{ role: 'user', content: 'hi' }] }, { traceparent: '00-zz-not-a-trace' });
    expect(r.status).toBe(200);
    const traceId = traceIdOf(r.headers);
    const http = one(await waitForSpans(traceId, ['POST /v1/chat/completions']), 'POST /v1/chat/completions');
    expect(http.parentSpanId).toBeUndefined();
  }, 60_000);

  it('a generation on llama.cpp is a backend span with the tokenizer counts, and holds none of its text', async () => {
    const prompt = `llama-prompt-${randomBytes(8).toString('hex')}`;
    const r = await chat({ model: 'sluice-tiny', messages: [{ role: 'user', content: prompt }], max_tokens: 8, seed: 1, temperature: 0 });
    expect(r.status).toBe(200);
    const traceId = traceIdOf(r.headers);
    const spans = await waitForSpans(traceId, ['RunActivity:infer', 'backend.generate', 'RunWorkflow:chatRequest']);
    const backend = one(spans, 'backend.generate');
    expect(backend.parentSpanId).toBe(idOf(one(spans, 'RunActivity:infer')));
    expect(backend.attributes).toMatchObject({
      'sluice.provider': 'llama-cpp', 'sluice.model': 'sluice-tiny', 'sluice.pool': 'local', 'gen_ai.request.max_tokens': 8,
      'gen_ai.usage.input_tokens': r.body.usage.prompt_tokens, 'gen_ai.usage.output_tokens': r.body.usage.completion_tokens,
      'gen_ai.response.finish_reason': r.body.choices[0].finish_reason,
    });
    const completion = String(r.body.choices[0].message.content ?? '').trim();
    for (const s of spans) {
      for (const text of textsOf(s)) {
        expect(text.includes(prompt), `${s.name} holds the prompt`).toBe(false);
        if (completion.length >= 12) expect(text.includes(completion), `${s.name} holds the completion`).toBe(false);
      }
    }
  }, 90_000);
});

describe('a batch', () => {
  it('is one trace: the create request, the batch workflow, and a span per chunk activity, not per line', async () => {
    const prompt = `batch-prompt-${randomBytes(8).toString('hex')}`;
    const lines = ['a', 'b', 'c'].map((id) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model: 'instant', messages: [{ role: 'user', content: `${prompt}-${id}` }] } }));
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${lines.join('\n')}\n`]), 'input.jsonl');
    const file = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: form });
    expect(file.status).toBe(200);
    const fileId = ((await file.json()) as { id: string }).id;
    const created = await fetch(`${stack.url}/v1/batches`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }),
    });
    expect(created.status).toBe(200);
    const traceId = traceIdOf(created.headers);
    const batchId = ((await created.json()) as { id: string }).id;
    const deadline = Date.now() + 90_000;
    for (;;) {
      const b = (await (await fetch(`${stack.url}/v1/batches/${batchId}`, { headers: { Authorization: `Bearer ${key}` } })).json()) as { status: string };
      if (b.status === 'completed') break;
      if (Date.now() > deadline || ['failed', 'cancelled', 'expired'].includes(b.status)) throw new Error(`batch ended ${b.status}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const spans = await waitForSpans(traceId, ['POST /v1/batches', 'StartWorkflow:batch', 'RunWorkflow:batch', 'RunActivity:inferLines']);
    expect(one(spans, 'StartWorkflow:batch').parentSpanId).toBe(idOf(one(spans, 'POST /v1/batches')));
    const run = one(spans, 'RunWorkflow:batch');
    const chunks = spans.filter((s) => s.name === 'RunActivity:inferLines');
    expect(chunks.length).toBeGreaterThanOrEqual(1);
    expect(chunks.length).toBeLessThanOrEqual(lines.length);
    expect(spans.filter((s) => s.name === 'RunActivity:infer')).toEqual([]);
    const byId = new Map(spans.map((s) => [idOf(s), s]));
    for (const c of chunks) expect(byId.get(c.parentSpanId as string)?.parentSpanId).toBe(idOf(run));
    for (const s of spans) for (const text of textsOf(s)) expect(text.includes(prompt), `${s.name} holds a line's prompt`).toBe(false);
  }, 120_000);
});

describe('logs carry the trace', () => {
  it('log lines written while a request is served, in the API and in an activity, carry its trace_id and their span_id', async () => {
    const before = stack.logs.length;
    const r = await chat({ model: 'refusing-remote', messages: [{ role: 'user', content: 'hi' }] });
    expect(r.status).toBe(400);
    const traceId = traceIdOf(r.headers);
    const spans = await waitForSpans(traceId, ['POST /v1/chat/completions', 'backend.generate']);
    const backend = one(spans, 'backend.generate');
    expect(backend.status.code).toBe(2);
    // The failed upstream call's message (which may quote the upstream) is not on the span.
    expect(textsOf(backend).some((t) => t.includes('the upstream refused it'))).toBe(false);
    const lines = stack.logs.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request failed');
    // One line from the API (the error answered, in the server span), one from the worker (the
    // failure recorded by the audit activity, in its RunActivity span).
    const api = lines.filter((l) => l.method === 'POST');
    const worker = lines.filter((l) => l.method === undefined);
    expect(api.length, JSON.stringify(lines)).toBe(1);
    expect(worker.length, JSON.stringify(lines)).toBe(1);
    expect(api[0]).toMatchObject({ trace_id: traceId, span_id: idOf(one(spans, 'POST /v1/chat/completions')) });
    const ofTrace = await waitForSpans(traceId, ['RunActivity:recordOutcome']);
    expect(worker[0]).toMatchObject({ trace_id: traceId, span_id: idOf(one(ofTrace, 'RunActivity:recordOutcome')) });
  }, 60_000);

  it('outside a trace a line has no trace fields; inside a span it has that span', () => {
    const lines: string[] = [];
    const log = createLogger('info', {}, (l) => lines.push(l));
    log.info('outside');
    const span = trace.getTracer('test').startSpan('inside');
    context.with(trace.setSpan(context.active(), span), () => log.info('inside'));
    span.end();
    const [outside, inside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(outside).not.toHaveProperty('trace_id');
    expect(inside).toMatchObject({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
  });
});

describe('replay', () => {
  it("a traced request's history replays on workers without tracing (tracing can be turned off with workflows running)", async () => {
    const r = await chat({ model: 'instant', messages: [{ role: 'user', content: 'replay me' }] });
    expect(r.status).toBe(200);
    const workflowId = chatWorkflowId(requestIdOf(r.body.id));
    await settled(stack, r.body);
    const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, workflowId);
  }, 60_000);

  it('the released histories (recorded without tracing) replay on traced workers (tracing can be turned on with workflows running)', async () => {
    const { code } = await bundleControlWorkflows({ workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES });
    const fixtures = new URL('../fixtures/histories/', import.meta.url);
    const files = (await readdir(fixtures)).filter((f) => f.endsWith('.pb')).sort();
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) {
      const history = temporal.api.history.v1.History.decode(await readFile(new URL(file, fixtures)));
      await expect(
        Worker.runReplayHistory({ workflowBundle: { code }, interceptors: tracing.workerInterceptors, sinks: tracing.sinks }, history, file),
        file,
      ).resolves.toBeUndefined();
    }
  }, 120_000);
});
