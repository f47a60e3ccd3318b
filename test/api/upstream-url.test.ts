/**
 * Upstream base URLs on private, loopback and link-local addresses: refused by the admin API (400
 * naming the deployment's `base_url`) and, for a deployment that reached the database some other
 * way, by the inference worker before it calls the upstream (a non-retryable bad request).
 * The test stack allows only 127.0.0.1 (its fake upstreams).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModel } from '../../db/repositories/models.js';
import { chatWorkflowId } from '../../contracts/ids.js';
import { startTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;

const upstreamModel = (id: string, baseUrl: string) => ({
  id, context_length: 1024, max_output_tokens: 16,
  deployments: [{ id: `${id}-up`, provider: 'openai-compatible', pool: 'local', base_url: baseUrl, upstream_model: 'gpt-x' }],
});

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('POST /v1/admin/models', () => {
  it.each([
    ['http://169.254.169.254/latest/meta-data', 'link-local'],
    ['http://10.0.0.5:8000/v1', 'private'],
    ['http://[::1]:8000/v1', 'loopback'],
    ['http://[fd00::5]/v1', 'unique local'],
  ])('refuses %s with 400 on deployments[i].base_url', async (url, range) => {
    const body = upstreamModel(`m-${Math.random().toString(36).slice(2, 8)}`, url);
    body.deployments.unshift({ id: `${body.id}-ok`, provider: 'openai-compatible', pool: 'local', base_url: 'http://127.0.0.1:9/v1', upstream_model: 'gpt-x' });
    const r = await stack.admin('POST', '/v1/admin/models', body);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param: 'deployments[1].base_url', code: 'upstream_not_allowed' });
    expect(r.body.error.message).toContain(range);
    const models = await stack.admin('GET', '/v1/admin/models');
    expect(models.body.data.map((m: { id: string }) => m.id)).not.toContain(body.id);
  });

  it('accepts a host the configuration allows (127.0.0.1 in the test stack)', async () => {
    const r = await stack.admin('POST', '/v1/admin/models', upstreamModel('allowed-loopback', 'http://127.0.0.1:9/v1'));
    expect(r.status).toBe(201);
  });
});

describe('the inference worker', () => {
  it('refuses a private upstream that bypassed the API, without retrying and without calling it', async () => {
    await createModel(stack.db, {
      id: 'sneaky', ownedBy: 'sluice', contextLength: 1024, maxOutputTokens: 16,
      deployments: [{
        id: 'sneaky-up', pool: 'local', provider: 'openai-compatible', ggufPath: null, baseUrl: 'http://169.254.169.254/v1', apiKeyRef: null,
        upstreamModel: 'gpt-x', weight: 1, priority: 0, inputMicrosPerMtok: 0, outputMicrosPerMtok: 0,
      }],
    }, new Date());
    const { key, tenantId } = await stack.createTenantKey();
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'sneaky', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
    });
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(res.status).toBe(400);
    expect(body.error.code).toBe('upstream_bad_request');
    // The tenant is not told where the deployment points; the log is.
    expect(body.error.message).not.toContain('169.254');
    expect(stack.logs.some((l) => l.includes('169.254.169.254') && l.includes('request failed'))).toBe(true);
    // No retries: the history's one infer activity started once (a started event records the
    // attempt that ended it).
    const request = await stack.db.selectFrom('requests').select('id').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
    const history = await stack.client.workflow.getHandle(chatWorkflowId(request.id)).fetchHistory();
    const events = history.events ?? [];
    const inferScheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'infer');
    expect(inferScheduled).toHaveLength(1);
    const started = events.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes?.attempt);
    expect(started).toEqual([1]);
  });
});
