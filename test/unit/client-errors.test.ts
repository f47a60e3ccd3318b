/** What clients may read of a failure: the one normaliser, and webhook delivery errors. */
import { describe, expect, it } from 'vitest';
import { clientError, clientFailure, clientFailureMessage } from '../../domain/client-errors.js';
import { ERROR_STATUS, FAILURES } from '../../contracts/failures.js';
import { deliveryErrorMessage } from '../../activities/webhooks.js';
import { AddressRefusedError } from '../../activities/net/address-guard.js';
import { BackendError } from '../../activities/backends/types.js';
import { MAX_COMPLETION_BYTES, checkCompletionSize, createBackendRegistry } from '../../activities/backends/registry.js';
import type { DeploymentTarget } from '../../contracts/chat.js';

const INTERNAL = 'upstream refused: base_url host db.internal resolves to 10.0.0.5, in private 10.0.0.0/8';

describe('clientFailureMessage', () => {
  it.each([
    ['NoDeploymentAvailable', 'model_unavailable', `no deployment of m could serve the request: ${INTERNAL}`],
    ['BadRequest', 'upstream_bad_request', INTERNAL],
    ['ContextLengthExceeded', 'context_length_exceeded', 'upstream This model (at 10.0.0.5) has a context of 4096'],
    ['BadRequest', 'completion_too_large', 'completion of 3000000 bytes exceeds the limit'],
    ['InternalError', null, 'duplicate key value violates unique constraint "usage_pkey" on host pg-1.internal'],
    ['UpstreamUnavailable', null, 'deployment d: SLUICE_UPSTREAM_KEY_OPENAI is not set on this worker'],
    [null, null, 'connect ECONNREFUSED 10.0.0.5:5432'],
  ])('replaces the message of %s / %s with a fixed text', (type, code, raw) => {
    const safe = clientFailureMessage(type, code, raw);
    expect(safe).not.toMatch(/10\.0\.0\.5|internal|SLUICE_|pg-1|usage_pkey/);
    expect(safe.length).toBeGreaterThan(10);
  });

  it('keeps the messages Sluice writes for the caller at a decision', () => {
    expect(clientFailureMessage('QuotaExceeded', 'rate_limit_exceeded', 'Rate limit of 10 requests per minute reached')).toBe('Rate limit of 10 requests per minute reached');
    expect(clientFailureMessage('PermissionDenied', 'model_not_allowed', 'This key may not use model m')).toBe('This key may not use model m');
    expect(clientFailureMessage('BadRequest', null, 'x'.repeat(2000)).length).toBeLessThanOrEqual(501);
  });

  it('normalises a stored error and keeps its type and code', () => {
    expect(clientFailure({ type: 'BadRequest', code: 'upstream_bad_request', message: INTERNAL })).toEqual({
      type: 'BadRequest', code: 'upstream_bad_request', message: clientFailureMessage('BadRequest', 'upstream_bad_request', INTERNAL),
    });
  });
});

describe('deliveryErrorMessage', () => {
  it('never names what a host resolved to or the peer address', () => {
    expect(deliveryErrorMessage(new AddressRefusedError('hooks.internal resolves to 10.0.0.5 (private 10.0.0.0/8)'))).toBe(
      'address refused: the host resolves to a loopback, private or reserved address',
    );
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:443'), { code: 'ECONNREFUSED' });
    expect(deliveryErrorMessage(refused)).toBe('connection failed (ECONNREFUSED)');
    expect(deliveryErrorMessage(new Error('something 10.0.0.5'))).toBe('connection failed');
    expect(deliveryErrorMessage(new Error('no answer within 10000 ms'))).toBe('no answer within 10000 ms');
  });
});

describe('backend registry', () => {
  const instant: DeploymentTarget = {
    id: 'i', model: 'm', pool: 'p', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority: 0,
  };
  const options = { dataDir: '/nonexistent', slots: 1, threads: 1, contextSize: 64, gpu: false as const, upstreamKeys: {} };
  const request = { messages: [{ role: 'user' as const, content: 'hi' }], params: { maxTokens: 2, temperature: 0, topP: null, seed: null, stop: null }, signal: new AbortController().signal };

  it('serves the instant backend only when enabled', async () => {
    const off = createBackendRegistry(options);
    await expect(off.get(instant)).rejects.toMatchObject({ kind: 'bad_request' });
    const on = createBackendRegistry({ ...options, enableInstantBackend: true });
    expect((await (await on.get(instant)).generate(request)).content).toBe('ok');
    await Promise.all([off.close(), on.close()]);
  });

  it('fails a completion over the payload threshold as too_large, reporting what it spent', () => {
    const big = { content: 'é'.repeat(MAX_COMPLETION_BYTES / 2 + 1), finishReason: 'stop' as const, promptTokens: 3, completionTokens: 9 };
    let thrown: unknown;
    try {
      checkCompletionSize(big);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(BackendError);
    expect(thrown).toMatchObject({ kind: 'too_large', consumed: { promptTokens: 3, completionTokens: 9 } });
    const small = { ...big, content: 'fine' };
    expect(checkCompletionSize(small)).toBe(small);
  });
});

describe('the closed failure table', () => {
  it('gives each failure type the status of its OpenAI error type, and any other type the internal error', () => {
    for (const [type, answer] of Object.entries(FAILURES)) {
      expect(clientError(type, null, 'm')).toMatchObject({ status: ERROR_STATUS[answer.errorType], type: answer.errorType });
    }
    for (const type of ['SomethingNew', 'toString', '__proto__', null]) {
      expect(clientError(type, null, 'raw text')).toEqual({ status: 500, type: 'server_error', message: FAILURES.InternalError.message, code: null });
    }
    expect(clientError('QuotaExceeded', 'rate_limit_exceeded', 'slow down')).toEqual({ status: 429, type: 'rate_limit_error', message: 'slow down', code: 'rate_limit_exceeded' });
  });
});
