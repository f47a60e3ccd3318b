/**
 * Webhooks, the public face of the feature: publishing events (`webhook-publish.ts`), delivering
 * them (`webhook-delivery.ts`), the URL guard at registration (`webhook-url-guard.ts`), signing
 * (`webhook-signing.ts`) and the shared deps and defaults (`webhook-deps.ts`). The API, the worker
 * and the workflows import from here; the connect-time address guard is `net/address-guard.ts`.
 */
import { createWebhookDeliveryActivities } from './webhook-delivery.js';
import { createWebhookPublishActivities } from './webhook-publish.js';
import type { WebhookDeps } from './webhook-deps.js';

export type { WebhookConfig } from '../contracts/webhooks.js';
export { DEFAULT_WEBHOOK_CONFIG, DEFAULT_WEBHOOK_RETRY, type WebhookDeps } from './webhook-deps.js';
export { createWebhookPublisher, publishEvent, startWebhookDelivery, webhookEventId } from './webhook-publish.js';
export { WEBHOOK_FINAL_FAILURES, deliveryErrorMessage, retryDelayMs } from './webhook-delivery.js';
export { webhookUrlProblem } from './webhook-url-guard.js';

/** The webhook activities the control worker registers: deliver, abandon, and publish a batch's end. */
export function createWebhookActivities(deps: WebhookDeps) {
  return {
    ...createWebhookDeliveryActivities(deps),
    ...createWebhookPublishActivities(deps),
  };
}

export type WebhookActivities = ReturnType<typeof createWebhookActivities>;
