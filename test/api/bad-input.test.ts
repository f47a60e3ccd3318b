/**
 * Every bad input gets the right status and OpenAI's error shape; none starts a workflow or bills
 * anything, and the server keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let tenantId: string;
let key: string;
let revokedKey: string;

beforeAll(async () => {
  stack = await startTestStack();
  ({ tenantId, key } = await stack.createTenantKey());
  const r = await stack.createTenantKey();
  revokedKey = r.key;
  const res = await stack.admin('POST', `/v1/admin/keys/${r.keyId}/revoke`);
  expect(res.status).toBe(200);
});
afterAll(async () => {
  await stack?.stop();
});

async function post(body: string, headers: Record<string, string> = {}, auth: string | null = key) {
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(auth === null ? {} : { Authorization: `Bearer ${auth}` }), ...headers },
    body,
  });
  const json: any = await res.json();
  return { status: res.status, json, headers: res.headers };
}

function expectOpenAIError(json: any) {
  expect(Object.keys(json)).toEqual(['error']);
  expect(typeof json.error.message).toBe('string');
  expect(json.error.message.length).toBeGreaterThan(0);
  expect(json.error).toHaveProperty('type');
  expect(json.error).toHaveProperty('param');
  expect(json.error).toHaveProperty('code');
}

const msg = [{ role: 'user', content: 'hi' }];
const cases: Array<[string, string, number, string | null]> = [
  ['malformed JSON', '{"model": "sluice-tiny", "messages": [', 400, null],
  ['a body that is not an object', '[1,2,3]', 400, null],
  ['missing messages', JSON.stringify({ model: 'sluice-tiny' }), 400, 'messages'],
  ['empty messages', JSON.stringify({ model: 'sluice-tiny', messages: [] }), 400, 'messages'],
  ['unknown role', JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages[0].role'],
  ['non-string content', JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 42 }] }), 400, 'messages[0].content'],
  ['missing model', JSON.stringify({ messages: msg }), 400, 'model'],
  ['unknown model', JSON.stringify({ model: 'no-such-model', messages: msg }), 404, 'model'],
  ['max_tokens 0', JSON.stringify({ model: 'sluice-tiny', messages: msg, max_tokens: 0 }), 400, 'max_tokens'],
  ['max_tokens negative', JSON.stringify({ model: 'sluice-tiny', messages: msg, max_tokens: -5 }), 400, 'max_tokens'],
  ['max_tokens over the model limit', JSON.stringify({ model: 'sluice-tiny', messages: msg, max_tokens: 100_000 }), 400, 'max_tokens'],
  ['a prompt far over the context', JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'word '.repeat(20_000) }] }), 400, 'messages'],
  ['stream not a boolean', JSON.stringify({ model: 'sluice-tiny', messages: msg, stream: 'yes' }), 400, 'stream'],
  ['stream_options without stream', JSON.stringify({ model: 'sluice-tiny', messages: msg, stream_options: { include_usage: true } }), 400, 'stream_options'],
];

describe('bad input', () => {
  for (const [name, body, status, param] of cases) {
    it(`${name} → ${status}`, async () => {
      const r = await post(body);
      expect(r.status).toBe(status);
      expectOpenAIError(r.json);
      if (param !== null) expect(r.json.error.param).toBe(param);
    });
  }

  it('a body over the size limit → 413', async () => {
    const r = await post(JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] }));
    expect(r.status).toBe(413);
    expectOpenAIError(r.json);
  });

  it('a body nested deeper than the validators can walk (a tool schema of 4,000 levels) → 400 nesting_too_deep, not a 500', async () => {
    const parameters: Record<string, unknown> = { type: 'object', properties: {} };
    let at = parameters;
    for (let i = 0; i < 2000; i++) {
      const next = { type: 'object', properties: {} };
      (at.properties as Record<string, unknown>).a = next;
      at = next;
    }
    const r = await post(JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', parameters } }] }));
    expect(r.status).toBe(400);
    expectOpenAIError(r.json);
    expect(r.json.error.code).toBe('nesting_too_deep');
  });

  it('a missing, malformed, unknown or revoked key → 401', async () => {
    const body = JSON.stringify({ model: 'sluice-tiny', messages: msg });
    for (const auth of [null, 'nonsense', `sk-${'A'.repeat(43)}`, revokedKey, "x' OR pg_sleep(5) IS NOT NULL--"]) {
      const started = performance.now();
      const r = await post(body, {}, auth);
      expect(r.status).toBe(401);
      expectOpenAIError(r.json);
      expect(r.json.error.code).toBe('invalid_api_key');
      expect(performance.now() - started).toBeLessThan(2000);
    }
  });

  it('an Idempotency-Key that is not visible ASCII → 400', async () => {
    const r = await post(JSON.stringify({ model: 'sluice-tiny', messages: msg }), { 'Idempotency-Key': 'x'.repeat(300) });
    expect(r.status).toBe(400);
  });

  it('none of these started a workflow, wrote a request or billed anything', async () => {
    await new Promise((r) => setTimeout(r, 1500)); // visibility is eventually consistent
    let workflows = 0;
    for await (const _ of stack.client.workflow.list({ query: `SluiceTenant="${tenantId}"` })) workflows += 1;
    expect(workflows).toBe(0);
    const requests = await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenantId).execute();
    expect(requests).toHaveLength(0);
    const usage = await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', tenantId).execute();
    expect(usage).toHaveLength(0);
  });

  it('a prompt the tokenizer finds over the context fails the request with 400, releases its reservation and bills nothing', async () => {
    // Random characters defeat the word pieces: about one token per byte, over the 1024-token context,
    // but under the API's lower bound, so only the worker's tokenizer can tell.
    let seed = 7;
    const noise = Array.from({ length: 3000 }, () => String.fromCharCode(33 + ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 90))).join('');
    const r = await post(JSON.stringify({ model: 'sluice-tiny', messages: [{ role: 'user', content: noise }], max_tokens: 8 }));
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('context_length_exceeded');
    const rows = await stack.db.selectFrom('requests').selectAll().where('tenant_id', '=', tenantId).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]?.status).toBe('failed');
    const reservation = await stack.db.selectFrom('reservations').selectAll().where('request_id', '=', rows[0]!.id).executeTakeFirstOrThrow();
    expect(reservation.status).toBe('released');
    expect(await stack.db.selectFrom('usage').select('id').where('tenant_id', '=', tenantId).execute()).toHaveLength(0);
  });

  it('keeps serving after all of that', async () => {
    const r = await post(JSON.stringify({ model: 'sluice-tiny', messages: msg, max_tokens: 4 }));
    expect(r.status).toBe(200);
    expect(r.json.object).toBe('chat.completion');
  });

  it('unknown routes answer 404 in the same shape', async () => {
    const res = await fetch(`${stack.url}/v1/nothing-here`, { headers: { Authorization: `Bearer ${key}` } });
    expect(res.status).toBe(404);
    expectOpenAIError(await res.json());
  });
});
