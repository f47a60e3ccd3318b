/**
 * Retries, the shared circuit breaker and the fallback chain, with an OpenAI-protocol upstream
 * (the one remote, paid part, played by a local fake) in front of the real llama.cpp deployment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';

let stack: TestStack;
let client: OpenAI;
let flaky: FakeUpstream;
let broken: FakeUpstream;
/** Answers 200 with usage but no choices: it spends (and would charge) tokens, yet fails the call. */
let wasteful: FakeUpstream;

const upstream = (id: string, url: string, priority = 0) => ({
  id, provider: 'openai-compatible', pool: 'local', base_url: url, upstream_model: 'gpt-fake', priority,
  price: { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 2_000_000 },
});
const local = (id: string, priority: number) => ({ id, provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf', priority });

beforeAll(async () => {
  flaky = await startFakeUpstream({ behaviour: { kind: 'fail-then-succeed', failures: 2, fail: { status: 503 } } });
  broken = await startFakeUpstream({ behaviour: { kind: 'fail', status: 500 } });
  wasteful = await startFakeUpstream({ behaviour: { kind: 'succeed', choices: 'omit', usage: { promptTokens: 7, completionTokens: 3 } } });
  stack = await startTestStack({ breaker: { failureThreshold: 2, windowMs: 60_000, cooldownMs: 60_000, probeTimeoutMs: 60_000 } });
  await addModel(stack, { id: 'flaky', context_length: 1024, max_output_tokens: 64, deployments: [upstream('flaky-upstream', flaky.url)] });
  await addModel(stack, { id: 'broken', context_length: 1024, max_output_tokens: 64, deployments: [upstream('broken-upstream', broken.url), local('broken-local', 1)] });
  await addModel(stack, { id: 'dead', context_length: 1024, max_output_tokens: 64, deployments: [upstream('dead-upstream', broken.url)] });
  await addModel(stack, { id: 'wasteful', context_length: 1024, max_output_tokens: 64, deployments: [upstream('wasteful-upstream', wasteful.url), local('wasteful-local', 1)] });
  const { key } = await stack.createTenantKey();
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await flaky?.close();
  await broken?.close();
  await wasteful?.close();
});

const ask = (model: string) => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 5 });

/** The usage rows of a request, once its workflow has settled it (a sync answer leaves first). */
async function usageOf(id: string) {
  await settled(stack, id);
  return stack.db.selectFrom('usage').selectAll().where('request_id', '=', id.replace('chatcmpl-', '')).execute();
}

describe('retries', () => {
  it('an inference that fails twice then succeeds is billed once', async () => {
    const completion = await ask('flaky');
    expect(flaky.calls).toBe(3);
    const rows = await usageOf(completion.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ deployment_id: 'flaky-upstream', input_tokens: completion.usage!.prompt_tokens, output_tokens: completion.usage!.completion_tokens });
    // 1 USD / 1M input and 2 USD / 1M output.
    expect(rows[0]?.cost_micros).toBe(completion.usage!.prompt_tokens * 1 + completion.usage!.completion_tokens * 2);
  });
});

describe('circuit breaker and fallback', () => {
  it('falls back to the next deployment while the first keeps failing, then skips it once its circuit opens', async () => {
    const first = await ask('broken');
    expect(broken.calls).toBe(3); // three attempts on the upstream, then the fallback
    expect((await usageOf(first.id))[0]?.deployment_id).toBe('broken-local');

    const second = await ask('broken');
    expect(broken.calls).toBe(6);
    expect((await usageOf(second.id))[0]?.deployment_id).toBe('broken-local');
    const circuit = await stack.db.selectFrom('circuit_state').selectAll().where('deployment_id', '=', 'broken-upstream').executeTakeFirstOrThrow();
    expect(circuit.state).toBe('open');

    const third = await ask('broken');
    expect(broken.calls).toBe(6); // the open circuit is not tried
    expect((await usageOf(third.id))[0]?.deployment_id).toBe('broken-local');
    expect(await usageOf(first.id)).toHaveLength(1);
  });

  it('answers 503 when no deployment can serve, and bills nothing', async () => {
    const err = (await ask('dead').catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(503);
    expect(err.code).toBe('model_unavailable');
    expect(err.headers?.get('retry-after')).toBe('5');
    const failed = await stack.db.selectFrom('requests').selectAll().where('model', '=', 'dead').execute();
    expect(failed.length).toBeGreaterThan(0);
    for (const r of failed) {
      expect(r.status).toBe('failed');
      expect(await usageOf(r.id)).toHaveLength(0);
      const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', r.id).executeTakeFirstOrThrow();
      expect(reservation.status).toBe('released');
    }
  });
});

describe('usage consumed by failed attempts', () => {
  it('records the tokens every failed attempt of a fallen-back deployment spent, unbilled, and bills only the answer', async () => {
    const completion = await ask('wasteful');
    expect(wasteful.calls).toBe(3); // three attempts, each spending 7 + 3 tokens, then the fallback
    const rows = await usageOf(completion.id);
    expect(rows.map((r) => [r.step, r.deployment_id, r.billable]).sort()).toEqual([
      ['infer', 'wasteful-local', true],
      ['infer:failed:wasteful-upstream', 'wasteful-upstream', false],
    ]);
    const spent = rows.find((r) => !r.billable);
    // All three attempts, priced at the deployment's price (1 USD / 1M in, 2 USD / 1M out) but not billable.
    expect(spent).toMatchObject({ input_tokens: 21, output_tokens: 9, cost_micros: 21 * 1 + 9 * 2 });
    const billed = rows.find((r) => r.billable);
    expect(billed).toMatchObject({ input_tokens: completion.usage!.prompt_tokens, output_tokens: completion.usage!.completion_tokens });
    // Tenant spend counts only the billable row.
    const spend = await stack.db.selectFrom('tenant_spend').select(['spent_micros']).where('tenant_id', '=', spent!.tenant_id).execute();
    const billedTotal = await stack.db.selectFrom('usage').select((eb) => eb.fn.sum<number>('cost_micros').as('s')).where('tenant_id', '=', spent!.tenant_id).where('billable', '=', true).executeTakeFirstOrThrow();
    expect(spend.reduce((n, s) => n + s.spent_micros, 0)).toBe(Number(billedTotal.s));
  });
});
