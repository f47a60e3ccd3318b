/** Webhook event types and the delivery workflow's input. Pure. */

/** Event types a webhook endpoint can subscribe to (docs/webhooks.md). */
export const WEBHOOK_EVENT_TYPES = ['batch.completed', 'batch.failed', 'batch.cancelled', 'job.succeeded', 'job.failed', 'budget.threshold'] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** How a delivery is retried: exponential backoff (with jitter, see `deliverWebhook`) up to a horizon. */
export interface WebhookRetryPolicy {
  /** First retry delay. */
  initialIntervalMs: number;
  /** Longest delay between attempts. */
  maxIntervalMs: number;
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Time from the first attempt after which the delivery gives up (and the endpoint is disabled). */
  horizonMs: number;
  /** Time one POST may take. */
  timeoutMs: number;
}

/** Input of the `webhookDelivery` workflow: IDs only (the secret and body are read by the activity). */
export interface WebhookDeliveryInput {
  deliveryId: string;
  retry: WebhookRetryPolicy;
}

/** How webhooks are delivered. */
export interface WebhookConfig {
  /**
   * Hosts (as written in the URL, or resolved addresses) that may be loopback, private or
   * link-local; `*` allows all. @default [] (none: such endpoints are refused)
   */
  readonly allowPrivateHosts: readonly string[];
  /** @default DEFAULT_WEBHOOK_RETRY */
  readonly retry: WebhookRetryPolicy;
}
