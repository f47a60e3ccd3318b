/**
 * Webhooks: publishing events (stored once, one delivery per subscribed endpoint, one Temporal
 * workflow `webhook-<eventId>-<endpointId>` per delivery) and the delivery activities.
 *
 * A delivery POSTs the event's stored body with Standard Webhooks headers. Redirects are not
 * followed (any non-2xx, 3xx included, is a failure); 410 Gone disables the endpoint at once;
 * other failures are retried by Temporal with exponential backoff and jitter (`nextRetryDelay`)
 * until `maxAttempts` or the horizon, after which the endpoint is disabled. Loopback, private and
 * link-local targets are refused, checked on the resolved address of every connection (so a DNS
 * answer that changes after registration cannot reach inside), unless the host is allowed.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy, type Client } from '@temporalio/client';
import type { Db } from '../db/database.js';
import type { Logger } from '../runtime/logger.js';
import type { WebhookDelivery } from '../db/tables/index.js';
import { getBatch } from '../db/repositories/batches.js';
import {
  disableEndpoint, ensureDelivery, finishDelivery, getDelivery, getEndpoint, getEvent, insertEvent, recordAttempt, subscribedEndpoints,
} from '../db/repositories/webhooks.js';
import { AddressRefusedError, guardedLookup, isAllowedHost, normaliseHost, privateRangeOf } from './net/address-guard.js';
import { signatureHeader } from './webhook-signing.js';
import type { DomainEvent, EventPublisher } from './events.js';
import { CONTROL_TASK_QUEUE, webhookWorkflowId } from '../contracts/ids.js';
import type { WebhookConfig, WebhookDeliveryInput, WebhookEventType, WebhookRetryPolicy } from '../contracts/webhooks.js';

export type { WebhookConfig } from '../contracts/webhooks.js';

/** 5 s doubling to 1 h, at most 20 attempts within 24 h; 10 s per POST. */
export const DEFAULT_WEBHOOK_RETRY: WebhookRetryPolicy = Object.freeze({
  initialIntervalMs: 5_000, maxIntervalMs: 3_600_000, maxAttempts: 20, horizonMs: 86_400_000, timeoutMs: 10_000,
});

export const DEFAULT_WEBHOOK_CONFIG: WebhookConfig = Object.freeze({ allowPrivateHosts: [], retry: DEFAULT_WEBHOOK_RETRY });

export interface WebhookDeps {
  db: Db;
  now: () => Date;
  /** Starts delivery workflows; null: deliveries are recorded `pending` and not sent. @default null */
  temporal?: Client | null;
  /** @default DEFAULT_WEBHOOK_CONFIG */
  webhooks?: WebhookConfig;
  /** Where raw failure details go (never to a tenant). @default null (not logged) */
  log?: Logger | null;
}

/** Failure types of a delivery that end it at once (no retry). */
export const WEBHOOK_FINAL_FAILURES = ['EndpointGone', 'AddressRefused'] as const;

