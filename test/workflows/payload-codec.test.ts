/**
 * Payload encryption at rest in Temporal: with `SLUICE_PAYLOAD_KEY` set, a chat request works end
 * to end, and its history read by a client without the codec holds ciphertext only (encoding
 * `binary/encrypted`, no prompt or completion text); the codec decrypts it back. Plus the codec's
 * own properties: key rotation, tampering, unknown keys, and plain payloads refused (also a
 * workflow started in plain JSON by a client without the key: the worker does not run it).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { ENCRYPTED_ENCODING, KEY_ID_METADATA, PayloadDecryptionError, createEncryptionCodec } from '../../runtime/payload-codec.js';
import { addModel, settled, startTestStack, type TestStack } from '../support/stack.js';
import { CONTROL_TASK_QUEUE } from '../../contracts/ids.js';

const KEY = randomBytes(32).toString('base64');
const OLD_KEY = randomBytes(32).toString('base64');
const PROMPT = `a confidential prompt ${randomBytes(4).toString('hex')}`;

const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');
const jsonPayload = (value: unknown): Payload => ({
  metadata: { encoding: new TextEncoder().encode('json/plain') },
  data: new TextEncoder().encode(JSON.stringify(value)),
});

/** Every payload object anywhere in a history (anything with `metadata` and `data`). */
function payloadsIn(node: unknown, out: Payload[] = []): Payload[] {
  if (node === null || typeof node !== 'object' || node instanceof Uint8Array) return out;
  const o = node as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'data' in o) out.push(o as Payload);
  for (const v of Object.values(o)) payloadsIn(v, out);
  return out;
}

