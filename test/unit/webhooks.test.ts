/** Webhook signing against the Standard Webhooks test vector, backoff bounds and URL checks (no servers). */
import { describe, expect, it } from 'vitest';
import { newWebhookSecret, signWebhook, signatureHeader } from '../../activities/webhook-signing.js';
import { retryDelayMs, webhookEventId, webhookUrlProblem } from '../../activities/webhooks.js';

// The specification's published vector (standard-webhooks/standard-webhooks, spec and libraries' tests).
const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', id: 'msg_p5jXN8AQM9LWM0D4loKWxJek', ts: 1614265330, body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};

describe('webhook signing', () => {
  it('reproduces the Standard Webhooks reference signature', () => {
    expect(signWebhook(VECTOR.secret, VECTOR.id, VECTOR.ts, VECTOR.body)).toBe(VECTOR.signature);
  });

  it('signs with every secret of a rotation, space-separated, newest first', () => {
    const other = newWebhookSecret();
    const header = signatureHeader([VECTOR.secret, other], VECTOR.id, VECTOR.ts, VECTOR.body);
    expect(header.split(' ')).toEqual([VECTOR.signature, signWebhook(other, VECTOR.id, VECTOR.ts, VECTOR.body)]);
  });

  it('makes whsec_ secrets of 24 random bytes', () => {
    const s = newWebhookSecret();
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(Buffer.from(s.slice(6), 'base64')).toHaveLength(24);
    expect(newWebhookSecret()).not.toBe(s);
  });

  it('derives the event ID from what happened', () => {
    expect(webhookEventId('job.succeeded:req_1')).toBe(webhookEventId('job.succeeded:req_1'));
    expect(webhookEventId('job.succeeded:req_1')).not.toBe(webhookEventId('job.failed:req_1'));
    expect(webhookEventId('x')).toMatch(/^msg_[0-9a-f]{32}$/);
  });
});

describe('webhook retries', () => {
  const retry = { initialIntervalMs: 1000, maxIntervalMs: 60_000, maxAttempts: 10, horizonMs: 86_400_000, timeoutMs: 10_000 };
  it('doubles per attempt, capped, with half of each step random', () => {
    expect(retryDelayMs(1, retry, () => 0)).toBe(500);
    expect(retryDelayMs(1, retry, () => 1)).toBe(1000);
    expect(retryDelayMs(3, retry, () => 0)).toBe(2000);
    expect(retryDelayMs(3, retry, () => 1)).toBe(4000);
    expect(retryDelayMs(30, retry, () => 1)).toBe(60_000);
    expect(retryDelayMs(30, retry, () => 0)).toBe(30_000);
  });
});

describe('webhook URLs', () => {
  it('refuses non-http(s), credentials and private or loopback literals not allowed', () => {
    expect(webhookUrlProblem('https://hooks.example.com/x', [])).toBeNull();
    for (const url of ['ftp://example.com/', 'not a url', 'https://u:p@example.com/', 'http://127.0.0.1/', 'http://10.1.2.3/', 'http://[::1]/', 'http://169.254.169.254/', 'http://localhost/', 'http://[::ffff:127.0.0.1]/']) {
      expect(webhookUrlProblem(url, []), url).not.toBeNull();
    }
    expect(webhookUrlProblem('http://127.0.0.1:9/x', ['127.0.0.1'])).toBeNull();
    expect(webhookUrlProblem('http://10.1.2.3/', ['*'])).toBeNull();
    expect(webhookUrlProblem('http://10.1.2.3/', ['127.0.0.1'])).not.toBeNull();
  });
});
