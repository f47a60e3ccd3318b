/** Webhooks (migration 0006): tenants' endpoints, the events sent to them, and each delivery's attempts. */
import type { Generated, Selectable } from 'kysely';
import type { CreatedAt, Timestamp, UpdatedAt } from './columns.js';

export type WebhookEndpointStatus = 'active' | 'disabled';
export type WebhookDeliveryStatus = 'pending' | 'succeeded' | 'failed';

/** `secret` is `whsec_…`: needed to sign, so stored; never logged or returned after creation. */
export interface WebhookEndpointsTable {
  id: string;
  tenant_id: string;
  url: string;
  events: string[];
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Timestamp | null;
  status: Generated<WebhookEndpointStatus>;
  disabled_reason: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface WebhookEventsTable {
  id: string;
  tenant_id: string;
  type: string;
  /** The exact JSON body sent on every attempt. */
  body: string;
  created_at: CreatedAt;
}

export interface WebhookDeliveriesTable {
  id: string;
  event_id: string;
  endpoint_id: string;
  tenant_id: string;
  status: Generated<WebhookDeliveryStatus>;
  attempts: Generated<number>;
  last_status_code: number | null;
  last_error: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
  delivered_at: Timestamp | null;
}

/** The webhook tables of `Database`. */
export interface WebhookTables {
  webhook_endpoints: WebhookEndpointsTable;
  webhook_events: WebhookEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
}

export type WebhookEndpoint = Selectable<WebhookEndpointsTable>;
export type WebhookEvent = Selectable<WebhookEventsTable>;
export type WebhookDelivery = Selectable<WebhookDeliveriesTable>;
