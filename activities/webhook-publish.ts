/**
 * Publishing webhook events: an event is stored once, with one delivery per subscribed endpoint
 * and one Temporal workflow `webhook-<eventId>-<endpointId>` per delivery (which sends it; see
 * `webhook-delivery.ts`).
 */
import { createHash } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy, type Client } from '@temporalio/client';
import type { WebhookDelivery } from '../db/tables/index.js';
import { getBatch } from '../db/repositories/batches.js';
import { ensureDelivery, insertEvent, subscribedEndpoints } from '../db/repositories/webhooks.js';
import type { DomainEvent, EventPublisher } from './events.js';
import { DEFAULT_WEBHOOK_CONFIG, type WebhookDeps } from './webhook-deps.js';
import { CONTROL_TASK_QUEUE, webhookWorkflowId } from '../contracts/ids.js';
import type { WebhookDeliveryInput, WebhookEventType, WebhookRetryPolicy } from '../contracts/webhooks.js';

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

/** The publishing activity of the webhook activities (see `createWebhookActivities`). */
export function createWebhookPublishActivities(deps: WebhookDeps) {
  return {
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
