/**
 * `webhookDelivery`: one event to one endpoint (`webhook-<eventId>-<endpointId>`). The POST is one
 * activity retried by Temporal: exponential backoff (the activity sets a jittered
 * `nextRetryDelay`), at most `maxAttempts`, within `horizonMs`. A 410 or a refused address ends it
 * at once; giving up marks the delivery failed and disables the endpoint.
 */
import { ApplicationFailure, TimeoutFailure, proxyActivities } from '@temporalio/workflow';
import type { WebhookActivities } from '../activities/webhooks.js';
import type { WebhookDeliveryInput } from '../contracts/webhooks.js';
import { causeOf } from './failures.js';

export async function webhookDelivery(input: WebhookDeliveryInput): Promise<{ status: 'succeeded' | 'skipped' | 'failed'; reason: string | null }> {
  const { retry } = input;
  const { deliverWebhook } = proxyActivities<WebhookActivities>({
    startToCloseTimeout: retry.timeoutMs + 5_000,
    scheduleToCloseTimeout: retry.horizonMs,
    retry: {
      initialInterval: retry.initialIntervalMs,
      backoffCoefficient: 2,
      maximumInterval: retry.maxIntervalMs,
      maximumAttempts: retry.maxAttempts,
      nonRetryableErrorTypes: ['EndpointGone', 'AddressRefused', 'EventMissing'],
    },
  });
  const { abandonWebhookDelivery } = proxyActivities<WebhookActivities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20 },
  });
  try {
    const r = await deliverWebhook(input);
    return { status: r.status, reason: null };
  } catch (err) {
    const cause = causeOf(err);
    let reason: string;
    if (cause instanceof ApplicationFailure && cause.type === 'EndpointGone') reason = 'endpoint answered 410 Gone';
    else if (cause instanceof ApplicationFailure && cause.type === 'AddressRefused') reason = `address refused: ${cause.message}`;
    else if (cause instanceof TimeoutFailure) reason = 'retry horizon reached';
    else reason = `gave up after ${retry.maxAttempts} attempts: ${cause instanceof Error ? cause.message : 'failed'}`;
    await abandonWebhookDelivery({ deliveryId: input.deliveryId, reason });
    return { status: 'failed', reason };
  }
}
