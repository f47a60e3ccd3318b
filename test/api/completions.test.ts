/**
 * `POST /v1/completions` (legacy text completions) with the official `openai` client on the real
 * stack: its own `completionRequest` workflow through the request pipeline, billed (the usage row
 * equals the response's usage) and audited; fields honoured or refused with a 400 naming them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { addModel, startTestStack, type TestStack } from '../support/stack.js';
import { completionWorkflowId } from '../../contracts/ids.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-openai-upstream.js';

let stack: TestStack;
let client: OpenAI;
let key: string;
let upstream: FakeUpstream;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  stack = await startTestStack();
  await addModel(stack, {
    id: 'remote-only', context_length: 1024, max_output_tokens: 64,
    deployments: [{ id: 'remote-only-up', provider: 'openai-compatible', pool: 'local', base_url: upstream.url, upstream_model: 'gpt-fake-instruct' }],
  });
  ({ key } = await stack.createTenantKey());
  client = new OpenAI({ apiKey: key, baseURL: `${stack.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

const requestIdOf = (id: string) => id.replace(/^cmpl-/, '');

describe('legacy completions', () => {
  it('answers a text_completion in its own workflow, billed once and audited', async () => {
    const completion = await client.completions.create({ model: 'sluice-tiny', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.id).toMatch(/^cmpl-cmpl_/);
    expect(completion.choices).toHaveLength(1);
    expect(typeof completion.choices[0]?.text).toBe('string');
    expect(['stop', 'length']).toContain(completion.choices[0]?.finish_reason);
    const usage = completion.usage;
    expect(usage?.prompt_tokens).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeLessThanOrEqual(8);

    const requestId = requestIdOf(completion.id);
    const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestId).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ input_tokens: usage?.prompt_tokens, output_tokens: usage?.completion_tokens });
    const audit = await stack.db.selectFrom('audit_log').select('action').where('target', '=', `request:${requestId}`).execute();
    expect(audit.map((a) => a.action)).toEqual(['request.succeeded']);
    const described = await stack.client.workflow.getHandle(completionWorkflowId(requestId)).describe();
    expect(described.type).toBe('completionRequest');
  });

  it('continues the raw prompt: no chat template, so fewer prompt tokens than the same text as a chat message', async () => {
    const prompt = 'The quick brown fox';
    const text = await client.completions.create({ model: 'sluice-tiny', prompt, max_tokens: 1, temperature: 0 });
    const chat = await client.chat.completions.create({ model: 'sluice-tiny', messages: [{ role: 'user', content: prompt }], max_tokens: 1, temperature: 0 });
    expect(text.usage?.prompt_tokens).toBeLessThan(chat.usage?.prompt_tokens ?? 0);
  });

  it('echo prepends the prompt; a prompt array of one string and stop are accepted', async () => {
    const prompt = 'Echo me';
    const completion = await client.completions.create({ model: 'sluice-tiny', prompt: [prompt], echo: true, stop: ['\n\n'], max_tokens: 4, temperature: 0, seed: 2 });
    expect(completion.choices[0]?.text.startsWith(prompt)).toBe(true);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['suffix', { suffix: ' and they lived' }, 'suffix'],
    ['token arrays', { prompt: [1, 2, 3] }, 'prompt'],
    ['an unknown field', { top_k: 2 }, 'top_k'],
    ['logprobs', { logprobs: 1 }, 'logprobs'],
    ['n: 2', { n: 2 }, 'n'],
  ])('refuses %s with a 400 naming it', async (_name, extra, param) => {
    const res = await fetch(`${stack.url}/v1/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'sluice-tiny', prompt: 'x', max_tokens: 2, ...extra }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { param: string; type: string } };
    expect(body.error).toMatchObject({ param, type: 'invalid_request_error' });
  });

  it("passes through to an openai-compatible upstream's /completions, billed with the upstream's usage", async () => {
    const completion = await client.completions.create({ model: 'remote-only', prompt: 'Once upon a time there was', max_tokens: 3, temperature: 0.5, top_p: 0.9, stop: ['\n'], seed: 7, presence_penalty: 0.5 });
    const sent = upstream.requests.filter((r) => r.path === '/v1/completions').at(-1);
    expect(sent?.body).toEqual({ model: 'gpt-fake-instruct', prompt: 'Once upon a time there was', max_tokens: 3, temperature: 0.5, top_p: 0.9, stop: ['\n'], seed: 7, presence_penalty: 0.5 });
    expect(completion.object).toBe('text_completion');
    // The fake answers its words cut at max_tokens, one token per word.
    expect(completion.choices[0]?.text.split(' ')).toHaveLength(3);
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.usage).toEqual({ prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 });
    const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', requestIdOf(completion.id)).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ deployment_id: 'remote-only-up', input_tokens: 6, output_tokens: 3 });
  });
});