/** Event ID (`msg_…`, Standard Webhooks' `webhook-id`) derived from what happened, so a re-emit is the same event. */
export function webhookEventId(key: string): string {
  return `msg_${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

/**
 * Starts the delivery workflow of one delivery. Publishing refuses a duplicate ID (an event is
 * sent once however often it is emitted); a replay allows one after the previous run closed.
 * Returns false when a run with that ID exists (still running, or closed and not a replay).
 */
export async function startWebhookDelivery(client: Client, delivery: Pick<WebhookDelivery, 'id' | 'event_id' | 'endpoint_id'>, retry: WebhookRetryPolicy, replay = false): Promise<boolean> {
  try {
    await client.workflow.start('webhookDelivery', {
      workflowId: webhookWorkflowId(delivery.event_id, delivery.endpoint_id),
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ deliveryId: delivery.id, retry } satisfies WebhookDeliveryInput],
      workflowIdReusePolicy: replay ? WorkflowIdReusePolicy.ALLOW_DUPLICATE : WorkflowIdReusePolicy.REJECT_DUPLICATE,
    });
    return true;
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return false;
    throw err;
  }
}

/**
 * Publishes an event to every active endpoint of the tenant subscribed to its type. Idempotent:
 * the event ID comes from `key`, its body is stored on first publish, each delivery row is unique
 * per endpoint, and its workflow ID rejects duplicates.
 */
export async function publishEvent(deps: WebhookDeps, event: DomainEvent): Promise<string> {
  const id = webhookEventId(event.key);
  const body = JSON.stringify({ type: event.type, timestamp: deps.now().toISOString(), data: event.data });
  await insertEvent(deps.db, { id, tenantId: event.tenantId, type: event.type, body });
  for (const endpoint of await subscribedEndpoints(deps.db, event.tenantId, event.type)) {
    const delivery = await ensureDelivery(deps.db, id, endpoint);
    if (delivery.status === 'pending' && deps.temporal) await startWebhookDelivery(deps.temporal, delivery, (deps.webhooks ?? DEFAULT_WEBHOOK_CONFIG).retry);
  }
  return id;
}

/** The production `EventPublisher`: each event becomes webhook deliveries (see `publishEvent`). */
export function createWebhookPublisher(deps: WebhookDeps): EventPublisher {
  return {
    async publish(event) {
      await publishEvent(deps, event);
    },
  };
}

/**
 * Why a webhook URL is refused at registration, or null: not http(s), or a literal private IP
 * not allowed. (Names are checked on every connection, when they resolve.)
 */
export function webhookUrlProblem(raw: string, allow: readonly string[]): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'url is not a URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'url must be http or https';
  if (url.username || url.password) return 'url must not carry credentials';
  const host = normaliseHost(url.hostname);
  const range = net.isIP(host) ? privateRangeOf(host) : host === 'localhost' || host.endsWith('.localhost') ? 'loopback' : null;
  if (range !== null && !isAllowedHost(allow, host)) return `url host ${host} is ${range}; list it in SLUICE_ALLOW_PRIVATE_WEBHOOKS to allow it`;
  return null;
}

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

export function createWebhookActivities(deps: WebhookDeps) {
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
        if (err instanceof AddressRefusedError) throw ApplicationFailure.nonRetryable(message.replace(/^address refused: /, ''), 'AddressRefused');
        throw ApplicationFailure.create({ type: 'DeliveryFailed', message, nextRetryDelay: retryDelayMs(Context.current().info.attempt, input.retry) });
      }
      if (status >= 200 && status < 300) {
        await recordAttempt(deps.db, delivery.id, { statusCode: status, error: null, final: 'succeeded' });
        return { status: 'succeeded', statusCode: status };
      }
      const redirect = status >= 300 && status < 400;
      await recordAttempt(deps.db, delivery.id, { statusCode: status, error: redirect ? 'redirect not followed' : `HTTP ${status}`, final: null });
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
    },

    /** Publishes `batch.completed` / `batch.failed` / `batch.cancelled` for a batch in that end state (others: nothing). */
    async publishBatchEvent(input: { batchId: string }): Promise<void> {
      const b = await getBatch(deps.db, input.batchId, null);
      if (!b || !['completed', 'failed', 'cancelled'].includes(b.status)) return;
      const type = `batch.${b.status}` as WebhookEventType;
      await publishEvent(deps, {
        key: `${type}:${b.id}`, tenantId: b.tenant_id, type,
        data: {
          id: b.id, object: 'batch', status: b.status, input_file_id: b.input_file_id,
          output_file_id: b.output_file_id, error_file_id: b.error_file_id,
          request_counts: { total: b.total, completed: b.completed, failed: b.failed },
          metadata: b.metadata,
        },
      });
    },
  };
}

export type WebhookActivities = ReturnType<typeof createWebhookActivities>;