describe('the encryption codec', () => {
  it('round-trips a payload, metadata included, and stores neither in clear', async () => {
    const codec = createEncryptionCodec({ current: KEY });
    const [enc] = await codec.encode([jsonPayload({ prompt: PROMPT })]);
    expect(text(enc?.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(enc?.data)).not.toContain(PROMPT);
    expect(text(enc?.data)).not.toContain('json/plain');
    const [dec] = await codec.decode([enc as Payload]);
    expect(text(dec?.metadata?.encoding)).toBe('json/plain');
    expect(JSON.parse(text(dec?.data))).toEqual({ prompt: PROMPT });
  });

  it('uses a fresh IV per payload', async () => {
    const codec = createEncryptionCodec({ current: KEY });
    const [a, b] = await codec.encode([jsonPayload('same'), jsonPayload('same')]);
    expect(Buffer.from(a?.data ?? []).equals(Buffer.from(b?.data ?? []))).toBe(false);
  });

  it('rotates: the previous key still decrypts, the new one encrypts; a dropped key cannot decrypt', async () => {
    const old = createEncryptionCodec({ current: OLD_KEY });
    const [written] = await old.encode([jsonPayload('before rotation')]);
    const rotated = createEncryptionCodec({ current: KEY, previous: OLD_KEY });
    expect(JSON.parse(text((await rotated.decode([written as Payload]))[0]?.data))).toBe('before rotation');
    const [fresh] = await rotated.encode([jsonPayload('after')]);
    expect(text(fresh?.metadata?.[KEY_ID_METADATA])).not.toBe(text(written?.metadata?.[KEY_ID_METADATA]));
    await expect(createEncryptionCodec({ current: KEY }).decode([written as Payload])).rejects.toBeInstanceOf(PayloadDecryptionError);
  });

  it('refuses tampered data and a swapped key ID', async () => {
    const codec = createEncryptionCodec({ current: KEY, previous: OLD_KEY });
    const [enc] = await codec.encode([jsonPayload('x')]);
    const flipped = Buffer.from(enc?.data ?? []);
    flipped[20] = (flipped[20] ?? 0) ^ 1;
    await expect(codec.decode([{ ...enc, data: new Uint8Array(flipped) }])).rejects.toBeInstanceOf(PayloadDecryptionError);
    const otherId = (await createEncryptionCodec({ current: OLD_KEY }).encode([jsonPayload('y')]))[0]?.metadata?.[KEY_ID_METADATA];
    await expect(codec.decode([{ ...enc, metadata: { ...enc?.metadata, [KEY_ID_METADATA]: otherId as Uint8Array } }])).rejects.toBeInstanceOf(PayloadDecryptionError);
  });

  it('refuses plain payloads: nothing unencrypted reaches a keyed worker', async () => {
    const codec = createEncryptionCodec({ current: KEY, previous: OLD_KEY });
    await expect(codec.decode([jsonPayload({ a: 1 })])).rejects.toThrow(/not encrypted but SLUICE_PAYLOAD_KEY is set/);
    await expect(codec.decode([{ data: new TextEncoder().encode('{}') }])).rejects.toBeInstanceOf(PayloadDecryptionError);
    const [enc] = await codec.encode([jsonPayload('ok')]);
    // One plain payload among encrypted ones fails the whole batch.
    await expect(codec.decode([enc as Payload, jsonPayload('injected')])).rejects.toBeInstanceOf(PayloadDecryptionError);
  });
});

describe('with SLUICE_PAYLOAD_KEY on the stack', () => {
  // Pipeline only (docs/testing.md): the codec on Temporal payloads; the instant backend's
  // completion is the text that must not appear in clear.
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({ env: { SLUICE_PAYLOAD_KEY: KEY } });
    await addModel(stack, {
      id: 'instant', context_length: 1024, max_output_tokens: 16,
      deployments: [{ id: 'instant-local', provider: 'instant', pool: 'local' }],
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('serves a chat request, and Temporal holds only ciphertext of its prompt and completion', async () => {
    const { key } = await stack.createTenantKey();
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: PROMPT }], max_tokens: 4 }),
    });
    expect(res.status).toBe(200);
    const completion = (await res.json()) as { id: string; choices: Array<{ message: { content: string } }> };
    const answer = completion.choices[0]?.message.content ?? '';
    expect(answer.length).toBeGreaterThan(0);
    await settled(stack, completion);

    // A client without the codec, as the Temporal server, its database or its UI sees the data.
    const raw = new Client({ connection: stack.client.connection, namespace: stack.config.temporalNamespace });
    const history = await raw.workflow.getHandle(`chat-${completion.id.replace('chatcmpl-', '')}`).fetchHistory();
    const payloads = payloadsIn(history);
    const encrypted = payloads.filter((p) => text(p.metadata?.encoding) === ENCRYPTED_ENCODING);
    expect(encrypted.length).toBeGreaterThanOrEqual(3); // workflow input, infer input and result, workflow result
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    expect(text(started?.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
    const everything = JSON.stringify(history, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : v));
    expect(everything).not.toContain(PROMPT);
    // Only search attributes (tenant, model, pool, status) stay readable: they are indexed, not encoded.
    const plain = payloads.filter((p) => text(p.metadata?.encoding) !== ENCRYPTED_ENCODING).map((p) => text(p.data));
    expect(plain.join('\n')).not.toContain(answer);

    // The configured codec recovers both.
    const decoded = await createEncryptionCodec({ current: KEY }).decode(encrypted);
    const clear = decoded.map((p) => text(p.data)).join('\n');
    expect(clear).toContain(PROMPT);
    expect(clear).toContain(JSON.stringify(answer).slice(1, -1));
  });

  it('does not run a workflow whose input a client without the key wrote in plain JSON', async () => {
    const raw = new Client({ connection: stack.client.connection, namespace: stack.config.temporalNamespace });
    const handle = await raw.workflow.start('chatRequest', {
      taskQueue: CONTROL_TASK_QUEUE, workflowId: `plaintext-${randomBytes(4).toString('hex')}`, args: [{ injected: true }],
    });
    try {
      // The control worker fails its workflow task, naming why; the workflow never gets its input.
      const deadline = Date.now() + 30_000;
      let failure: string | null = null;
      while (failure === null && Date.now() < deadline) {
        const history = await handle.fetchHistory();
        const failed = history.events?.find((e) => e.workflowTaskFailedEventAttributes);
        failure = failed?.workflowTaskFailedEventAttributes?.failure?.message ?? null;
        if (failure === null) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(failure).toMatch(/not encrypted but SLUICE_PAYLOAD_KEY is set/);
      const history = await handle.fetchHistory();
      expect(history.events?.some((e) => e.workflowTaskCompletedEventAttributes || e.activityTaskScheduledEventAttributes)).toBe(false);
    } finally {
      await handle.terminate('test cleanup');
    }
  });
});
