/**
 * Delivering webhooks: one attempt POSTs the event's stored body with Standard Webhooks headers.
 * Redirects are not followed (any non-2xx, 3xx included, is a failure); 410 Gone disables the
 * endpoint at once; other failures are retried by Temporal with exponential backoff and jitter
 * (`nextRetryDelay`) until `maxAttempts` or the horizon, after which the endpoint is disabled.
 * Loopback, private and link-local targets are refused, checked on the resolved address of every
 * connection (so a DNS answer that changes after registration cannot reach inside), unless the
 * host is allowed.
 */
import http from 'node:http';
import https from 'node:https';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { disableEndpoint, finishDelivery, getDelivery, getEndpoint, getEvent, recordAttempt } from '../db/repositories/webhooks.js';
import { AddressRefusedError, guardedLookup } from './net/address-guard.js';
import { signatureHeader } from './webhook-signing.js';
import { DEFAULT_WEBHOOK_CONFIG, type WebhookDeps } from './webhook-deps.js';
import { webhookUrlProblem } from './webhook-url-guard.js';
import type { WebhookDeliveryInput, WebhookRetryPolicy } from '../contracts/webhooks.js';

/** Failure types of a delivery that end it at once (no retry). */
export const WEBHOOK_FINAL_FAILURES = ['EndpointGone', 'AddressRefused'] as const;

/** One POST; resolves with the status code (redirects are not followed: node:http never does). */
function post(rawUrl: string, headers: Record<string, string>, body: string, timeoutMs: number, allow: readonly string[]): Promise<number> {
  const problem = webhookUrlProblem(rawUrl, allow);
  if (problem !== null) return Promise.reject(new AddressRefusedError(problem));
  const url = new URL(rawUrl);
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup: guardedLookup(allow), timeout: timeoutMs }, (res) => {
      res.resume(); // the body is not needed; drain it so the socket is released
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * What a tenant may read about a delivery that got no HTTP answer: the failure's kind, never the
 * addresses in Node's own messages (`connect ECONNREFUSED 10.0.0.5:443`, what a name resolved to).
 */
export function deliveryErrorMessage(err: unknown): string {
  if (err instanceof AddressRefusedError) return err.message.startsWith('url ') ? err.message : `address refused: ${err.safeMessage}`;
  if (err instanceof Error && /^no answer within \d+ ms$/.test(err.message)) return err.message;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code) ? `connection failed (${code})` : 'connection failed';
}

/** Exponential backoff with "equal jitter": half the step fixed, half random. */
export function retryDelayMs(attempt: number, retry: WebhookRetryPolicy, random: () => number = Math.random): number {
  const step = Math.min(retry.maxIntervalMs, retry.initialIntervalMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + random() * (step / 2));
}

/** The delivery activities of the webhook activities (see `createWebhookActivities`). */
export function createWebhookDeliveryActivities(deps: WebhookDeps) {
  return {
    /**
     * One attempt at a delivery. Returns on 2xx (or when there is nothing left to do); throws a
     * non-retryable `EndpointGone` (410) or `AddressRefused`, or a retryable `DeliveryFailed`
     * whose `nextRetryDelay` is the jittered backoff.
     */
    async deliverWebhook(input: WebhookDeliveryInput): Promise<{ status: 'succeeded' | 'skipped'; statusCode: number | null }> {
      const delivery = await getDelivery(deps.db, input.deliveryId);
      if (!delivery || delivery.status === 'succeeded') return { status: 'skipped', statusCode: null };
      const endpoint = await getEndpoint(deps.db, delivery.endpoint_id);
      if (!endpoint || endpoint.status !== 'active') {
        await finishDelivery(deps.db, delivery.id, 'failed', 'endpoint disabled');
        return { status: 'skipped', statusCode: null };
      }
      const event = await getEvent(deps.db, delivery.event_id);
      if (!event) throw ApplicationFailure.nonRetryable(`event ${delivery.event_id} missing`, 'EventMissing');
      const now = deps.now();
      const timestamp = Math.floor(now.getTime() / 1000);
      const secrets = [endpoint.secret];
      if (endpoint.previous_secret && endpoint.previous_secret_expires_at && endpoint.previous_secret_expires_at > now) secrets.push(endpoint.previous_secret);
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'Sluice-Webhooks/1',
        'webhook-id': event.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signatureHeader(secrets, event.id, timestamp, event.body),
      };
      let status: number;
      try {
        status = await post(endpoint.url, headers, event.body, input.retry.timeoutMs, (deps.webhooks ?? DEFAULT_WEBHOOK_CONFIG).allowPrivateHosts);
      } catch (err) {
        // The tenant sees this (last_error, the endpoint's disabled_reason): never what a name
        // resolved to or a socket's peer address; the raw error goes to the log.
        const message = deliveryErrorMessage(err);
        deps.log?.warn('webhook delivery failed', { delivery: delivery.id, endpoint: endpoint.id, error: message, detail: err instanceof Error ? err.message.slice(0, 300) : String(err).slice(0, 300) });
        await recordAttempt(deps.db, delivery.id, { statusCode: null, error: message, final: null });
        deps.metrics?.webhookAttempts.inc({ result: 'failed' });
        if (err instanceof AddressRefusedError) throw ApplicationFailure.nonRetryable(message.replace(/^address refused: /, ''), 'AddressRefused');
        throw ApplicationFailure.create({ type: 'DeliveryFailed', message, nextRetryDelay: retryDelayMs(Context.current().info.attempt, input.retry) });
      }
      if (status >= 200 && status < 300) {
        await recordAttempt(deps.db, delivery.id, { statusCode: status, error: null, final: 'succeeded' });
        deps.metrics?.webhookAttempts.inc({ result: 'succeeded' });
        return { status: 'succeeded', statusCode: status };
      }
      const redirect = status >= 300 && status < 400;
      await recordAttempt(deps.db, delivery.id, { statusCode: status, error: redirect ? 'redirect not followed' : `HTTP ${status}`, final: null });
      deps.metrics?.webhookAttempts.inc({ result: 'failed' });
      if (status === 410) throw ApplicationFailure.nonRetryable('endpoint answered 410 Gone', 'EndpointGone');
      throw ApplicationFailure.create({
        type: 'DeliveryFailed',
        message: redirect ? `HTTP ${status}: redirects are not followed` : `HTTP ${status}`,
        nextRetryDelay: retryDelayMs(Context.current().info.attempt, input.retry),
      });
    },

    /** Ends a delivery that will not succeed: marks it failed and disables its endpoint with the reason. */
    async abandonWebhookDelivery(input: { deliveryId: string; reason: string }): Promise<void> {
      const delivery = await getDelivery(deps.db, input.deliveryId);
      if (!delivery) return;
      await finishDelivery(deps.db, delivery.id, 'failed', input.reason);
      await disableEndpoint(deps.db, delivery.endpoint_id, input.reason);
      deps.metrics?.webhooksAbandoned.inc();
    },
  };
}
